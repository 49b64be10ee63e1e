"""Per-request context as a pure ASGI middleware (no BaseHTTPMiddleware: it buffers streams)."""

from __future__ import annotations

import logging
import re
import secrets
import time
from collections.abc import Sequence

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import error_body
from app.kit.logging import request_id_var

log = logging.getLogger("tollgate.request")


class RequestContextMiddleware:
    """Gives every request an id (logged on every line, returned as ``x-request-id``) and logs
    one line when the response has been sent."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = f"req_{secrets.token_hex(12)}"
        started = time.perf_counter()
        state = scope.setdefault("state", {})
        state["request_id"], state["started"] = request_id, started
        token = request_id_var.set(request_id)
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            principal = state.get("principal")
            log.info(
                "%s %s %s",
                scope["method"],
                scope["path"],
                status,
                extra={
                    "status": status,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                    "key_id": getattr(principal, "key_id", None),
                },
            )
            request_id_var.reset(token)


class BodyLimitMiddleware:
    """Refuses what no handler should see: a declared Content-Length over the limit, before a
    byte of the body is read; a body without a declared length (chunked) as soon as it passes
    the limit; and a NUL character in the path or the query string, which no id or filter holds
    and which PostgreSQL would refuse halfway through a handler.

    ``streamed`` gives the routes whose bodies are relayed rather than read (file uploads)
    limits of their own.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, streamed: Sequence[tuple[re.Pattern[str], int]] = ()) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.streamed = streamed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if "\x00" in scope["path"] or b"%00" in scope["query_string"]:
            await _refuse(send, 400, "The URL holds a NUL character (%00).", "invalid_value")
            return
        limit = self._limit(scope["path"])
        chunked = False
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit():
                if int(value) > limit:
                    await self._too_large(receive, send, limit, int(value))
                    return
                # The server holds a declared length to its word: nothing to count.
                await self.app(scope, receive, send)
                return
            chunked = chunked or name == b"transfer-encoding"
        if chunked:
            await _CountedBody(self.app, limit)(scope, receive, send)
        else:  # neither a length nor chunks: no body at all
            await self.app(scope, receive, send)

    @staticmethod
    async def _too_large(receive: Receive, send: Send, limit: int, declared: int) -> None:
        """A body small enough to drop is read first, so the client reads its 413 and the
        connection stays open for its next request; a larger one gets the 413 at once, and the
        connection closes."""
        text = f"Request body is larger than the {limit} byte limit."
        drained = declared <= LINGER_BYTES and await _linger(receive)
        await _refuse(send, 413, text, _TOO_LARGE, close=not drained)

    def _limit(self, path: str) -> int:
        for pattern, limit in self.streamed:
            if pattern.match(path):
                return limit
        return self.max_bytes


_TOO_LARGE = "request_too_large"


class _CountedBody:
    """One request whose body has no declared length. Past the limit, the client gets the 413
    and the app is told the client left (so it stops reading and answers nobody)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit
        self.size = 0
        self.started = False
        self.refused = False
        self.answered = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def counting_receive() -> Message:
            if self.refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                self.size += len(message.get("body", b""))
                if self.size > self.limit:
                    self.refused = True
                    if not self.started:
                        self.answered = True
                        text = f"Request body is larger than the {self.limit} byte limit."
                        # Read out first: the server closes a connection whose request is unread
                        # when the answer completes, and a client still sending would get a reset.
                        drained = not message.get("more_body", False) or await _linger(receive)
                        await _refuse(send, 413, text, _TOO_LARGE, close=not drained)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            if self.answered:  # the 413 was the answer; whatever the app says after is for nobody
                return
            self.started = True
            await send(message)

        await self.app(scope, counting_receive, guarded_send)


# What is read and dropped of a refused body before the 413 (a lingering close): a client still
# sending when the server closes gets a reset, and may never read its answer.
LINGER_BYTES = 256 * 1024


async def _linger(receive: Receive) -> bool:
    """Reads and drops the rest of a refused body; whether it ended within the bound."""
    read = 0
    while read <= LINGER_BYTES:
        message = await receive()
        if message["type"] != "http.request":
            return False
        if not message.get("more_body", False):
            return True
        read += len(message.get("body", b""))
    return False


async def _refuse(send: Send, status: int, message: str, code: str, *, close: bool = True) -> None:
    body = error_body(message, "invalid_request_error", code=code)
    headers = [(b"content-type", b"application/json")]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
