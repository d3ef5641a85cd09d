"""Limits on a request's head for `fmnist serve`, applied by the HTTP protocol itself, before the application.

uvicorn's fast parser (httptools) keeps reading a request line and headers of any size, so one client could make
the server hold a 64 MB header. `BoundedHttpTools` counts the bytes of each request's head as they arrive and the
headers as they are parsed, and answers 431 (closing the connection) past MAX_HEAD_BYTES or MAX_HEADERS. When the
server stops, it gives a connection accepted a moment before a grace to send its request, where uvicorn would
close it unanswered. Without httptools, uvicorn's h11 parser has a size limit of its own (`config_options`).
"""

import functools
import json

MAX_HEAD_BYTES = 64 * 1024  # request line and headers; browsers send 1-2 kB
MAX_HEADERS = 100
SHUTDOWN_GRACE = 1.0  # seconds a connection accepted just before shutdown has to send its request


class HeadTooLarge(Exception):
    """Raised inside a parser callback to stop parsing a request whose head is over the limits."""


def config_options():
    """The keyword arguments of `uvicorn.Config` that bound request heads: the protocol class, or h11's limit."""
    try:
        import httptools  # noqa: F401  (uvicorn's choice when it is installed)
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:
        return {"http": "h11", "h11_max_incomplete_event_size": MAX_HEAD_BYTES}
    return {"http": bounded(HttpToolsProtocol)}


def refusal(message):
    body = json.dumps({"detail": message}).encode("ascii")
    head = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\n"
    return head + b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body) + body


def __getattr__(name):
    """`BoundedHttpTools`, made on first use: pickling it by reference (uvicorn's spawned `--workers` receive
    their config that way) finds the same class here."""
    if name == "BoundedHttpTools":
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

        return bounded(HttpToolsProtocol)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class GracefulShutdown:
    """Mixed into uvicorn's protocol: it closes a connection with no request under way at once when the server
    stops; one accepted just before the socket closed may have its request on the way: SHUTDOWN_GRACE to arrive."""

    def shutdown(self):
        if self.cycle is None or self.cycle.response_complete:
            self.loop.call_later(SHUTDOWN_GRACE, self._close_unless_busy)
        else:
            super().shutdown()

    def _close_unless_busy(self):
        if self.cycle is None or self.cycle.response_complete:
            self.transport.close()
        else:
            self.cycle.keep_alive = False  # a request arrived: answered, then the connection closes


@functools.cache
def bounded(base):
    """A subclass of uvicorn's httptools protocol `base` with the head limits (one class per base)."""
    import httptools

    class BoundedHttpTools(GracefulShutdown, base):
        __qualname__ = "BoundedHttpTools"

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.head_bytes, self.header_bytes, self.in_head, self.refused = 0, 0, True, None

        def on_message_begin(self):
            super().on_message_begin()
            self.in_head, self.head_bytes, self.header_bytes = True, 0, 0

        def on_url(self, url):
            super().on_url(url)
            self._check(len(self.url), 0)

        def on_header(self, name, value):
            self.header_bytes += len(name) + len(value) + 4
            self._check(len(self.url) + self.header_bytes, len(self.headers) + 1)
            super().on_header(name, value)

        def on_headers_complete(self):
            self.in_head = False
            super().on_headers_complete()

        def _check(self, size, count):
            if size > MAX_HEAD_BYTES or count > MAX_HEADERS:
                self.refused = f"request head over the limits ({MAX_HEAD_BYTES:,} bytes, {MAX_HEADERS} headers)"
                raise HeadTooLarge(self.refused)

        def data_received(self, data):  # uvicorn's own, with the refusal
            if self.refused is not None:
                return
            if self.in_head:
                self.head_bytes += len(data)
            self._unset_keepalive_if_required()
            try:
                self.parser.feed_data(data)
            except httptools.HttpParserUpgrade:
                if self._should_upgrade():
                    self.handle_websocket_upgrade()
                else:
                    self._unsupported_upgrade_warning()
            except httptools.HttpParserError:
                if self.refused is None:  # not ours: uvicorn's answer to a malformed request
                    self.logger.warning("Invalid HTTP request received.")
                    self.send_400_response("Invalid HTTP request received.")
                    return
            if self.refused is None and self.in_head and self.head_bytes > MAX_HEAD_BYTES:
                self.refused = f"request head over the limit of {MAX_HEAD_BYTES:,} bytes"  # sent slowly, or endless
            if self.refused is not None:
                self.transport.write(refusal(self.refused))
                self.transport.close()

    return BoundedHttpTools
