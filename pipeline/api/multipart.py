"""A ``multipart/form-data`` body read as it arrives: small fields in memory, the file streamed on.

Starlette's own form parsing spools a file to a temporary file outside the inbox first; here
the file part's bytes go straight to the caller (into a hidden file in the inbox, as the page's
uploads do), so an API request never holds more than one network chunk of a recording in
memory and never writes it anywhere else. :func:`form_events` yields, in body order:

- ``Field(name, value)`` for each ordinary field (at most :data:`FIELD_BYTES` each);
- ``FileStart(field, filename)`` when the file part named ``file_field`` begins, then
  ``FileData(bytes)`` for its content, any number of times.

Parsing is python-multipart's (the parser Starlette itself uses); a malformed body, a second
file part, a field over the limit or a body that ends before the form's closing boundary (a
recording cut off) is a :class:`FormError` whose message says what was wrong.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import AsyncIterator

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, MultipartState, parse_options_header

FIELD_BYTES = 64 * 1024
FIELD_COUNT = 64


class FormError(Exception):
    """The body is not the form asked for."""


@dataclass(frozen=True)
class Field:
    name: str
    value: str


@dataclass(frozen=True)
class FileStart:
    field: str
    filename: str


@dataclass(frozen=True)
class FileData:
    data: bytes


def boundary_of(content_type: str | None) -> bytes:
    kind, options = parse_options_header(content_type or "")
    if kind != b"multipart/form-data" or not options.get(b"boundary"):
        raise FormError("send the request as multipart/form-data (a form with the recording as a file field)")
    return options[b"boundary"]


class _Collector:
    """python-multipart's callbacks, turned into a list of events per chunk fed."""

    def __init__(self, file_field: str):
        self.file_field = file_field
        self.events: list[Field | FileStart | FileData] = []
        self._header_field = bytearray()
        self._header_value = bytearray()
        self._headers: dict[bytes, bytes] = {}
        self._name: str | None = None
        self._is_file = False
        self._value = bytearray()
        self.files = 0
        self.fields = 0

    def callbacks(self) -> dict:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": lambda data, start, end: self._header_field.extend(data[start:end]),
            "on_header_value": lambda data, start, end: self._header_value.extend(data[start:end]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
        }

    def _part_begin(self) -> None:
        self._headers, self._name, self._is_file = {}, None, False
        self._value = bytearray()

    def _header_end(self) -> None:
        self._headers[bytes(self._header_field).lower()] = bytes(self._header_value)
        self._header_field, self._header_value = bytearray(), bytearray()

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        self._name = options.get(b"name", b"").decode("utf-8", "replace")
        filename = options.get(b"filename")
        self._is_file = filename is not None
        if self._is_file:
            if self._name != self.file_field:
                raise FormError(f"the recording goes in the field {self.file_field!r}, not {self._name!r}")
            self.files += 1
            if self.files > 1:
                raise FormError(f"send one recording per request (field {self.file_field!r} came twice)")
            self.events.append(FileStart(self._name, filename.decode("utf-8", "replace")))

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._is_file:
            self.events.append(FileData(bytes(data[start:end])))
            return
        self._value.extend(data[start:end])
        if len(self._value) > FIELD_BYTES:
            raise FormError(f"the form field {self._name!r} is over {FIELD_BYTES // 1024} KB")

    def _part_end(self) -> None:
        if not self._is_file:
            self.fields += 1
            if self.fields > FIELD_COUNT:
                raise FormError(f"the form has over {FIELD_COUNT} fields")
            self.events.append(Field(self._name or "", self._value.decode("utf-8", "replace")))


async def form_events(content_type: str | None, body: AsyncIterator[bytes], file_field: str) -> AsyncIterator[Field | FileStart | FileData]:
    """The events of the form in ``body`` (see the module's docstring), in order."""
    collector = _Collector(file_field)
    parser = MultipartParser(boundary_of(content_type), collector.callbacks())
    async for chunk in body:
        try:
            parser.write(chunk)
        except MultipartParseError as exc:
            raise FormError(f"the multipart body is malformed ({exc})") from None
        events, collector.events = collector.events, []
        for event in events:
            yield event
    try:
        parser.finalize()
    except MultipartParseError as exc:
        raise FormError(f"the multipart body is malformed ({exc})") from None
    if parser.state != MultipartState.END:  # python-multipart's finalize() does not check this itself
        raise FormError("the multipart body ended before its closing boundary (cut off?); send the whole form again")
    for event in collector.events:
        yield event
