"""The SSE relay: upstream events go to the client as they arrive, with three exceptions.

- The usage event, which Tollgate always asks for, is read for billing and dropped when the
  client did not ask for it itself.
- A client that goes away stops the relay, which closes the upstream stream at once.
- An upstream that breaks mid-stream yields one OpenAI-shaped error event.

Per event the relay does a find and a regex scan; JSON is parsed only for the usage event.
What was relayed is kept as raw bytes and decoded only if tokens must be counted locally.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import anyio
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from app.errors import error_body
from app.gateway.upstream import UPSTREAM_IO_ERRORS

_USAGE = re.compile(rb'"usage"\s*:\s*\{')
_EVENT_END = re.compile(rb"\r?\n\r?\n")
_DONE = b"data: [DONE]"

OUTCOME_COMPLETED = "completed"
OUTCOME_DISCONNECTED = "client_disconnected"
OUTCOME_UPSTREAM_FAILED = "upstream_failed"


@dataclass(slots=True)
class RelayResult:
    outcome: str = OUTCOME_COMPLETED
    usage: dict[str, Any] | None = None
    relayed: list[bytes] = field(default_factory=list)

    def relayed_text(self) -> str:
        """The text the client received, for counting tokens when upstream never said."""
        parts: list[str] = []
        for event in self.relayed:
            for line in event.splitlines():
                if line.startswith(b"data:") and line[5:].strip() != b"[DONE]":
                    parts.extend(_delta_texts(line[5:]))
        return "".join(parts)


def _delta_texts(data: bytes) -> list[str]:
    try:
        chunk = json.loads(data)
    except ValueError:
        return []
    texts: list[str] = []
    for choice in chunk.get("choices") or () if isinstance(chunk, dict) else ():
        delta = choice.get("delta") or {} if isinstance(choice, dict) else {}
        for key in ("content", "refusal"):
            if isinstance(delta.get(key), str):
                texts.append(delta[key])
        for call in delta.get("tool_calls") or ():
            function = call.get("function") or {} if isinstance(call, dict) else {}
            texts.extend(v for v in (function.get("name"), function.get("arguments")) if isinstance(v, str))
    return texts


class SSERelay(Response):
    """An ASGI response that relays an upstream SSE stream and then calls ``on_finish`` once.

    ``on_finish`` runs shielded from cancellation, so a disconnect cannot skip billing.
    """

    def __init__(  # Response.__init__ is skipped on purpose: there is no body to render.
        self,
        upstream: aiohttp.ClientResponse,
        *,
        keep_usage_event: bool,
        headers: dict[str, str],
        on_finish: Callable[[RelayResult], Awaitable[None]],
    ) -> None:
        self.upstream = upstream
        self.status_code = 200
        self.background = None
        self.keep_usage_event = keep_usage_event
        self.extra_headers = headers
        self.on_finish = on_finish
        self.result = RelayResult()
        self._complete = False
        self._finished = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw_headers = [
            (b"content-type", b"text/event-stream; charset=utf-8"),
            (b"cache-control", b"no-cache"),
        ]
        raw_headers += [(k.encode(), v.encode()) for k, v in self.extra_headers.items()]
        try:
            await send({"type": "http.response.start", "status": 200, "headers": raw_headers})
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._watch_disconnect, receive, tg.cancel_scope)
                await self._relay(send)
                tg.cancel_scope.cancel()
            # Settled before the stream ends: a client that saw the end can read its own usage.
            await self._finish()
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:
            self.result.outcome = OUTCOME_DISCONNECTED
        finally:
            with anyio.CancelScope(shield=True):
                await self._finish()

    async def _finish(self) -> None:
        if self._finished:
            return
        self._finished = True
        if self.result.outcome == OUTCOME_COMPLETED:
            self.upstream.release()
        else:
            # Closing drops the connection: an unfinished upstream stream stops at once.
            self.upstream.close()
        await self.on_finish(self.result)

    async def _watch_disconnect(self, receive: Receive, scope: anyio.CancelScope) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        # Servers also report a disconnect once the response is complete; only an earlier one counts.
        if not self._complete:
            self.result.outcome = OUTCOME_DISCONNECTED
            scope.cancel()

    async def _relay(self, send: Send) -> None:
        buffer = b""
        try:
            async for chunk in self.upstream.content.iter_any():
                buffer += chunk
                out, buffer = self._complete_events(buffer)
                if out:
                    await send({"type": "http.response.body", "body": out, "more_body": True})
            if buffer.strip():
                # An upstream that ends without the final blank line still gets its last event relayed.
                self.result.relayed.append(buffer)
                await send({"type": "http.response.body", "body": buffer + b"\n\n", "more_body": True})
        except UPSTREAM_IO_ERRORS:
            self.result.outcome = OUTCOME_UPSTREAM_FAILED
            message = "The upstream stream failed before it completed."
            error = b"data: " + error_body(message, "server_error", code="upstream_stream_error") + b"\n\n"
            await send({"type": "http.response.body", "body": error, "more_body": True})
        self._complete = True

    def _complete_events(self, buffer: bytes) -> tuple[bytes, bytes]:
        """Splits off the complete events in ``buffer``; returns (bytes to send, remainder)."""
        out: list[bytes] = []
        start = 0
        for match in _EVENT_END.finditer(buffer):
            event = buffer[start : match.end()]
            start = match.end()
            if self._keep(event):
                out.append(event)
        self.result.relayed.extend(out)
        return b"".join(out), buffer[start:]

    def _keep(self, event: bytes) -> bool:
        if not _USAGE.search(event):
            return True
        data = next((ln[5:] for ln in event.splitlines() if ln.startswith(b"data:")), b"")
        try:
            parsed = json.loads(data)
        except ValueError:
            return True
        if isinstance(parsed, dict) and isinstance(parsed.get("usage"), dict):
            self.result.usage = parsed["usage"]
            return self.keep_usage_event or bool(parsed.get("choices"))
        return True
