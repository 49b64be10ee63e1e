"""Lines of a streamed JSONL body, however the chunks fall."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from app.errors import InvalidRequest
from app.kit.jsonl import numbered_lines

BODY = b'{"a": 1}\n\n{"b": 22}\r\n{"c": 333}'


async def _chunks(body: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


@pytest.mark.parametrize("size", [1, 2, 7, len(BODY)])
async def test_lines_are_numbered_across_any_chunking(size: int) -> None:
    lines = [item async for item in numbered_lines(_chunks(BODY, size), 100)]
    assert lines == [(1, b'{"a": 1}'), (3, b'{"b": 22}\r'), (4, b'{"c": 333}')]


@pytest.mark.parametrize("body", [b"short\n" + b"x" * 20 + b"\nlast", b"short\n" + b"x" * 20])
async def test_a_line_too_long_is_refused_by_number(body: bytes) -> None:
    with pytest.raises(InvalidRequest) as caught:
        _ = [item async for item in numbered_lines(_chunks(body, 4), 10)]
    assert "Line 2 " in caught.value.message
