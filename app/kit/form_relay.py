"""Passes a client's multipart/form-data body on, byte for byte, while checking it.

Each chunk is parsed before it is handed on, so a part's headers are checked before any of
them leave, and a body that breaks a rule stops mid-stream: the receiver sees a truncated
body, never a complete one. The file's bytes are counted, never kept.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Protocol

from app.errors import InvalidRequest, PayloadTooLarge
from app.kit.multipart import BodyEnd, MultipartError, MultipartReader, PartData, PartEnd, PartStart, form_boundary

MAX_FIELD_BYTES = 4096
# What a form may add around its file: part headers, small fields, delimiters. A declared
# Content-Length over the file limit plus this is refused before a byte is read.
FORM_OVERHEAD_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class FormRules:
    file_field: str
    fields: frozenset[str]
    required: frozenset[str]
    max_file_bytes: int
    # Checks a complete text field's value; raises InvalidRequest to refuse it.
    check_field: Callable[[str, str], None] = lambda _name, _value: None


class FormInspector(Protocol):
    """Looks at a form as it passes, to refuse it mid-stream (raise a GatewayError) on grounds of
    its content: called with each text field, each piece of the file (awaited, so heavy work can
    leave the event loop), and at the body's end, in the order they come."""

    def on_field(self, name: str, value: str) -> None: ...

    async def on_file_data(self, data: bytes) -> None: ...

    def on_body_end(self) -> None: ...


def invalid_form(message: str, param: str | None = None) -> InvalidRequest:
    return InvalidRequest(message, param=param, code="invalid_multipart")


@dataclass
class FormRelay:
    rules: FormRules
    content_type: str | None
    file_bytes: int = 0
    fields: dict[str, str] = field(default_factory=dict)
    # Why the relay stopped, when it did: the caller raises this rather than the send failure.
    error: BaseException | None = None
    inspector: FormInspector | None = None
    boundary: str = field(init=False)
    _current: str | None = None
    _value: bytearray = field(default_factory=bytearray)
    _seen: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        try:
            self.boundary = form_boundary(self.content_type)
        except MultipartError as exc:
            raise invalid_form(str(exc)) from None

    async def relay(self, chunks: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
        reader = MultipartReader(self.boundary)
        try:
            async for chunk in chunks:
                for event in reader.feed(chunk):
                    self._on(event)
                    if self.inspector is not None and isinstance(event, PartData) and self._in_file:
                        await self.inspector.on_file_data(event.data)
                yield chunk
            reader.close()
        except MultipartError as exc:
            self.error = invalid_form(str(exc))
            raise self.error from None
        except BaseException as exc:
            self.error = exc
            raise

    @property
    def _in_file(self) -> bool:
        return self._current == self.rules.file_field

    def _on(self, event: PartStart | PartData | PartEnd | BodyEnd) -> None:
        if isinstance(event, PartStart):
            self._start(event.headers.name)
        elif isinstance(event, PartData):
            self._data(event.data)
        elif isinstance(event, PartEnd):
            self._end()
        else:
            missing = sorted(self.rules.required - self._seen)
            if missing:
                raise invalid_form(f"Missing required parameter: '{missing[0]}'.", param=missing[0])
            if self.inspector is not None:
                self.inspector.on_body_end()

    def _start(self, name: str) -> None:
        if name != self.rules.file_field and name not in self.rules.fields:
            raise invalid_form(f"Unrecognized multipart field: '{name[:64]}'.", param=name[:64])
        if name in self._seen:
            raise invalid_form(f"The multipart field '{name}' was sent more than once.", param=name)
        self._seen.add(name)
        self._current = name

    def _data(self, data: bytes) -> None:
        if self._current == self.rules.file_field:
            self.file_bytes += len(data)
            if self.file_bytes > self.rules.max_file_bytes:
                raise PayloadTooLarge(
                    f"The file is larger than the {self.rules.max_file_bytes} byte limit.", param=self._current
                )
            return
        self._value += data
        if len(self._value) > MAX_FIELD_BYTES:
            raise invalid_form(f"The field '{self._current}' is too long.", param=self._current)

    def _end(self) -> None:
        name, self._current = self._current, None
        if name is None or name == self.rules.file_field:
            return
        try:
            value = self._value.decode("utf-8")
        except UnicodeDecodeError:
            raise invalid_form(f"The field '{name}' is not valid UTF-8.", param=name) from None
        self._value.clear()
        self.fields[name] = value
        self.rules.check_field(name, value)
        if self.inspector is not None:
            self.inspector.on_field(name, value)
