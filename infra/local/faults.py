"""S3 fault injection: an HTTP proxy on 127.0.0.1 that sits between boto3 and a local S3.

:class:`FaultProxy` forwards every request to an upstream S3-compatible endpoint (moto's
server) and, at configurable rates, replaces the exchange with one of the faults S3 and
the network really produce:

``error_500``
    ``500 InternalError``, the request is not forwarded.
``slowdown_503``
    ``503 SlowDown`` (S3's throttling answer), the request is not forwarded.
``reset``
    the connection is reset (TCP RST) before any answer; the request is not forwarded.
``lost_response``
    the request *is* forwarded and applied upstream, then the connection is reset before
    the answer: the client cannot tell it from ``reset`` and must retry an operation that
    already happened (the case that makes non-idempotent calls dangerous).
``truncate``
    the answer's headers carry the true ``Content-Length`` but the body stops half way
    and the connection is closed: botocore raises when it reads the body.
``wrong_length``
    the body is cut in half *and* ``Content-Length`` says so: the HTTP exchange is
    complete and valid, only the caller can notice that it holds fewer bytes than it
    asked for. Applied to ranged answers (``206``) only, where the caller knows the
    length it expects; other answers get ``truncate`` instead.
``delay``
    the answer is held back ``delay_seconds`` before it is forwarded.

Faults hit only the operations named in ``operations`` (S3 operation names as
:func:`classify` derives them from method, path and query; ``None`` = all), so a test can
fail, say, the data path (``GetObject`` and ``UploadPart``) while ``AbortMultipartUpload``
still gets through.

The choice is *deterministic*: a request's fate depends on ``seed``, on what it asks for
(method, path, query without the random ``uploadId``, ``Range``) and on how many times
that same request was seen before, never on thread timing. A run with the same seed and
the same workload meets the same faults, and a retry of a failed request draws anew.

Use::

    with FaultProxy(upstream, FaultRates.spread(0.05), seed=1) as proxy:
        os.environ["AWS_ENDPOINT_URL"] = proxy.endpoint   # and clear cached clients
        ...
        print(proxy.stats.summary())
"""
from __future__ import annotations

import contextlib
import hashlib
import http.client
import socket
import struct
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from typing import Iterable
from urllib.parse import parse_qsl, urlsplit

from .serving import BackgroundServer, RequestHandler

__all__ = ["FaultProxy", "FaultRates", "FaultStats", "FAULT_KINDS", "classify"]

#: Fault kinds in the order their rates are stacked on [0, 1).
FAULT_KINDS = ("error_500", "slowdown_503", "reset", "lost_response", "truncate", "wrong_length", "delay")

_HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
               "transfer-encoding", "upgrade", "expect", "content-length"}
#: The faults that answer without forwarding: ``(status, S3 error code, message)``, None: a reset.
_NOT_FORWARDED = {"error_500": (500, "InternalError", "We encountered an internal error. Please try again."),
                  "slowdown_503": (503, "SlowDown", "Please reduce your request rate."), "reset": None}
_ERROR_BODY = ('<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message>'
               '<RequestId>FAULT{n:08d}</RequestId></Error>')


@dataclass(frozen=True)
class FaultRates:
    """Probability of each fault kind per request (their sum must not exceed 1)."""

    error_500: float = 0.0
    slowdown_503: float = 0.0
    reset: float = 0.0
    lost_response: float = 0.0
    truncate: float = 0.0
    wrong_length: float = 0.0
    delay: float = 0.0
    delay_seconds: float = 0.05

    def __post_init__(self) -> None:
        rates = [getattr(self, kind) for kind in FAULT_KINDS]
        if any(r < 0 for r in rates) or sum(rates) > 1 + 1e-9:
            raise ValueError(f"fault rates must be >= 0 and sum to at most 1, got {rates}")
        if self.delay_seconds < 0:
            raise ValueError("delay_seconds must be >= 0")

    @classmethod
    def spread(cls, total: float, kinds: Iterable[str] = FAULT_KINDS, delay_seconds: float = 0.05) -> "FaultRates":
        """``total`` shared equally by ``kinds`` (e.g. ``spread(0.05)``: 5 % of requests fail)."""
        kinds = list(kinds)
        unknown = set(kinds) - set(FAULT_KINDS)
        if unknown:
            raise ValueError(f"unknown fault kinds {sorted(unknown)}")
        return cls(**{kind: total / len(kinds) for kind in kinds}, delay_seconds=delay_seconds)

    @property
    def total(self) -> float:
        return sum(getattr(self, kind) for kind in FAULT_KINDS)


@dataclass
class FaultStats:
    """What the proxy saw: requests per operation, and faults per kind and per operation."""

    requests: Counter = field(default_factory=Counter)
    faults: Counter = field(default_factory=Counter)
    faults_by_operation: Counter = field(default_factory=Counter)
    forwarded: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, operation: str, kind: str | None, forwarded: bool) -> None:
        with self._lock:
            self.requests[operation] += 1
            if kind is not None:
                self.faults[kind] += 1
                self.faults_by_operation[operation] += 1
            if forwarded:
                self.forwarded += 1

    @property
    def total_requests(self) -> int:
        return sum(self.requests.values())

    @property
    def total_faults(self) -> int:
        return sum(self.faults.values())

    def summary(self) -> dict:
        with self._lock:
            return {"requests": self.total_requests, "forwarded": self.forwarded, "faults": self.total_faults,
                    "by_kind": dict(sorted(self.faults.items())),
                    "requests_by_operation": dict(sorted(self.requests.items())),
                    "faults_by_operation": dict(sorted(self.faults_by_operation.items()))}


def classify(method: str, path: str, query: str, headers: dict[str, str] | None = None) -> str:
    """The S3 operation of a path-style request, e.g. ``UploadPart`` or ``GetObject``."""
    params = dict(parse_qsl(query, keep_blank_values=True))
    parts = path.lstrip("/").split("/", 1)
    has_key = len(parts) == 2 and parts[1] != ""
    method = method.upper()
    if not parts[0]:
        return "ListBuckets"
    if not has_key:
        if method == "GET":
            if "uploads" in params:
                return "ListMultipartUploads"
            return "ListObjects" if not any(k in params for k in ("notification", "policy", "acl")) else "GetBucketConfig"
        return {"PUT": "CreateBucket", "DELETE": "DeleteBucket", "HEAD": "HeadBucket"}.get(method, "BucketOther")
    if method == "GET":
        return "ListParts" if "uploadId" in params else "GetObject"
    if method == "HEAD":
        return "HeadObject"
    if method == "PUT":
        return "UploadPart" if "partNumber" in params else ("CopyObject" if headers and
                                                            "x-amz-copy-source" in headers else "PutObject")
    if method == "POST":
        if "uploads" in params:
            return "CreateMultipartUpload"
        if "uploadId" in params:
            return "CompleteMultipartUpload"
        return "PostObject"
    if method == "DELETE":
        return "AbortMultipartUpload" if "uploadId" in params else "DeleteObject"
    return "Other"


class _Server(ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:
        pass  # the resets are on purpose: no traceback for each


class FaultProxy(BackgroundServer):
    """A fault-injecting HTTP proxy to ``upstream`` (``http://host:port``), on ``host``:``port``.

    Serving from construction (port 0 picks a free one) until :meth:`~.serving.BackgroundServer.stop`;
    :attr:`~.serving.BackgroundServer.endpoint` is its URL.
    :meth:`set_rates` changes the rates (and the faulted ``operations``) at any time.
    """

    def __init__(self, upstream: str, rates: FaultRates | None = None, *, seed: int = 0,
                 operations: Iterable[str] | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        parsed = urlsplit(upstream)
        if parsed.scheme != "http" or not parsed.hostname:
            raise ValueError(f"upstream must be http://host:port, got {upstream!r}")
        if parsed.hostname not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError("FaultProxy only forwards to a local endpoint")
        self.upstream = (parsed.hostname, parsed.port or 80)
        self.seed = seed
        self.stats = FaultStats()
        self._lock = threading.Lock()
        self._seen: Counter = Counter()
        self._local = threading.local()
        self.set_rates(rates or FaultRates(), operations)
        super().__init__(_Server((host, port), self._handler_class()), "s3-fault-proxy")

    def set_rates(self, rates: FaultRates, operations: Iterable[str] | None = None) -> None:
        """Use ``rates`` from now on, for ``operations`` only (``None``: every operation)."""
        with self._lock:
            self.rates = rates
            self.operations = None if operations is None else frozenset(operations)

    def reset_stats(self) -> FaultStats:
        """Start counting afresh; returns the previous counts."""
        with self._lock:
            old, self.stats = self.stats, FaultStats()
            return old

    # -- the decision ----------------------------------------------------------------
    def decide(self, method: str, path: str, query: str, headers: dict[str, str]) -> tuple[str, str | None]:
        """``(operation, fault kind or None)`` for one request (counts it as seen)."""
        operation = classify(method, path, query, headers)
        with self._lock:
            rates, operations = self.rates, self.operations
            stable_query = "&".join(sorted(f"{k}={v}" for k, v in parse_qsl(query, keep_blank_values=True)
                                           if k not in ("uploadId", "x-id")))
            key = f"{method} {path}?{stable_query} {headers.get('range', '')}"
            nth = self._seen[key]
            self._seen[key] += 1
        if rates.total <= 0 or (operations is not None and operation not in operations):
            return operation, None
        digest = hashlib.blake2b(f"{self.seed}|{key}|{nth}".encode(), digest_size=8).digest()
        draw = int.from_bytes(digest, "big") / 2**64
        edge = 0.0
        for kind in FAULT_KINDS:
            edge += getattr(rates, kind)
            if draw < edge:
                return operation, kind
        return operation, None

    # -- forwarding --------------------------------------------------------------------
    def _forward(self, method: str, target: str, headers: list[tuple[str, str]],
                 body: bytes) -> tuple[int, str, list[tuple[str, str]], bytes]:
        for attempt in (0, 1):
            conn = getattr(self._local, "conn", None)
            if conn is None:
                conn = self._local.conn = http.client.HTTPConnection(*self.upstream, timeout=120)
                conn.connect()
                conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            try:
                conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
                for name, value in headers:
                    conn.putheader(name, value)
                if body or method in ("PUT", "POST"):
                    conn.putheader("Content-Length", str(len(body)))
                conn.endheaders(body if body else None)
                response = conn.getresponse()
                data = response.read()
                out = [(k, v) for k, v in response.getheaders() if k.lower() not in _HOP_BY_HOP]
                length = response.getheader("Content-Length")
                if method == "HEAD" and length is not None:
                    out.append(("Content-Length", length))
                return response.status, response.reason, out, data
            except (ConnectionError, http.client.HTTPException, OSError):
                conn.close()
                self._local.conn = None
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(RequestHandler):
            def setup(self) -> None:
                super().setup()
                # Headers and body are separate writes: without this, Nagle's algorithm and
                # delayed ACKs add ~40 ms to every answer.
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def finish(self) -> None:
                with contextlib.suppress(OSError):
                    super().finish()

            def _reset(self) -> None:
                """Drop the connection with a TCP RST (SO_LINGER 0)."""
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.wfile.flush()
                with contextlib.suppress(OSError):
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                with contextlib.suppress(OSError):
                    self.connection.close()

            def _send(self, status: int, reason: str, headers: list[tuple[str, str]], body: bytes, *,
                      length: int | None = None, head: bool = False) -> None:
                self.send_response_only(status, reason)
                for name, value in headers:
                    self.send_header(name, value)
                if not head:
                    self.send_header("Content-Length", str(len(body) if length is None else length))
                self.end_headers()
                if body and not head:
                    self.wfile.write(body)
                self.wfile.flush()

            def _error(self, status: int, code: str, message: str, head: bool) -> None:
                body = _ERROR_BODY.format(code=code, message=message, n=proxy.stats.total_requests).encode()
                headers = [("Content-Type", "application/xml"), ("x-amz-request-id", "FAULTINJECTED")]
                self._send(status, "Service Unavailable" if status == 503 else "Internal Server Error",
                           headers, b"" if head else body, head=head)

            def _handle(self) -> None:
                split = urlsplit(self.path)
                body = self.read_body()
                lowered = {k.lower(): v for k, v in self.headers.items()}
                operation, kind = proxy.decide(self.command, split.path, split.query, lowered)
                head = self.command == "HEAD"
                if kind in _NOT_FORWARDED:
                    proxy.stats.record(operation, kind, False)
                    answer = _NOT_FORWARDED[kind]
                    return self._reset() if answer is None else self._error(*answer, head)
                if kind == "delay":
                    time.sleep(proxy.rates.delay_seconds)
                headers = [(k, v) for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP]
                try:
                    status, reason, out_headers, data = proxy._forward(self.command, self.path, headers, body)
                except (ConnectionError, http.client.HTTPException, OSError):
                    proxy.stats.record(operation, None, False)
                    return self._error(502, "BadGateway", "upstream unreachable", head)
                if kind == "wrong_length" and (status != 206 or len(data) < 2):
                    kind = "truncate"
                if kind == "truncate" and (head or len(data) < 2):
                    kind = "lost_response"
                proxy.stats.record(operation, kind, True)
                if kind == "lost_response":
                    return self._reset()
                if kind == "truncate":
                    self._send(status, reason, out_headers, data[: len(data) // 2], length=len(data))
                    return self._reset()
                if kind == "wrong_length":
                    return self._send(status, reason, out_headers, data[: len(data) // 2])
                self._send(status, reason, out_headers, data, head=head)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        return Handler
