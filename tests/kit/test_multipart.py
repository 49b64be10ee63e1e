"""The incremental multipart reader: the same parts whatever the chunking, bounded framing."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.kit.multipart import (
    MAX_FRAMING_BYTES,
    BodyEnd,
    Event,
    MultipartError,
    MultipartReader,
    PartData,
    PartEnd,
    PartStart,
    form_boundary,
)

BOUNDARY = "----tollgate42"
CONTENT = b"line one\r\n--not-the-boundary\r\n\r\n" + bytes(range(256)) * 4
BODY = (
    (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nfine-tune\r\n'
        f'--{BOUNDARY}  \r\nContent-Disposition: form-data; name="file"; filename="a \\"q\\".jsonl"\r\n'
        "Content-Type: application/jsonl\r\n\r\n"
    ).encode()
    + CONTENT
    + f"\r\n--{BOUNDARY}--\r\nepilogue".encode()
)


def _read(body: bytes, cuts: list[int]) -> list[tuple[str, str | None, bytes]]:
    reader, events = MultipartReader(BOUNDARY), list[Event]()
    points = [0, *sorted(c % (len(body) + 1) for c in cuts), len(body)]
    for start, end in itertools.pairwise(points):
        events += reader.feed(body[start:end])
    reader.close()
    parts: list[tuple[str, str | None, bytes]] = []
    for event in events:
        if isinstance(event, PartStart):
            parts.append((event.headers.name, event.headers.filename, b""))
        elif isinstance(event, PartData):
            name, filename, data = parts[-1]
            parts[-1] = (name, filename, data + event.data)
    assert isinstance(events[-1], BodyEnd) and sum(isinstance(e, PartEnd) for e in events) == 2
    return parts


@given(st.lists(st.integers(min_value=0), max_size=40))
def test_any_chunking_gives_the_same_parts(cuts: list[int]) -> None:
    assert _read(BODY, cuts) == [("purpose", None, b"fine-tune"), ("file", 'a "q".jsonl', CONTENT)]


def test_byte_by_byte() -> None:
    assert _read(BODY, list(range(len(BODY))))[1][2] == CONTENT


@pytest.mark.parametrize(
    "body",
    [
        BODY[: BODY.index(b"--", len(BODY) - 20)],  # no closing delimiter
        f"--{BOUNDARY}\r\nX-Header: only\r\n\r\nx\r\n--{BOUNDARY}--\r\n".encode(),  # no form-data disposition
        f"--{BOUNDARY}\r\nContent-Disposition: form-data\r\n\r\nx\r\n--{BOUNDARY}--\r\n".encode(),  # no name
        f"--{BOUNDARY}junk\r\n".encode(),
        b"x" * (MAX_FRAMING_BYTES + 100),  # endless preamble
        f"--{BOUNDARY}\r\n".encode() + b"H" * 20000,  # endless headers
    ],
)
def test_malformed_bodies_are_refused(body: bytes) -> None:
    def read() -> None:
        reader = MultipartReader(BOUNDARY)
        reader.feed(body)
        reader.close()

    with pytest.raises(MultipartError):
        read()


@pytest.mark.parametrize(
    ("content_type", "boundary"),
    [
        ("multipart/form-data; boundary=abc", "abc"),
        ('Multipart/Form-Data; charset=utf-8; boundary="a b:c"', "a b:c"),
        ("multipart/form-data", None),
        ("multipart/mixed; boundary=abc", None),
        ("application/json", None),
        ("multipart/form-data; boundary=" + "x" * 71, None),
        ('multipart/form-data; boundary="bad\r\nheader"', None),
    ],
)
def test_form_boundary(content_type: str, boundary: str | None) -> None:
    if boundary is None:
        with pytest.raises(MultipartError):
            form_boundary(content_type)
    else:
        assert form_boundary(content_type) == boundary
