"""Relays an upstream byte stream (generated audio) to the client as it arrives.

Like the SSE relay: nothing is buffered beyond one upstream read, a client that goes away
closes the upstream stream at once, and ``on_finish`` runs exactly once, shielded from
cancellation, with how the relay ended.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import aiohttp
import anyio
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from app.gateway.streaming import OUTCOME_COMPLETED, OUTCOME_DISCONNECTED, OUTCOME_UPSTREAM_FAILED
from app.gateway.upstream import UPSTREAM_IO_ERRORS


class ByteRelay(Response):
    def __init__(  # Response.__init__ is skipped on purpose: there is no body to render.
        self,
        upstream: aiohttp.ClientResponse,
        *,
        headers: dict[str, str],
        on_finish: Callable[[str, int], Awaitable[None]],
    ) -> None:
        self.upstream = upstream
        self.status_code = 200
        self.background = None
        self.extra_headers = headers
        self.on_finish = on_finish
        self.outcome = OUTCOME_COMPLETED
        self.relayed = 0
        self._complete = False
        self._finished = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        media_type = self.upstream.headers.get("content-type", "application/octet-stream")
        raw_headers = [(b"content-type", media_type.encode("latin-1"))]
        raw_headers += [(k.encode(), v.encode()) for k, v in self.extra_headers.items()]
        try:
            await send({"type": "http.response.start", "status": 200, "headers": raw_headers})
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._watch_disconnect, receive, tg.cancel_scope)
                await self._relay(send)
                tg.cancel_scope.cancel()
            await self._finish()
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:
            self.outcome = OUTCOME_DISCONNECTED
        finally:
            with anyio.CancelScope(shield=True):
                await self._finish()

    async def _relay(self, send: Send) -> None:
        try:
            async for chunk in self.upstream.content.iter_any():
                self.relayed += len(chunk)
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except UPSTREAM_IO_ERRORS:
            # Binary audio has no error event: the client sees a truncated body.
            self.outcome = OUTCOME_UPSTREAM_FAILED
        self._complete = True

    async def _watch_disconnect(self, receive: Receive, scope: anyio.CancelScope) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        if not self._complete:
            self.outcome = OUTCOME_DISCONNECTED
            scope.cancel()

    async def _finish(self) -> None:
        if self._finished:
            return
        self._finished = True
        if self.outcome == OUTCOME_COMPLETED:
            self.upstream.release()
        else:
            self.upstream.close()
        await self.on_finish(self.outcome, self.relayed)
