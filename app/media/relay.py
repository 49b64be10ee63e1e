"""Relays an upstream byte stream (generated audio) to the client as it arrives."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import aiohttp
from starlette.types import Send

from app.gateway.streaming import OUTCOME_UPSTREAM_FAILED, UpstreamRelay
from app.gateway.upstream import UPSTREAM_IO_ERRORS


class ByteRelay(UpstreamRelay):
    """``on_finish`` gets how the relay ended and how many bytes reached the client."""

    def __init__(
        self,
        upstream: aiohttp.ClientResponse,
        *,
        headers: dict[str, str],
        on_finish: Callable[[str, int], Awaitable[None]],
    ) -> None:
        super().__init__(upstream, headers)
        self.on_finish = on_finish
        self.relayed = 0

    def _content_headers(self) -> list[tuple[bytes, bytes]]:
        media_type = self.upstream.headers.get("content-type", "application/octet-stream")
        return [(b"content-type", media_type.encode("latin-1"))]

    async def _relay(self, send: Send) -> None:
        try:
            async for chunk in self.upstream.content.iter_any():
                self.relayed += len(chunk)
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except UPSTREAM_IO_ERRORS:
            # Binary audio has no error event: the client sees a truncated body.
            self.outcome = OUTCOME_UPSTREAM_FAILED

    async def _report(self) -> None:
        await self.on_finish(self.outcome, self.relayed)
