"""Multipart uploads read into memory under hard limits, for `fmnist serve`.

Starlette's own form parsing spools every file over 1 MB to a temporary file on disk and reads the whole body
before any limit applies. Here the body is streamed through python-multipart's push parser: the declared
Content-Length is checked before a byte is read, the bytes actually received are counted as they arrive (a
chunked body declares none), the number of files is checked as each part starts, and nothing touches disk.
"""

import dataclasses
import re

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect

MAX_FIELDS = 16  # plain form fields per request (the form has two: model, top_k)
MAX_BOUNDARY = 70  # RFC 2046
BOUNDARY = re.compile(rb"[0-9A-Za-z'()+_,\-./:=? ]{1,%d}" % MAX_BOUNDARY)  # RFC 2046's bchars
DIGITS = re.compile(r"[0-9]{1,18}")  # ASCII only: str.isdigit also takes '²', which int() refuses


class RequestError(Exception):
    """A request the server refuses as a whole: `status` is the HTTP status, str() the one-line reason."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


@dataclasses.dataclass
class Upload:
    """One multipart part: a file (filename is not None) or a plain form field."""

    name: str
    filename: str | None
    content: bytearray = dataclasses.field(default_factory=bytearray)


class _Parts:
    """The callbacks python-multipart's parser calls while the body streams through it."""

    def __init__(self, max_files):
        self.max_files = max_files
        self.parts, self.ended = [], False
        self._headers, self._field, self._value = {}, bytearray(), bytearray()

    def callbacks(self):
        return {
            "on_part_begin": self._headers.clear,
            "on_header_field": lambda data, start, end: self._field.extend(data[start:end]),
            "on_header_value": lambda data, start, end: self._value.extend(data[start:end]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._part_start,
            "on_part_data": lambda data, start, end: self.parts[-1].content.extend(data[start:end]),
            "on_end": self._end,
        }

    def _header_end(self):
        self._headers[self._field.decode("latin-1").strip().lower()] = self._value.decode("latin-1").strip()
        self._field.clear()
        self._value.clear()

    def _part_start(self):
        _, options = parse_options_header(self._headers.get("content-disposition", ""))
        # Browsers send names as raw UTF-8; the header arrived as latin-1 text, so undo that first.
        name, filename = (
            options[key].decode("utf-8", "replace") if key in options else None for key in (b"name", b"filename")
        )
        if filename is not None and sum(p.filename is not None for p in self.parts) >= self.max_files:
            raise RequestError(400, f"too many files: at most {self.max_files} per request")
        if filename is None and sum(p.filename is None for p in self.parts) >= MAX_FIELDS:
            raise RequestError(400, f"too many form fields: at most {MAX_FIELDS} per request")
        self.parts.append(Upload(name or "", filename))

    def _end(self):
        self.ended = True


def boundary_of(content_type):
    """The multipart boundary of a Content-Type header; RequestError 415 if it is not multipart/form-data."""
    kind, options = parse_options_header(content_type or "")
    if kind != b"multipart/form-data" or not options.get(b"boundary"):
        shown = ascii(content_type[:100]) if content_type else "none"
        raise RequestError(415, f"Content-Type {shown}: expected multipart/form-data (send the images as files)")
    if not BOUNDARY.fullmatch(options[b"boundary"]):
        raise RequestError(400, f"multipart boundary: 1 to {MAX_BOUNDARY} of the characters RFC 2046 allows")
    return options[b"boundary"]


def whole_number(text, name, low, high):
    """A form field or query parameter that must be a whole number in [low, high], in ASCII digits."""
    if not DIGITS.fullmatch(text) or not low <= int(text) <= high:
        shown = ascii(text) if len(text) <= 20 else ascii(text[:17]) + "..."
        raise RequestError(400, f"{name} {shown}: must be a whole number from {low} to {high}")
    return int(text)


def check_declared_length(headers, max_body):
    """413 from the Content-Length header alone, before any of the body is read."""
    declared = headers.get("content-length")
    if declared is None:
        return
    if not DIGITS.fullmatch(declared):
        raise RequestError(400, f"Content-Length {declared[:20]!a}: not a number of bytes")
    if int(declared) > max_body:
        raise RequestError(413, f"request body of {int(declared):,} bytes is over the limit of {max_body:,}")


async def read_multipart(headers, chunks, *, max_body, max_files):
    """Parse a multipart body from an async iterator of byte chunks into a list of Upload, all in memory.

    `headers`: the request's headers (a mapping with lower-case keys). Raises RequestError.
    """
    check_declared_length(headers, max_body)
    parts = _Parts(max_files)
    parser = MultipartParser(boundary_of(headers.get("content-type")), parts.callbacks())
    received = 0
    try:
        async for chunk in chunks:
            received += len(chunk)
            if received > max_body:
                raise RequestError(413, f"request body is over the limit of {max_body:,} bytes")
            parser.write(chunk)
    except MultipartParseError as exc:
        raise RequestError(400, f"malformed multipart body ({exc})") from None
    except ClientDisconnect:  # nobody is left to answer; a quiet 400 rather than a traceback in the log
        raise RequestError(400, "the client disconnected before sending the whole body") from None
    if not parts.ended:
        raise RequestError(400, "malformed multipart body (it ends before its closing boundary)")
    return parts.parts
