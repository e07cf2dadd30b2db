"""What every local endpoint runs on: a server on a daemon thread, and an HTTP/1.1 request
handler that logs at debug level and reads request bodies (Content-Length or chunked)."""
from __future__ import annotations

import logging
import socketserver
import threading
from http.server import BaseHTTPRequestHandler
from typing import Any, Self

LOGGER = logging.getLogger(__name__)
#: The longest chunk-size or trailer line read (http.client's limit).
_MAX_LINE = 65536


class MalformedRequest(ValueError):
    """The request's framing (Content-Length, chunks) cannot be read."""


class BodyTooLarge(Exception):
    """The request body is above the limit it was read with (a fixed-length body was drained)."""


class BackgroundServer:
    """Serves ``server`` on a daemon thread named ``name`` from construction until :meth:`stop`;
    a context manager. :attr:`endpoint` is its ``http://host:port``."""

    def __init__(self, server: socketserver.TCPServer, name: str) -> None:
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name=name, daemon=True)
        self._thread.start()

    @property
    def endpoint(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def stop(self) -> None:
        """Stop serving, close the socket and wait for the serving thread."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class RequestHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 with keep-alive; access lines go to this module's logger at debug level."""

    protocol_version = "HTTP/1.1"

    def read_body(self, limit: int | None = None) -> bytes:
        """The request body (``limit``: most bytes accepted, None: any).

        Raises:
            MalformedRequest: a Content-Length or chunk size that is not a non-negative
                number, or a body that ends early.
            BodyTooLarge: a body above ``limit``; one with a Content-Length is read to
                its end first, so that the client can read the answer.
        """
        if "chunked" in self.headers.get("transfer-encoding", "").lower():
            return self._read_chunks(limit)
        text = (self.headers.get("content-length") or "0").strip()
        if not text.isdigit():
            raise MalformedRequest(f"Content-Length {text!r} is not a non-negative integer")
        length = int(text)
        if limit is not None and length > limit:
            while length > 0:
                chunk = self.rfile.read(min(length, 1 << 20))
                if not chunk:
                    break
                length -= len(chunk)
            raise BodyTooLarge(f"a body of {text} bytes")
        body = self.rfile.read(length) if length else b""
        if len(body) < length:
            raise MalformedRequest(f"the body ended after {len(body)} of {length} bytes")
        return body

    def _read_chunks(self, limit: int | None) -> bytes:
        """A chunked body; one far (1 MiB) above ``limit`` is not read to its end."""
        chunks: list[bytes] = []
        total = 0
        while True:
            line = self.rfile.readline(_MAX_LINE).split(b";", 1)[0].strip()
            try:
                size = int(line, 16)
            except ValueError:
                raise MalformedRequest(f"chunk size {line[:20]!r} is not hexadecimal") from None
            if size < 0:
                raise MalformedRequest("negative chunk size")
            if size == 0:
                while self.rfile.readline(_MAX_LINE) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                if limit is not None and total > limit:
                    raise BodyTooLarge(f"a chunked body of {total} bytes")
                return b"".join(chunks)
            total += size
            if limit is not None and total > limit + (1 << 20):
                raise MalformedRequest("chunked body far above the payload limit")
            chunk = self.rfile.read(size)
            if len(chunk) < size:
                raise MalformedRequest("the chunked body ended early")
            self.rfile.readline(_MAX_LINE)
            if limit is None or total <= limit:
                chunks.append(chunk)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        LOGGER.debug("%s: " + format, type(self).__name__, *args)
