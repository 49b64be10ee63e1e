"""The SSE relay: upstream events go to the client as they arrive, with three exceptions.

- The usage event, which Tollgate always asks for, is read for billing and dropped when the
  client did not ask for it itself.
- A client that goes away stops the relay, which closes the upstream stream at once.
- An upstream that breaks mid-stream, or sends an event no client could read (a garbled or cut
  event, or one past the size limit), yields one OpenAI-shaped error event and the relay stops.

Per event the relay does a find, a regex scan and a look at the data's ends; JSON is parsed only
for the usage event.
What was relayed is kept as raw bytes and decoded only if tokens must be counted locally.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import anyio
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from app.errors import UpstreamError, error_body
from app.gateway.upstream import UPSTREAM_IO_ERRORS
from app.metrics.service import OPEN_STREAMS
from app.usage.pricing import TokenUsage

_USAGE = re.compile(rb'"usage"\s*:\s*\{')
_EVENT_END = re.compile(rb"\r?\n\r?\n")
_DONE = b"data: [DONE]"
# No upstream event comes near this (a whole Responses ``response.completed`` is far smaller); a
# buffer past it is an upstream that never ends its event.
MAX_EVENT_BYTES = 16 * 1024 * 1024

OUTCOME_COMPLETED = "completed"
OUTCOME_DISCONNECTED = "client_disconnected"
OUTCOME_UPSTREAM_FAILED = "upstream_failed"

# (outcome, upstream usage block or None, the generated text) -> the tokens billed.
StreamFinish = Callable[[str, "dict[str, Any] | None", Callable[[], str]], Awaitable[TokenUsage]]


def chat_usage(chunk: dict[str, Any]) -> dict[str, Any] | None:
    usage = chunk.get("usage")
    return usage if isinstance(usage, dict) else None


def delta_texts(chunk: dict[str, Any]) -> list[str]:
    """The generated text of one chunk: a legacy completion's text, or a chat delta's content,
    refusal, tool-call names and arguments."""
    texts: list[str] = []
    for choice in chunk.get("choices") or ():
        if isinstance(choice, dict) and isinstance(choice.get("text"), str):
            texts.append(choice["text"])  # a legacy completion's chunk
        delta = choice.get("delta") or {} if isinstance(choice, dict) else {}
        for key in ("content", "refusal"):
            if isinstance(delta.get(key), str):
                texts.append(delta[key])
        for call in delta.get("tool_calls") or ():
            function = call.get("function") or {} if isinstance(call, dict) else {}
            texts.extend(v for v in (function.get("name"), function.get("arguments")) if isinstance(v, str))
    return texts


@dataclass(frozen=True, slots=True)
class StreamDialect:
    """What differs between upstream event streams: which event carries the usage, whether that
    event exists only because Tollgate asked for it, and the generated text of an event."""

    usage_of: Callable[[dict[str, Any]], dict[str, Any] | None]
    usage_only: Callable[[dict[str, Any]], bool]
    texts_of: Callable[[dict[str, Any]], list[str]]


# Chat completions: the usage chunk (no choices) is the one Tollgate adds with include_usage.
CHAT = StreamDialect(chat_usage, lambda chunk: not chunk.get("choices"), delta_texts)

# The Responses API's terminal events carry the whole response, usage included.
_RESPONSE_END_EVENTS = frozenset({"response.completed", "response.incomplete", "response.failed"})


def responses_usage(event: dict[str, Any]) -> dict[str, Any] | None:
    response = event.get("response") if event.get("type") in _RESPONSE_END_EVENTS else None
    usage = response.get("usage") if isinstance(response, dict) else None
    return usage if isinstance(usage, dict) else None


def responses_texts(event: dict[str, Any]) -> list[str]:
    """Generated text arrives in ``*.delta`` events (output text, refusals, function arguments,
    reasoning summaries), each with a string ``delta``."""
    kind, delta = event.get("type"), event.get("delta")
    return [delta] if isinstance(kind, str) and kind.endswith(".delta") and isinstance(delta, str) else []


# Responses API: every event is the client's own; none exists only for Tollgate.
RESPONSES = StreamDialect(responses_usage, lambda _: False, responses_texts)


@dataclass(slots=True)
class RelayResult:
    outcome: str = OUTCOME_COMPLETED
    usage: dict[str, Any] | None = None
    relayed: list[bytes] = field(default_factory=list)
    dialect: StreamDialect = CHAT

    def events(self) -> Iterator[dict[str, Any]]:
        """The relayed events that parse as JSON objects, in order."""
        return filter(None, map(_data_of, self.relayed))

    def relayed_text(self) -> str:
        """The text the client received, for counting tokens when upstream never said."""
        return "".join(text for event in self.events() for text in self.dialect.texts_of(event))

    def relayed_content(self) -> str:
        """The first choice's message text as the client received it."""
        parts: list[str] = []
        for chunk in self.events():
            for choice in chunk.get("choices") or ():
                delta = choice.get("delta") or {} if isinstance(choice, dict) else {}
                if choice.get("index", 0) == 0 and isinstance(delta.get("content"), str):
                    parts.append(delta["content"])
        return "".join(parts)


class UpstreamRelay(Response):
    """An ASGI response that relays an upstream stream as it arrives, then reports once.

    A client that goes away stops the relay, which closes the upstream stream at once. The
    report runs exactly once, shielded from cancellation, so a disconnect cannot skip billing.
    Subclasses say what goes out (``_relay``), under which headers, and what is reported.
    """

    def __init__(self, upstream: aiohttp.ClientResponse, headers: dict[str, str]) -> None:
        # Response.__init__ is skipped on purpose: there is no body to render.
        self.upstream = upstream
        self.status_code = 200
        self.background = None
        self.extra_headers = headers
        self.outcome = OUTCOME_COMPLETED
        self._complete = False
        self._finished = False
        self._cancelled_by_watcher = False

    def _content_headers(self) -> list[tuple[bytes, bytes]]:
        raise NotImplementedError

    async def _relay(self, send: Send) -> None:
        raise NotImplementedError

    async def _report(self) -> None:
        raise NotImplementedError

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw_headers = self._content_headers() + [(k.encode(), v.encode()) for k, v in self.extra_headers.items()]
        OPEN_STREAMS.inc()
        try:
            await send({"type": "http.response.start", "status": 200, "headers": raw_headers})
            await self._relay_until_disconnect(receive, send)
            # Reported before the stream ends: a client that saw the end can read its own usage.
            await self._finish()
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:
            self.outcome = OUTCOME_DISCONNECTED
        finally:
            OPEN_STREAMS.dec()
            if not self._finished:
                # Shielded: a cancelled request (a disconnect, a shutdown) still settles.
                await asyncio.shield(self._finish())

    async def _relay_until_disconnect(self, receive: Receive, send: Send) -> None:
        """Relays while a watcher waits for the client to leave, which cancels the relay. Plain
        asyncio rather than an anyio task group: the group's cancel scopes cost more per stream
        than the rest of the relay's bookkeeping."""
        task = asyncio.current_task()
        assert task is not None
        watcher = asyncio.get_running_loop().create_task(self._watch_disconnect(receive, task))
        try:
            await self._relay(send)
            self._complete = True
        except asyncio.CancelledError:
            # Our own cancellation ends the relay quietly; anyone else's goes on up.
            if not self._cancelled_by_watcher or task.uncancel() > 0:
                raise
        finally:
            watcher.cancel()

    async def _finish(self) -> None:
        if self._finished:
            return
        self._finished = True
        if self.outcome == OUTCOME_COMPLETED:
            self.upstream.release()
        else:
            # Closing drops the connection: an unfinished upstream stream stops at once.
            self.upstream.close()
        await self._report()

    async def _watch_disconnect(self, receive: Receive, relay: asyncio.Task[Any]) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        # Servers also report a disconnect once the response is complete; only an earlier one counts.
        if not self._complete:
            self.outcome = OUTCOME_DISCONNECTED
            self._cancelled_by_watcher = True
            relay.cancel()


class SSERelay(UpstreamRelay):
    """Relays an upstream SSE stream; ``on_finish`` gets what was relayed and the usage read."""

    def __init__(
        self,
        upstream: aiohttp.ClientResponse,
        *,
        keep_usage_event: bool,
        headers: dict[str, str],
        on_finish: Callable[[RelayResult], Awaitable[None]],
        dialect: StreamDialect = CHAT,
    ) -> None:
        super().__init__(upstream, headers)
        self.keep_usage_event = keep_usage_event
        self.on_finish = on_finish
        self.result = RelayResult(dialect=dialect)

    def _content_headers(self) -> list[tuple[bytes, bytes]]:
        return [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache")]

    async def _report(self) -> None:
        self.result.outcome = self.outcome
        await self.on_finish(self.result)

    async def _relay(self, send: Send) -> None:
        buffer = b""
        try:
            async for chunk in self.upstream.content.iter_any():
                buffer += chunk
                out, buffer, broken = self._complete_events(buffer)
                if out:
                    await send({"type": "http.response.body", "body": out, "more_body": True})
                if broken or len(buffer) > MAX_EVENT_BYTES:
                    await self._fail(send, "The upstream sent an event that cannot be read.")
                    return
            if buffer.strip():
                # An upstream that ends without the final blank line still gets its last event relayed.
                if not _readable(buffer):
                    await self._fail(send, "The upstream sent an event that cannot be read.")
                    return
                self.result.relayed.append(buffer)
                await send({"type": "http.response.body", "body": buffer + b"\n\n", "more_body": True})
        except UPSTREAM_IO_ERRORS:
            await self._fail(send, "The upstream stream failed before it completed.")

    async def _fail(self, send: Send, message: str) -> None:
        self.outcome = OUTCOME_UPSTREAM_FAILED
        error = b"data: " + error_body(message, "server_error", code="upstream_stream_error") + b"\n\n"
        await send({"type": "http.response.body", "body": error, "more_body": True})

    def _complete_events(self, buffer: bytes) -> tuple[bytes, bytes, bool]:
        """Splits off the complete events in ``buffer``: (bytes to send, remainder, whether an
        unreadable event was met, before which the sending stops)."""
        out: list[bytes] = []
        start = 0
        broken = False
        for match in _EVENT_END.finditer(buffer):
            event = buffer[start : match.end()]
            start = match.end()
            if not _readable(event):
                broken = True
                break
            if self._keep(event):
                out.append(event)
        self.result.relayed.extend(out)
        return b"".join(out), buffer[start:], broken

    def _keep(self, event: bytes) -> bool:
        if not _USAGE.search(event):
            return True
        data = next((ln[5:] for ln in event.splitlines() if ln.startswith(b"data:")), b"")
        try:
            parsed = json.loads(data)
        except ValueError:
            return True
        usage = self.result.dialect.usage_of(parsed) if isinstance(parsed, dict) else None
        if usage is None:
            return True
        self.result.usage = usage
        return self.keep_usage_event or not self.result.dialect.usage_only(parsed)


class ChunkStream:
    """Upstream chat chunks parsed for Tollgate's own use (a streamed run), rather than relayed.

    Used as ``async with stream: async for chunk in stream``. Leaving the block settles the call
    once, shielded from cancellation; ``billed`` then holds the tokens that were charged. A broken
    upstream raises ``UpstreamError`` from the iteration.
    """

    def __init__(self, upstream: aiohttp.ClientResponse, finish: StreamFinish) -> None:
        self.upstream = upstream
        self.finish = finish
        self.outcome = OUTCOME_DISCONNECTED
        self.usage: dict[str, Any] | None = None
        self.texts: list[str] = []
        self.billed: TokenUsage | None = None

    async def __aenter__(self) -> ChunkStream:
        OPEN_STREAMS.inc()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        OPEN_STREAMS.dec()
        with anyio.CancelScope(shield=True):
            if self.outcome == OUTCOME_COMPLETED:
                self.upstream.release()
            else:
                self.upstream.close()
            self.billed = await self.finish(self.outcome, self.usage, lambda: "".join(self.texts))

    async def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        buffer = b""
        try:
            async for piece in self.upstream.content.iter_any():
                buffer += piece
                *events, buffer = _EVENT_END.split(buffer)
                for chunk in self._chunks(events):
                    yield chunk
        except UPSTREAM_IO_ERRORS:
            self.outcome = OUTCOME_UPSTREAM_FAILED
            message = "The upstream stream failed before it completed."
            raise UpstreamError(message, code="upstream_stream_error") from None
        for chunk in self._chunks([buffer]):  # an upstream that ends without the final blank line
            yield chunk
        self.outcome = OUTCOME_COMPLETED

    def _chunks(self, events: list[bytes]) -> Iterator[dict[str, Any]]:
        for chunk in filter(None, map(_data_of, events)):
            if isinstance(chunk.get("usage"), dict):
                self.usage = chunk["usage"]
            if chunk.get("choices"):
                self.texts.extend(delta_texts(chunk))
                yield chunk


def _readable(event: bytes) -> bool:
    """Whether a client could parse the event: its data is a JSON object or ``[DONE]``, or it has
    none (a comment, a keep-alive). Judged by the data's ends, not parsed: a garbled or cut-off
    event shows there, and parsing every event would cost more than the rest of the relay."""
    if event.startswith(b"data: {") and event.rstrip().endswith(b"}"):
        return True  # the common shape, settled without splitting lines
    data = b"".join(ln[5:] for ln in event.splitlines() if ln.startswith(b"data:")).strip()
    return not data or data == b"[DONE]" or (data.startswith(b"{") and data.endswith(b"}"))


def _data_of(event: bytes) -> dict[str, Any] | None:
    data = b"".join(ln[5:] for ln in event.splitlines() if ln.startswith(b"data:"))
    try:
        parsed = json.loads(data)
    except ValueError:  # [DONE], or an event Tollgate cannot read and does not need
        return None
    return parsed if isinstance(parsed, dict) else None
