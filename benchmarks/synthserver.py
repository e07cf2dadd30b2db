"""An S3 endpoint on 127.0.0.1 that makes full-size FFIs up on request and checks the cube
parts uploaded to it, keeping neither: ingest at real size without the disk.

    python synthserver.py --sector 56 --frames 11700 [--days 27]

prints ``{"port": P, "ffis": [urls]}`` when listening. Path-style requests, unsigned or
signed (signatures are not checked):

* ``GET``/``HEAD`` of ``/stpubdata/tess/public/ffi/s0056/2022/DDD/1-1/{name}``: a SPOC FFI
  of 2078 x 2136 float32 pixels (:mod:`cubecut.synth.sparse`: real headers, pixels from
  :func:`~cubecut.synth.sparse.pattern_rows`), any ``Range``, ``If-Match`` its ETag. The
  frames are spread over ``--days`` day folders in time order, as MAST lays a sector out
  (one prefix per day and camera/CCD).
* ``PUT``/``GET``/``HEAD``/``DELETE`` of any other key: small objects kept in memory (the
  ingest plan's staging objects).
* ``POST ?uploads`` begins a multipart upload (``POST ?uploadId`` completes a slab's); ``PUT ?partNumber=N&uploadId=U`` receives a
  part and compares it, as it streams in, with what the cube must hold there (the plan
  staged beside the cube names the part's rows; :func:`pattern_cube_rows`); ``DELETE
  ?uploadId`` aborts. A part that differs is answered 400 ``BadDigest``.
* Slabs of the two-stage transpose (``ingest_two_stage.py``): ``{staging}slabs/F0-F1.bin``
  beside a staged plan, frames ``[F0, F1)`` of every row in cube order. A multipart upload
  of one is compared as it streams in (part ``N`` = the rows of the plan's block ``N``,
  :func:`expected_slab_part`) and not kept; a ``GET`` of one is synthesized
  (:func:`slab_bytes`), any ``Range``.
* ``GET /_stats`` (JSON: requests by kind, GETs per prefix, bytes out, the parts checked),
  ``POST /_reset`` (zero the counters).

Each connection has its own thread (``ThreadingHTTPServer``), as S3 serves concurrently.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

import numpy as np

from cubecut.ingest.plan import IngestPlan
from cubecut.synth.sparse import SparseFFI, pattern_cube_rows, pattern_rows, sparse_sector

_RANGE = re.compile(r"bytes=(\d+)-(\d*)$")
_SLAB = re.compile(r"(.*/)slabs/(\d+)-(\d+)\.bin$")
BUCKET = "stpubdata"


class Store:
    """The synthesized FFIs, the small objects, the uploads and the counters (thread-safe)."""

    def __init__(self, ffis: list[SparseFFI], sector: int, days: int) -> None:
        self.ffis: dict[str, tuple[int, SparseFFI]] = {}
        for frame, ffi in enumerate(ffis):
            day = 1 + frame * days // len(ffis)
            self.ffis[f"tess/public/ffi/s{sector:04d}/2022/{day:03d}/1-1/{ffi.name}"] = (frame, ffi)
        self.objects: dict[str, bytes] = {}
        self.uploads: dict[str, str] = {}
        self.plans: dict[str, IngestPlan] = {}
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.requests: Counter[str] = Counter()
            self.prefix_gets: Counter[str] = Counter()
            self.bytes_out = 0
            self.parts: list[dict] = []

    def count(self, kind: str, key: str = "", nbytes: int = 0) -> None:
        with self.lock:
            self.requests[kind] += 1
            self.bytes_out += nbytes
            if kind == "GET ffi":
                self.prefix_gets[key.rsplit("/", 1)[0]] += 1

    def stats(self) -> dict:
        with self.lock:
            return {"requests": dict(self.requests), "bytes_out": self.bytes_out,
                    "prefix_gets": dict(self.prefix_gets), "parts": list(self.parts)}

    def slab_of(self, key: str) -> tuple[IngestPlan, int, int] | None:
        """The plan and frames ``[f0, f1)`` of slab object ``key``, or None if it is not one."""
        match = _SLAB.match(key)
        staged = self.objects.get(match.group(1) + "plan.json") if match else None
        if match is None or staged is None:
            return None
        return IngestPlan.from_json(staged), int(match.group(2)), int(match.group(3))

    def plan_of(self, upload_id: str) -> IngestPlan:
        """The plan staged beside the cube that ``upload_id`` builds."""
        if upload_id not in self.plans:
            for key, data in list(self.objects.items()):
                if key.endswith("/plan.json") and upload_id.encode() in data:
                    self.plans[upload_id] = IngestPlan.from_json(data)
        return self.plans[upload_id]


def ffi_bytes(ffi: SparseFFI, frame: int, start: int, stop: int) -> bytes:
    """Bytes ``[start, stop)`` of ``ffi`` (frame ``frame`` of the sector)."""
    nrows, ncols = ffi.shape
    row_bytes = ncols * 4
    pieces = []
    segments = [(0, ffi.primary), (len(ffi.primary), ffi.flux_header), (ffi.flux_offset, 0),
                (ffi.flux_offset + ffi.image_bytes, ffi.error_header), (ffi.error_offset, 1)]
    for offset, what in segments:
        size = len(what) if isinstance(what, bytes) else ffi.image_bytes
        a, b = max(start, offset), min(stop, offset + size)
        if a >= b:
            continue
        if isinstance(what, bytes):
            pieces.append(what[a - offset:b - offset])
            continue
        rel_a, rel_b = a - offset, b - offset  # within the image's data unit
        row_a, row_b = rel_a // row_bytes, min(nrows, -(-rel_b // row_bytes))
        pixels = pattern_rows(frame, what, (row_a, row_b), ncols).tobytes() if row_b > row_a else b""
        pixels += bytes(max(0, rel_b - row_b * row_bytes))  # the data unit's zero padding
        pieces.append(pixels[rel_a - row_a * row_bytes:rel_b - row_a * row_bytes])
    return b"".join(pieces)


def expected_part(plan: IngestPlan, part: int, head: bytes, tail: bytes):
    """The bytes part ``part`` must hold, in pieces of one cube row (a generator)."""
    block = plan.blocks[part - 1]
    layout = plan.layout
    if block.head:
        yield head
    for row in range(block.row0, block.row1):
        yield pattern_cube_rows((row, row + 1), layout.ncols, layout.nt, layout.nplanes).tobytes()
    if block.tail:
        yield tail


def slab_row_bytes(plan: IngestPlan, f0: int, f1: int) -> int:
    """Bytes of one cube row in the slab of frames ``[f0, f1)``."""
    return plan.layout.ncols * (f1 - f0) * plan.layout.nplanes * 4


def slab_bytes(plan: IngestPlan, f0: int, f1: int, start: int, stop: int) -> bytes:
    """Bytes ``[start, stop)`` of the slab of frames ``[f0, f1)``: the cube's rows over those frames."""
    stride, layout = slab_row_bytes(plan, f0, f1), plan.layout
    row_a, row_b = start // stride, -(-stop // stride)
    rows = pattern_cube_rows((row_a, row_b), layout.ncols, f1 - f0, layout.nplanes, first_frame=f0).tobytes()
    return rows[start - row_a * stride:stop - row_a * stride]


def expected_slab_part(plan: IngestPlan, f0: int, f1: int, part: int):
    """The bytes part ``part`` of the slab of frames ``[f0, f1)`` must hold: block ``part``'s rows."""
    block, layout = plan.blocks[part - 1], plan.layout
    for row in range(block.row0, block.row1):
        yield pattern_cube_rows((row, row + 1), layout.ncols, f1 - f0, layout.nplanes, first_frame=f0).tobytes()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    store: Store

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        pass

    def _send(self, status: int, body: bytes = b"", headers: dict | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _error(self, status: int, code: str) -> None:
        self._send(status, f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code></Error>".encode(),
                   {"Content-Type": "application/xml"})

    def _where(self) -> tuple[str, dict[str, list[str]]]:
        split = urlsplit(self.path)
        path = unquote(split.path).lstrip("/")
        return path.split("/", 1)[1] if "/" in path else "", parse_qs(split.query, keep_blank_values=True)

    def _body(self):
        """The request body in pieces, aws-chunked or plain."""
        length = int(self.headers.get("Content-Length", 0))
        if "aws-chunked" not in self.headers.get("Content-Encoding", ""):
            while length > 0:
                piece = self.rfile.read(min(length, 8 << 20))
                length -= len(piece)
                yield piece
            return
        while True:
            size = int(self.rfile.readline().split(b";")[0].strip(), 16)
            if size == 0:
                while self.rfile.readline().strip():  # trailers, then the empty line
                    pass
                return
            while size > 0:
                piece = self.rfile.read(min(size, 8 << 20))
                size -= len(piece)
                yield piece
            self.rfile.readline()

    def do_HEAD(self) -> None:  # noqa: N802 - http.server's method names
        self.do_GET()

    def do_GET(self) -> None:  # noqa: N802
        key, _ = self._where()
        if self.path == "/_stats":
            return self._send(200, json.dumps(self.store.stats()).encode(), {"Content-Type": "application/json"})
        if key in self.store.ffis:
            frame, ffi = self.store.ffis[key]
            etag, size = f'"{frame:032x}"', ffi.size
        elif key in self.store.objects:
            etag, size = '"00000000000000000000000000000000"', len(self.store.objects[key])
        elif slab := self.store.slab_of(key):
            etag, size = '"5' + 31 * '0' + '"', slab_row_bytes(*slab) * slab[0].layout.nrows
        else:
            return self._error(404, "NoSuchKey")
        wanted = self.headers.get("If-Match")
        if wanted and wanted.strip() not in (etag, "*"):
            return self._error(412, "PreconditionFailed")
        start, stop, status = 0, size, 200
        if self.headers.get("Range"):
            match = _RANGE.match(self.headers["Range"].strip())
            if not match or int(match.group(1)) >= size:
                return self._error(416, "InvalidRange")
            start = int(match.group(1))
            stop = min(size, int(match.group(2)) + 1) if match.group(2) else size
            status = 206
        headers = {"ETag": etag, "Accept-Ranges": "bytes", "Content-Type": "application/octet-stream",
                   "Last-Modified": "Mon, 07 Dec 2026 00:00:00 GMT"}
        if status == 206:
            headers["Content-Range"] = f"bytes {start}-{stop - 1}/{size}"
        if self.command == "HEAD":
            self.store.count("HEAD")
            return self._head(status, headers, stop - start)
        if key in self.store.ffis:
            body, kind = ffi_bytes(ffi, frame, start, stop), "GET ffi"
        elif key in self.store.objects:
            body, kind = self.store.objects[key][start:stop], "GET object"
        else:
            body, kind = slab_bytes(*slab, start, stop), "GET slab"
        self.store.count(kind, key, len(body))
        self._send(status, body, headers)

    def _head(self, status: int, headers: dict, length: int) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(length))
        self.end_headers()

    def do_PUT(self) -> None:  # noqa: N802
        key, query = self._where()
        if "partNumber" in query:
            return self._part(int(query["partNumber"][0]), query["uploadId"][0])
        self.store.objects[key] = b"".join(self._body())
        self.store.count("PUT")
        self._send(200, b"", {"ETag": '"00000000000000000000000000000000"'})

    def _part(self, part: int, upload_id: str) -> None:
        store = self.store
        slab = store.slab_of(store.uploads.get(upload_id, ""))
        if slab:
            expected = expected_slab_part(*slab, part)
        else:
            plan = store.plan_of(upload_id)
            staging = plan.staging.split("/", 3)[3]
            expected = expected_part(plan, part, store.objects.get(staging + "head.bin", b""),
                                     store.objects.get(staging + "tail.bin", b""))
        pending = memoryview(b"")
        received, ok = 0, True
        for piece in self._body():
            received += len(piece)
            view = memoryview(piece)
            while ok and len(view):
                if not len(pending):
                    pending = memoryview(next(expected, b""))
                    if not len(pending):
                        ok = False
                        break
                n = min(len(view), len(pending))
                ok = view[:n] == pending[:n]
                view, pending = view[n:], pending[n:]
        ok = ok and not len(pending) and next(expected, None) is None
        store.count("UploadPart slab" if slab else "UploadPart")
        with store.lock:
            store.parts.append({"part": part, "bytes": received, "ok": ok, **({"slab": slab[1:]} if slab else {})})
        if not ok:
            return self._error(400, "BadDigest")
        self._send(200, b"", {"ETag": f'"{part:032x}"'})

    def do_POST(self) -> None:  # noqa: N802
        key, query = self._where()
        if self.path == "/_reset":
            self.store.reset()
            return self._send(204)
        if "uploads" in query:
            upload_id = os.urandom(16).hex()
            self.store.uploads[upload_id] = key
            self.store.count("CreateMultipartUpload")
            body = (f"<InitiateMultipartUploadResult><Bucket>{BUCKET}</Bucket><Key>{key}</Key>"
                    f"<UploadId>{upload_id}</UploadId></InitiateMultipartUploadResult>").encode()
            return self._send(200, body, {"Content-Type": "application/xml"})
        if "uploadId" in query and self.store.slab_of(key):  # a slab is checked part by part, never kept
            for _ in self._body():
                pass
            self.store.count("CompleteMultipartUpload slab")
            body = (f"<CompleteMultipartUploadResult><Bucket>{BUCKET}</Bucket><Key>{key}</Key>"
                    f"<ETag>\"{5:032x}\"</ETag></CompleteMultipartUploadResult>").encode()
            return self._send(200, body, {"Content-Type": "application/xml"})
        self._error(501, "NotImplemented")

    def do_DELETE(self) -> None:  # noqa: N802
        key, query = self._where()
        if "uploadId" in query:
            self.store.uploads.pop(query["uploadId"][0], None)
        else:
            self.store.objects.pop(key, None)
        self._send(204)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sector", type=int, default=56)
    parser.add_argument("--frames", type=int, required=True)
    parser.add_argument("--days", type=int, default=27, help="day folders (prefixes) the frames are spread over")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    Handler.store = Store(sparse_sector(sector=args.sector, camera=1, ccd=1, frames=args.frames), args.sector,
                          args.days)
    ThreadingHTTPServer.request_queue_size = 1024
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    urls = [f"s3://{BUCKET}/{key}" for key in Handler.store.ffis]
    print(json.dumps({"port": server.server_address[1], "ffis": urls}), flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    np.seterr(all="raise")
    sys.exit(main())
