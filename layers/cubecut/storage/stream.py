"""A whole object written as a stream of bytes, visible only once complete."""
from __future__ import annotations

import contextlib
import os
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor

from ..errors import StorageError
from .base import PartReceipt
from .location import Location
from .s3 import MIN_PART_BYTES

#: Part size of :class:`ObjectStreamWriter` uploads: S3 wants >= 5 MiB for every part but
#: the last and at most 10,000 parts (78 GiB at this size).
STREAM_PART_BYTES = 8 * 2**20
#: Parts :class:`ObjectStreamWriter` sends at once: one connection sends ~50-100 MB/s, so a
#: 2.3 GB TPF needs several at once to reach S3 within an API request's 29 s.
PARTS_IN_FLIGHT = 4


class ObjectStreamWriter:
    """A whole object written as a stream of bytes, visible only once complete.

    A write-only, unseekable binary file object (``write``, ``tell``, ``flush``; what
    :mod:`zipfile` needs) used as a context manager. Bytes collect in a buffer; each time it
    holds ``part_bytes`` they are sent as the next part of the backend's
    :class:`~cubecut.storage.base.Upload` (an S3 multipart upload, or a hidden temporary
    file beside the destination), started with the first part; parts are sent in
    background threads while the next fills, at most ``parts_in_flight`` at once, so at
    most ``parts_in_flight + 1`` parts are held. Leaving the block normally makes the object visible in one step
    (CompleteMultipartUpload, or a rename); an object that never filled one part is written
    with one :func:`~cubecut.storage.put_bytes` instead (one PUT) and its bytes are kept in
    :attr:`body`. Leaving it with an exception, or a failed part or completion, aborts the
    upload (or deletes the temporary file): no partial object is ever visible and the key
    keeps what it held before.

    After the block: :attr:`size` (bytes written), :attr:`etag`, :attr:`body` (the bytes of
    a single-PUT object, else None).
    """

    def __init__(self, url: str | os.PathLike[str] | Location, content_type: str = "application/octet-stream", *,
                 part_bytes: int = STREAM_PART_BYTES, parts_in_flight: int = PARTS_IN_FLIGHT) -> None:
        if part_bytes < MIN_PART_BYTES:
            raise ValueError(f"part_bytes must be >= {MIN_PART_BYTES} (S3's smallest part), got {part_bytes}")
        from . import backend_for, writable  # the package's, which imports this module

        self.location = writable(Location.of(url))
        self._backend = backend_for(self.location)
        self._upload = self._backend.upload(self.location)
        self.content_type = content_type
        self.part_bytes = part_bytes
        self.parts_in_flight = max(1, parts_in_flight)
        self.size = 0
        self.etag: str | None = None
        self.body: bytes | None = None
        self._buffer = bytearray()
        self._upload_id: str | None = None
        self._receipts: list[PartReceipt] = []
        self._pending: deque[Future[PartReceipt]] = deque()  # in part order
        self._sender: ThreadPoolExecutor | None = None
        self._closed = False

    # -- the file object ------------------------------------------------------------------
    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def tell(self) -> int:
        """Bytes written so far."""
        return self.size

    def flush(self) -> None:
        """Nothing to do: parts are sent when full, the rest when the block ends."""

    def write(self, data: bytes | bytearray | memoryview) -> int:
        if self._closed:
            raise ValueError(f"write to {self.location.url} after it was closed")
        self._buffer += data
        written = len(data) if isinstance(data, (bytes, bytearray)) else memoryview(data).nbytes
        self.size += written
        while len(self._buffer) >= self.part_bytes:
            self._send(self.part_bytes)
        return written

    def _send(self, nbytes: int | None = None) -> None:
        """Send the buffer's first ``nbytes`` (default all) as the next part, once fewer than
        ``parts_in_flight`` are on their way."""
        self._wait(self.parts_in_flight - 1)
        if self._upload_id is None:
            self._upload_id = self._upload.begin(self.content_type)
            self._sender = ThreadPoolExecutor(max_workers=self.parts_in_flight, thread_name_prefix="cubecut-part")
        assert self._sender is not None
        part = self._buffer[:nbytes]
        del self._buffer[:nbytes]  # CPython moves the start of a bytearray: nothing is copied
        offset = self.size - len(self._buffer) - len(part)
        number = len(self._receipts) + len(self._pending) + 1
        self._pending.append(self._sender.submit(self._upload.write_part, self._upload_id, number, offset, part))

    def _wait(self, in_flight: int = 0) -> None:
        """Wait for the oldest parts until at most ``in_flight`` are on their way (a failed
        part raises here)."""
        while len(self._pending) > in_flight:
            self._receipts.append(self._pending[0].result())
            self._pending.popleft()

    def __enter__(self) -> "ObjectStreamWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def close(self) -> None:
        """Send what is left and make the object visible (abort and raise if that fails)."""
        if self._closed:
            return
        try:
            if self._upload_id is not None:
                if self._buffer:
                    self._send()
                self._wait()
                self.etag = self._upload.complete(self._upload_id, self._receipts)
            else:
                self.body = bytes(self._buffer)
                self.etag = self._backend.put(self.location, self.body, self.content_type, tags=None, if_match=None,
                                              if_none_match=False)
        except BaseException:
            self.abort()
            raise
        self._finish()

    def abort(self) -> None:
        """Drop everything written: abort the upload / delete the temporary file."""
        upload_id = None if self._closed else self._upload_id
        try:
            for pending in self._pending:
                pending.cancel()
            for pending in self._pending:
                with contextlib.suppress(Exception):  # the upload is aborted whatever the parts did
                    pending.result()
            if upload_id is not None:
                with contextlib.suppress(StorageError):  # the lifecycle rule removes what is left
                    self._upload.abort(upload_id)
        finally:
            self._finish()

    def _finish(self) -> None:
        self._closed = True
        self._buffer = bytearray()
        self._pending.clear()
        if self._sender is not None:
            self._sender.shutdown(wait=True)
            self._sender = None
