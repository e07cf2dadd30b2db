"""Servers on 127.0.0.1 that stand in for public data sources in tests.

* :class:`RecordingProxy` forwards every request to an S3-compatible endpoint (moto's
  server) and records whether it was signed (its ``Authorization`` header), because moto
  answers unsigned requests for public objects just as signed ones, so its answers alone
  cannot tell anonymous access from signed access.
* :class:`RangeServer` serves the files of a folder over HTTP with ``Range`` support
  (``206 Partial Content``), like MAST's HTTPS file servers, and records what it sent.
"""
from __future__ import annotations

import http.client
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

_RANGE = re.compile(r"bytes=(\d+)-(\d*)$")


@dataclass
class Seen:
    """What a server saw: one entry per request."""

    requests: list[dict] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, **entry) -> None:
        with self.lock:
            self.requests.append(entry)


class _Server:
    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self.seen = Seen()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.httpd.owner = self  # type: ignore[attr-defined]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class RecordingProxy(_Server):
    """An HTTP proxy in front of ``upstream`` that records each request's signature."""

    def __init__(self, upstream: str) -> None:
        self.upstream = urlsplit(upstream)
        super().__init__(_ProxyHandler)

    @property
    def signed(self) -> list[bool]:
        """For each request so far, whether it carried an Authorization header."""
        return [r["authorization"] is not None for r in self.seen.requests]


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - stdlib signature
        pass

    def _handle(self) -> None:
        owner: RecordingProxy = self.server.owner  # type: ignore[attr-defined]
        authorization = self.headers.get("Authorization")
        signed_query = "X-Amz-Signature=" in self.path
        owner.seen.add(method=self.command, path=self.path, authorization=authorization or
                       ("query" if signed_query else None))
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        connection = http.client.HTTPConnection(owner.upstream.hostname, owner.upstream.port, timeout=60)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in {"connection", "keep-alive"}}
        connection.request(self.command, self.path, body=body, headers=headers)
        response = connection.getresponse()
        data = response.read()
        self.send_response(response.status, response.reason)
        for key, value in response.getheaders():
            if key.lower() not in {"connection", "keep-alive", "transfer-encoding", "content-length"}:
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(data) if self.command != "HEAD" else
                                               response.getheader("Content-Length") or 0))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        connection.close()

    do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _handle


class RangeServer(_Server):
    """Serves ``root``'s files at ``{url}/{relative path}``, honouring ``Range: bytes=a-b``.

    With ``ignore_range`` it always sends the whole file (as some servers do).
    """

    def __init__(self, root: Path, *, ignore_range: bool = False) -> None:
        self.root = Path(root)
        self.ignore_range = ignore_range
        super().__init__(_RangeHandler)

    @property
    def bytes_sent(self) -> int:
        return sum(r["sent"] for r in self.seen.requests)


class _RangeHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - stdlib signature
        pass

    def _handle(self) -> None:
        owner: RangeServer = self.server.owner  # type: ignore[attr-defined]
        path = owner.root / unquote(urlsplit(self.path).path).lstrip("/")
        if not path.is_file():
            owner.seen.add(method=self.command, path=self.path, range=None, sent=0, status=404)
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        data = path.read_bytes()
        requested = self.headers.get("Range")
        match = _RANGE.match(requested or "")
        status, body, extra = 200, data, {}
        if match and not owner.ignore_range:
            start = int(match.group(1))
            stop = min(int(match.group(2)) + 1 if match.group(2) else len(data), len(data))
            status, body = 206, data[start:stop]
            extra["Content-Range"] = f"bytes {start}-{stop - 1}/{len(data)}"
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("ETag", f'"{path.stat().st_mtime_ns:x}"')
        for key, value in extra.items():
            self.send_header(key, value)
        self.end_headers()
        sent = 0 if self.command == "HEAD" else len(body)
        if sent:
            self.wfile.write(body)
        owner.seen.add(method=self.command, path=self.path, range=requested, sent=sent, status=status)

    do_GET = do_HEAD = _handle
