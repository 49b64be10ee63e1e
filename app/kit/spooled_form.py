"""Multipart uploads that are read once, checked, and forwarded as they came.

The body is written to a spooled temporary file (in memory up to ``SPOOL_IN_MEMORY`` bytes, on
disk beyond) while a streaming parser picks out the text fields and measures the files. A
gateway must see every field before it can price the call (``model`` or ``n`` may follow the
file), so the upload is received in full before it is forwarded; it is never held in memory
whole, and the bytes sent upstream are exactly the bytes the client sent.
"""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import anyio
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from app.errors import InvalidRequest, PayloadTooLarge

SPOOL_IN_MEMORY = 1024 * 1024
CHUNK = 64 * 1024
# Text fields are small (a prompt, a model name); a larger one is refused rather than kept.
MAX_FIELD_BYTES = 64 * 1024
HEAD_BYTES = 64


@dataclass(slots=True)
class UploadedFile:
    field: str
    filename: str
    size: int = 0
    head: bytes = b""  # the first bytes, enough to read a WAV header


@dataclass(slots=True)
class Upload:
    content_type: str  # the client's header, boundary included
    size: int
    fields: dict[str, str]
    files: list[UploadedFile]
    spool: tempfile.SpooledTemporaryFile[bytes] = field(repr=False)

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body as received, read in pieces (off the event loop once it is on disk)."""
        self.spool.seek(0)
        while piece := await anyio.to_thread.run_sync(self.spool.read, CHUNK):
            yield piece

    def close(self) -> None:
        self.spool.close()


class _Parts:
    """python-multipart callbacks: collects text fields, measures files."""

    def __init__(self) -> None:
        self.fields: dict[str, str] = {}
        self.files: list[UploadedFile] = []
        self._header_name = b""
        self._headers: dict[bytes, bytes] = {}
        self._data = bytearray()
        self._file: UploadedFile | None = None
        self._name = ""

    def callbacks(self) -> dict[str, object]:
        return {
            "on_part_begin": self._begin,
            "on_header_field": lambda d, s, e: self._set_header_name(d[s:e]),
            "on_header_value": lambda d, s, e: self._add_header_value(d[s:e]),
            "on_headers_finished": self._headers_done,
            "on_part_data": self._part_data,
            "on_part_end": self._end,
        }

    def _begin(self) -> None:
        self._headers, self._data, self._file, self._header_name = {}, bytearray(), None, b""

    def _set_header_name(self, name: bytes) -> None:
        self._header_name = name.lower()

    def _add_header_value(self, value: bytes) -> None:
        self._headers[self._header_name] = self._headers.get(self._header_name, b"") + value

    def _headers_done(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        self._name = options.get(b"name", b"").decode("utf-8", "replace")
        if b"filename" in options:
            self._file = UploadedFile(self._name, options[b"filename"].decode("utf-8", "replace"))
            self.files.append(self._file)

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._file is not None:
            if len(self._file.head) < HEAD_BYTES:
                self._file.head += data[start : min(end, start + HEAD_BYTES - len(self._file.head))]
            self._file.size += end - start
            return
        self._data += data[start:end]
        if len(self._data) > MAX_FIELD_BYTES:
            raise InvalidRequest(f"The form field '{self._name}' is too large.", param=self._name)

    def _end(self) -> None:
        if self._file is None:
            self.fields[self._name] = self._data.decode("utf-8", "replace")


async def read_upload(request: Request, limit: int) -> Upload:
    """Receives a multipart/form-data body; refuses (413) as soon as it passes ``limit``."""
    header = request.headers.get("content-type", "")
    kind, options = parse_options_header(header)
    boundary = options.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary:
        raise InvalidRequest("This endpoint takes a multipart/form-data body.", code="invalid_content_type")
    parts = _Parts()
    parser = MultipartParser(boundary, parts.callbacks())  # type: ignore[arg-type]
    # Closed by the caller (Upload.close) once the upload has been forwarded, or below on failure.
    spool: tempfile.SpooledTemporaryFile[bytes] = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)  # noqa: SIM115
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"The upload is larger than the {limit} byte limit.")
            await anyio.to_thread.run_sync(spool.write, chunk)
            parser.write(chunk)
        parser.finalize()
    except MultipartParseError as exc:
        spool.close()
        raise InvalidRequest("The multipart body could not be parsed.", code="invalid_multipart") from exc
    except BaseException:
        spool.close()
        raise
    return Upload(header, size, parts.fields, parts.files, spool)
