"""Everything that happens to a request before a route sees it, and the ``"mock"`` controls.

Tests steer the mock through an optional ``"mock"`` object in the JSON request body; the gateway forwards
request bodies unchanged, so this works end-to-end through the openai SDK's ``extra_body``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# The error bodies embed these on purpose: the gateway must never pass upstream error text or the upstream
# organization through to its own clients, and tests grep responses for these markers.
LEAKED_API_KEY = "sk-mock-LEAKED-1234"
MOCK_ORGANIZATION = "org-mockorg-SECRET"


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: Any  # parsed JSON, or None when the body was empty or not JSON


@dataclass(frozen=True)
class ToolCallControl:
    name: str
    arguments: str


@dataclass(frozen=True)
class MockControls:
    status: int | None = None
    retry_after: int | None = None
    error_code: str | None = None
    delay_ms: int | None = None
    chunk_delay_ms: int | None = None
    words: int | None = None
    content: str | None = None
    drop_after: int | None = None
    stall_after: int | None = None
    no_usage: bool = False
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    malformed: bool = False
    # A JSON answer whose connection drops halfway through its declared length.
    cut_body: bool = False
    # Extra bytes in a JSON answer (a "padding" field), for answers too large to accept.
    pad_bytes: int = 0
    tool_call: ToolCallControl | None = None

    @classmethod
    def from_body(cls, body: Any) -> MockControls:
        """Read the ``mock`` object; values of the wrong type are ignored rather than rejected, because a
        typo in a test should show up as a visibly wrong response, not as a confusing mock-side 400."""
        raw = body.get("mock") if isinstance(body, dict) else None
        if raw is None:
            raw = _from_messages(body)
        if not isinstance(raw, dict):
            return cls()
        return cls(
            status=_int(raw, "status"),
            retry_after=_int(raw, "retry_after"),
            error_code=_str(raw, "error_code"),
            delay_ms=_int(raw, "delay_ms"),
            chunk_delay_ms=_int(raw, "chunk_delay_ms"),
            words=_int(raw, "words"),
            content=_str(raw, "content"),
            drop_after=_int(raw, "drop_after"),
            stall_after=_int(raw, "stall_after"),
            no_usage=raw.get("no_usage") is True,
            cached_tokens=max(_int(raw, "cached_tokens") or 0, 0),
            reasoning_tokens=max(_int(raw, "reasoning_tokens") or 0, 0),
            malformed=raw.get("malformed") is True,
            cut_body=raw.get("cut_body") is True,
            pad_bytes=max(_int(raw, "pad_bytes") or 0, 0),
            tool_call=_tool_call(raw.get("tool_call")),
        )


MESSAGE_CONTROL = "#mock "


def _from_messages(body: Any) -> Any:
    """Controls in the last message, when it reads ``#mock {...}``: for requests whose body the
    client does not write itself, such as the chat calls Tollgate makes to execute a thread run."""
    messages = body.get("messages") if isinstance(body, dict) else None
    last = messages[-1] if isinstance(messages, list) and messages else None
    content = last.get("content") if isinstance(last, dict) else None
    if not isinstance(content, str) or not content.startswith(MESSAGE_CONTROL):
        return None
    try:
        return json.loads(content[len(MESSAGE_CONTROL) :])
    except ValueError:
        return None


def _int(raw: dict[str, Any], key: str) -> int | None:
    value = raw.get(key)
    # bool is an int subclass; ``"status": true`` is a mistake, not status 1.
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return None


def _str(raw: dict[str, Any], key: str) -> str | None:
    value = raw.get(key)
    return value if isinstance(value, str) else None


def _tool_call(value: Any) -> ToolCallControl | None:
    if not isinstance(value, dict) or not isinstance(value.get("name"), str):
        return None
    arguments = value.get("arguments", "{}")
    return ToolCallControl(name=value["name"], arguments=arguments if isinstance(arguments, str) else "{}")


def error_body(message: str, type_: str, *, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def simulated_error_body(status: int, error_code: str | None = None) -> dict[str, Any]:
    """The body for the ``status`` control, modelled on real OpenAI errors and salted with secrets."""
    if status == 401:
        return error_body(
            f"Incorrect API key provided: {LEAKED_API_KEY}. You can find your API key at "
            f"https://platform.openai.com/account/api-keys. (organization {MOCK_ORGANIZATION})",
            "invalid_request_error",
            code="invalid_api_key",
        )
    if status == 429 and error_code == "insufficient_quota":
        return error_body(
            f"You exceeded your current quota, please check your plan and billing details. "
            f"(organization {MOCK_ORGANIZATION}, key {LEAKED_API_KEY})",
            "insufficient_quota",
            code="insufficient_quota",
        )
    if status == 429:
        return error_body(
            f"Rate limit reached for requests in organization {MOCK_ORGANIZATION} on requests per min (RPM): "
            f"Limit 3, Used 3, Requested 1. Key {LEAKED_API_KEY}. Please try again in 20s.",
            "rate_limit_exceeded",
            code=error_code or "rate_limit_exceeded",
        )
    if status >= 500:
        return error_body(
            f"The server had an error while processing your request (organization {MOCK_ORGANIZATION}, "
            f"key {LEAKED_API_KEY}). Sorry about that!",
            "server_error",
            code=error_code,
        )
    return error_body(
        f"Invalid request for organization {MOCK_ORGANIZATION} using key {LEAKED_API_KEY}.",
        "invalid_request_error",
        code=error_code,
    )


class MockPrelude:
    """Runs before every route: records the request, adds OpenAI's response headers, checks the API key,
    applies the delay and the ``status`` control. The body is read here once and replayed to the app."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        api_key: str | None,
        latency_ms: int,
        requests: list[RecordedRequest],
        request_ids: Iterator[int],
    ) -> None:
        self.app = app
        self.api_key = api_key
        self.latency_ms = latency_ms
        self.requests = requests
        self.request_ids = request_ids

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        send = _with_openai_headers(send, f"req_mock_{next(self.request_ids)}", time.perf_counter())
        headers = _header_dict(scope)
        # File uploads are read by their route as they stream in, never held here.
        streamed = headers.get("content-type", "").lower().startswith("multipart/")
        raw = b"" if streamed else await _read_body(receive)
        body = _parse_json(raw)
        self.requests.append(RecordedRequest(scope["method"], scope["path"], headers, body))
        controls = MockControls.from_body(body)
        scope.setdefault("state", {}).update(mock_body=body, mock_controls=controls)
        delay_ms = controls.delay_ms if controls.delay_ms is not None else self.latency_ms
        if delay_ms > 0:
            await asyncio.sleep(delay_ms / 1000)
        response = self._auth_error(headers.get("authorization")) or _simulated_error(controls)
        if response is not None:
            await response(scope, receive, send)
            return
        await self.app(scope, receive if streamed else _replay(raw, receive), send)

    def _auth_error(self, authorization: str | None) -> Response | None:
        expected = self.api_key
        if expected is None or authorization == f"Bearer {expected}":
            return None
        if not authorization:
            message = "You didn't provide an API key. Provide it in an Authorization header (Bearer auth)."
            return json_response(error_body(message, "invalid_request_error"), 401)
        given = authorization.removeprefix("Bearer ")
        # Masked like OpenAI does, which still leaks a key fragment the gateway must not pass on.
        masked = f"{given[:3]}{'*' * max(len(given) - 7, 0)}{given[-4:]}"
        message = (
            f"Incorrect API key provided: {masked}. You can find your API key at "
            f"https://platform.openai.com/account/api-keys. (organization {MOCK_ORGANIZATION})"
        )
        return json_response(error_body(message, "invalid_request_error", code="invalid_api_key"), 401)


def _simulated_error(controls: MockControls) -> Response | None:
    if controls.status is None:
        return None
    response = json_response(simulated_error_body(controls.status, controls.error_code), controls.status)
    if controls.retry_after is not None:
        response.headers["retry-after"] = str(controls.retry_after)
    return response


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _header_dict(scope: Scope) -> dict[str, str]:
    headers: dict[str, str] = {}
    for raw_name, raw_value in scope["headers"]:
        name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return headers


def _replay(raw: bytes, receive: Receive) -> Receive:
    # Later receive() calls must reach the server so streaming responses notice client disconnects.
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if replayed:
            return await receive()
        replayed = True
        return {"type": "http.request", "body": raw, "more_body": False}

    return replay


def _parse_json(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None


def _with_openai_headers(send: Send, request_id: str, started: float) -> Send:
    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            elapsed_ms = int((time.perf_counter() - started) * 1000)
            message["headers"] = [
                *message.get("headers", []),
                (b"x-request-id", request_id.encode()),
                (b"openai-organization", MOCK_ORGANIZATION.encode()),
                (b"openai-processing-ms", str(elapsed_ms).encode()),
                (b"openai-version", b"2020-10-01"),
            ]
        await send(message)

    return wrapped


def json_response(payload: Any, status: int = 200) -> Response:
    return Response(json.dumps(payload), status_code=status, media_type="application/json")
