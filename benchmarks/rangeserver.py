"""A read-only S3 endpoint on 127.0.0.1 that serves requests concurrently, as S3 does.

    python rangeserver.py --store DIR

prints ``{"port": P}`` when listening. It serves ``GET``/``HEAD`` of the objects in
s3rver's store folder (``{store}/{bucket}/{dirs}/{name}._S3rver_object``, ETag from its
``.md5`` file), path-style (``/bucket/key``) as boto3, obstore and s3fs address a local
endpoint: ``Range: bytes=a-b``, ``If-Match`` (412 PreconditionFailed on another ETag),
404 NoSuchKey. Signatures are not checked and nothing can be written (the benchmarks put
objects through s3rver or its folder).

Why: s3rver (the benchmarks' S3 server) answers one request at a time, ~2-5 ms of its own
per range GET, so 30 concurrent row reads take ~60-100 ms on it however the client reads
them, while S3 serves them in parallel. Here each connection has its own thread and a
range is one ``os.pread`` (which releases the GIL), so concurrent reads overlap and
"this server's floor" approaches the physical one. Used by ``limit.py``'s headline
section beside s3rver (behind the same shaping proxy).
"""
from __future__ import annotations

import argparse
import email.utils
import json
import os
import re
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

_RANGE = re.compile(r"bytes=(\d+)-(\d*)$")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as S3 clients expect
    store: Path

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        pass

    def do_HEAD(self) -> None:  # noqa: N802 - http.server's method names
        self._serve(body=False)

    def do_GET(self) -> None:  # noqa: N802
        self._serve(body=True)

    def _error(self, status: int, code: str) -> None:
        body = f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code></Error>".encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _serve(self, body: bool) -> None:
        parts = unquote(urlsplit(self.path).path).lstrip("/").split("/")
        if len(parts) < 2 or not parts[-1]:
            return self._error(400, "InvalidRequest")
        bucket, *dirs, name = parts
        path = self.store.joinpath(bucket, *dirs, f"{name}._S3rver_object")
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            return self._error(404, "NoSuchKey")
        try:
            st = os.fstat(fd)
            etag = f'"{Path(f"{path}.md5").read_text().strip()}"'
            wanted = self.headers.get("If-Match")
            if wanted and wanted.strip() not in (etag, "*"):
                return self._error(412, "PreconditionFailed")
            start, stop, status = 0, st.st_size, 200
            ranged = self.headers.get("Range")
            if ranged:
                match = _RANGE.match(ranged.strip())
                if not match or int(match.group(1)) >= st.st_size:
                    return self._error(416, "InvalidRange")
                start = int(match.group(1))
                stop = min(st.st_size, int(match.group(2)) + 1) if match.group(2) else st.st_size
                status = 206
            self.send_response(status)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(stop - start))
            self.send_header("ETag", etag)
            self.send_header("Last-Modified", email.utils.formatdate(st.st_mtime, usegmt=True))
            self.send_header("Accept-Ranges", "bytes")
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{stop - 1}/{st.st_size}")
            self.end_headers()
            if body:
                self.wfile.write(os.pread(fd, stop - start, start))
        finally:
            os.close(fd)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", required=True, type=Path)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    Handler.store = args.store
    ThreadingHTTPServer.request_queue_size = 256  # 30+ clients connect at once (default backlog: 5)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    print(json.dumps({"port": server.server_address[1]}), flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
