"""Server-sent event responses of the mock that close their generator as soon as the client is gone."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator

from starlette.datastructures import State
from starlette.responses import StreamingResponse
from starlette.types import Send


async def tracked(state: State, events: AsyncGenerator[bytes, None]) -> AsyncGenerator[bytes, None]:
    state.open_streams += 1
    try:
        async for event in events:
            # Counted as handed to the server: a client that stops reading stops this count.
            state.streamed_bytes += len(event)
            yield event
    finally:
        # Runs on normal end, on drop_after, and when a client disconnect cancels the response.
        state.open_streams -= 1
        await events.aclose()


class EventStream(StreamingResponse):
    def __init__(self, events: AsyncGenerator[bytes, None]) -> None:
        super().__init__(events, media_type="text/event-stream")
        self._events = events

    async def stream_response(self, send: Send) -> None:
        # Close the generator right away on cancellation instead of whenever it gets garbage collected,
        # so open_streams is accurate as soon as the client is gone.
        async with contextlib.aclosing(self._events):
            await super().stream_response(send)
