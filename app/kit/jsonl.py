"""Lines of a JSONL body as it streams in, without holding more than one line in memory."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator

from app.errors import InvalidRequest


async def numbered_lines(chunks: AsyncIterable[bytes], max_line_bytes: int) -> AsyncIterator[tuple[int, bytes]]:
    """(1-based line number, line) for every non-blank line; a line longer than
    ``max_line_bytes`` is a 400 naming it."""
    buffer, number = bytearray(), 0
    async for chunk in chunks:
        buffer += chunk
        while (end := buffer.find(b"\n")) >= 0:
            number += 1
            line = bytes(buffer[:end])
            del buffer[: end + 1]
            if len(line) > max_line_bytes:
                raise _too_long(number, max_line_bytes)
            if line.strip():
                yield number, line
        if len(buffer) > max_line_bytes:
            raise _too_long(number + 1, max_line_bytes)
    if buffer.strip():
        yield number + 1, bytes(buffer)


def _too_long(number: int, limit: int) -> InvalidRequest:
    return InvalidRequest(f"Line {number} of the input file is longer than {limit} bytes.", code="invalid_batch_line")
