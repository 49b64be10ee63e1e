"""An incremental ``multipart/form-data`` reader that never holds a part's content.

Fed the body chunk by chunk, it reports each part's headers as soon as they are complete and
hands on part content as it arrives, keeping back only the few bytes that could be the start
of the next delimiter. Memory stays at a chunk plus a header block, whatever the file's size,
which is the point: uploads are relayed, not stored (Starlette's form parser spools files).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# RFC 2046 section 5.1.1: 1 to 70 characters from this set, not ending in a space.
_BOUNDARY = re.compile(r"^[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]$")
_PARAM = re.compile(r';\s*([^\s=;]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)')
MAX_HEADER_BYTES = 16 * 1024
# Bytes allowed before the first delimiter and after the last one; clients send none.
MAX_FRAMING_BYTES = 64 * 1024


class MultipartError(ValueError):
    """The body is not well-formed multipart/form-data."""


@dataclass(frozen=True, slots=True)
class PartHeaders:
    name: str
    filename: str | None
    content_type: str | None


@dataclass(frozen=True, slots=True)
class PartStart:
    headers: PartHeaders


@dataclass(frozen=True, slots=True)
class PartData:
    data: bytes


@dataclass(frozen=True, slots=True)
class PartEnd:
    pass


@dataclass(frozen=True, slots=True)
class BodyEnd:
    """The closing delimiter: nothing that follows it is content."""


Event = PartStart | PartData | PartEnd | BodyEnd

_PREAMBLE, _HEADERS, _CONTENT, _AFTER_DELIMITER, _EPILOGUE = range(5)


def form_boundary(content_type: str | None) -> str:
    """The boundary of a ``multipart/form-data`` Content-Type, or MultipartError."""
    media_type, _, rest = (content_type or "").partition(";")
    if media_type.strip().lower() != "multipart/form-data":
        raise MultipartError("The request must be multipart/form-data.")
    boundary = header_params(rest).get("boundary")
    if boundary is None or not _BOUNDARY.match(boundary):
        raise MultipartError("The multipart/form-data Content-Type has no valid boundary.")
    return boundary


def header_params(text: str) -> dict[str, str]:
    """``; name="value"; other=value`` parameters, names lower-cased, quotes and escapes removed."""
    params: dict[str, str] = {}
    for match in _PARAM.finditer(text if text.startswith(";") else ";" + text):
        value = match.group(2).strip()
        if value.startswith('"'):
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        params[match.group(1).lower()] = value
    return params


class MultipartReader:
    def __init__(self, boundary: str) -> None:
        # Every delimiter is CRLF "--" boundary; the body's first one has no CRLF before it,
        # so one is assumed to make the first look like the rest.
        self._delimiter = b"\r\n--" + boundary.encode("ascii")
        self._buffer = bytearray(b"\r\n")
        self._state = _PREAMBLE
        self._framing = 0

    @property
    def done(self) -> bool:
        return self._state == _EPILOGUE

    def feed(self, chunk: bytes) -> list[Event]:
        self._buffer += chunk
        events: list[Event] = []
        while self._step(events):
            pass
        return events

    def close(self) -> None:
        """The body has ended: it must have ended with the closing delimiter."""
        if self._state != _EPILOGUE:
            raise MultipartError("The multipart body ended before its closing boundary.")

    def _step(self, events: list[Event]) -> bool:
        """Advances by one state transition; False when more input is needed."""
        if self._state == _PREAMBLE:
            return self._skip_preamble()
        if self._state == _HEADERS:
            return self._read_headers(events)
        if self._state == _CONTENT:
            return self._read_content(events)
        if self._state == _AFTER_DELIMITER:
            return self._after_delimiter(events)
        self._count_framing(len(self._buffer))
        self._buffer.clear()
        return False

    def _skip_preamble(self) -> bool:
        at = self._buffer.find(self._delimiter)
        if at < 0:
            keep = len(self._delimiter) - 1
            self._count_framing(max(len(self._buffer) - keep, 0))
            del self._buffer[: max(len(self._buffer) - keep, 0)]
            return False
        self._count_framing(at)
        del self._buffer[: at + len(self._delimiter)]
        self._state = _AFTER_DELIMITER
        return True

    def _after_delimiter(self, events: list[Event]) -> bool:
        if len(self._buffer) < 2:
            return False
        if self._buffer[:2] == b"--":
            del self._buffer[:2]
            events.append(BodyEnd())
            self._state = _EPILOGUE
            return True
        # Transport padding (spaces or tabs) may follow a delimiter before its CRLF.
        end = self._buffer.find(b"\r\n")
        if end < 0:
            if len(self._buffer) > 256:
                raise MultipartError("Malformed multipart delimiter line.")
            return False
        if self._buffer[:end].strip(b" \t"):
            raise MultipartError("Malformed multipart delimiter line.")
        del self._buffer[: end + 2]
        self._state = _HEADERS
        return True

    def _read_headers(self, events: list[Event]) -> bool:
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buffer) > MAX_HEADER_BYTES:
                raise MultipartError("A multipart part's headers are too long.")
            return False
        if end > MAX_HEADER_BYTES:
            raise MultipartError("A multipart part's headers are too long.")
        block = bytes(self._buffer[:end])
        del self._buffer[: end + 4]
        events.append(PartStart(_parse_part_headers(block)))
        self._state = _CONTENT
        return True

    def _read_content(self, events: list[Event]) -> bool:
        at = self._buffer.find(self._delimiter)
        if at < 0:
            # Hand on all but what could be the start of a delimiter split across chunks.
            safe = len(self._buffer) - len(self._delimiter) + 1
            if safe > 0:
                events.append(PartData(bytes(self._buffer[:safe])))
                del self._buffer[:safe]
            return False
        if at:
            events.append(PartData(bytes(self._buffer[:at])))
        del self._buffer[: at + len(self._delimiter)]
        events.append(PartEnd())
        self._state = _AFTER_DELIMITER
        return True

    def _count_framing(self, size: int) -> None:
        self._framing += size
        if self._framing > MAX_FRAMING_BYTES:
            raise MultipartError("The multipart body has too much data outside its parts.")


def _parse_part_headers(block: bytes) -> PartHeaders:
    try:
        text = block.decode("utf-8")
    except UnicodeDecodeError:
        text = block.decode("latin-1")
    headers: dict[str, str] = {}
    for line in text.split("\r\n"):
        name, colon, value = line.partition(":")
        if not colon or not name.strip():
            raise MultipartError("Malformed multipart part header.")
        headers[name.strip().lower()] = value.strip()
    disposition = headers.get("content-disposition")
    kind, _, rest = (disposition or "").partition(";")
    if kind.strip().lower() != "form-data":
        raise MultipartError("Every multipart part needs 'Content-Disposition: form-data'.")
    params = header_params(rest)
    if "name" not in params:
        raise MultipartError("A multipart part has no field name.")
    return PartHeaders(name=params["name"], filename=params.get("filename"), content_type=headers.get("content-type"))
