"""What every storage backend offers (:class:`Backend`) and what its reads return.

A backend serves one kind of :class:`~cubecut.storage.location.Location` (S3, a local
path, another fsspec URL); :func:`cubecut.storage.backend_for` chooses it once from the
location's scheme. Every read is a byte range ``[start, stop)`` (0-based, stop exclusive)
and is counted in a :class:`ReadStats`; a response body that breaks off or comes up short
is fetched again (:func:`read_exactly`, the one retry policy of every byte source).
"""
from __future__ import annotations

import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable, Iterator, Protocol, TypeVar

from ..errors import StaleObjectError, StorageError, TargetNotWritableError
from .location import Location
from .s3_config import deadlines


@dataclass
class ReadStats:
    """Thread-safe counters of the read requests made and the bytes they returned."""

    requests: int = 0
    bytes: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, nbytes: int) -> None:
        with self._lock:
            self.requests += 1
            self.bytes += nbytes

    def as_dict(self) -> dict[str, int]:
        return {"requests": self.requests, "bytes": self.bytes}


class RangeSource(Protocol):
    """A readable object of known ``size`` (bytes) and version (``etag``) whose byte ranges
    can be fetched concurrently. ``read`` may return a read-only ``memoryview`` (of a
    client's own buffer, not copied into ``bytes``): what pixel reads take, which only view
    what they read as arrays, slice it or take its length."""

    location: Location
    size: int
    etag: str | None

    def read(self, start: int, stop: int) -> bytes | memoryview: ...


class ByteSource(RangeSource, Protocol):
    """A :class:`RangeSource` whose reads are ``bytes``."""

    def read(self, start: int, stop: int) -> bytes: ...


@dataclass(frozen=True)
class ObjectInfo:
    """What a HEAD says about an object: size (bytes), ETag, user metadata."""

    size: int
    etag: str | None
    metadata: dict[str, str]


@dataclass(frozen=True)
class Listed:
    """One object of a listing: where it is, its size (bytes), ETag and last modification
    (an aware UTC datetime; None where the scheme does not say: fsspec URLs)."""

    location: Location
    size: int
    etag: str | None
    modified: datetime | None


@dataclass(frozen=True)
class PartReceipt:
    """A part that arrived: its number (1-based), size in bytes, and ETag (S3 only)."""

    part: int
    size: int
    etag: str | None = None


class Upload(Protocol):
    """An object assembled from numbered parts, sent by any number of processes, visible
    only once complete: an S3 multipart upload, or a hidden ``.{name}.{upload}.partial``
    file beside the destination (its parts written at their offsets, a JSON receipt per
    part in ``.{name}.{upload}.parts/``) renamed into place.

    ``write_part`` is idempotent (re-sending a part replaces it); ``list_parts`` says what
    arrived (ObjectNotFoundError once the upload is completed or aborted); ``complete``
    makes the object visible in one step, conditionally as ``put_bytes`` is (``if_match``
    an ETag / ``if_none_match``: ConcurrentWriteError and nothing visible otherwise);
    ``abort`` leaves nothing behind and is safe to call again.
    """

    location: Location

    def begin(self, content_type: str, metadata: dict[str, str] | None = None, size: int | None = None) -> str:
        """A new upload's id; ``metadata``: S3 user metadata; ``size``: the object's final
        bytes if known (a local file is made that large at once)."""
    def write_part(self, upload_id: str, part: int, offset: int, data: bytes | bytearray) -> PartReceipt: ...
    def list_parts(self, upload_id: str) -> list[PartReceipt]: ...
    def complete(self, upload_id: str, parts: list[PartReceipt], *, if_match: str | None = None,
                 if_none_match: bool = False) -> str | None: ...
    def abort(self, upload_id: str) -> None: ...


class Backend(Protocol):
    """The operations on the objects of one kind of location.

    Two paths per operation where a backend has two engines (S3: botocore and obstore):
    the plain one (``open``, ``get``, ``put``) and the ``fast`` one for the many requests
    of a cutout or a bulk job, where the client's CPU per request counts (``open_pinned``,
    ``get_fast``, ``put_fast``). A backend class names this protocol as its base to take
    its defaults: a whole GET reads the opened source whole, the fast calls are the plain
    ones, a pinned source is checked once on opening, writes are refused (``writable``
    False: TargetNotWritableError), and there are no presigned URLs.
    """

    writable: bool = False
    #: Bytes of every part of a multipart upload but the last, at least.
    min_part_bytes: int = 1

    def open(self, location: Location, stats: ReadStats, *, size: int | None = None,
             etag: str | None = None) -> ByteSource: ...
    def head(self, location: Location) -> ObjectInfo: ...
    def list(self, location: Location) -> Iterator[Listed]: ...

    def open_pinned(self, location: Location, stats: ReadStats, *, size: int, etag: str | None) -> RangeSource:
        """The source if it is the version of ``size`` bytes and ETag ``etag`` (None: any ETag),
        else StaleObjectError (and the source closed, if it can be): checked once on opening."""
        source = self.open(location, stats)
        if source.size != size or (etag and source.etag != etag):
            getattr(source, "close", lambda: None)()
            raise StaleObjectError(f"{source.location.url} changed since its index was read")
        return source

    def get(self, location: Location, stats: ReadStats | None) -> tuple[bytes, str | None]:
        """The whole object and its ETag: its source, read whole (and closed, if it can be)."""
        source = self.open(location, stats if stats is not None else ReadStats())
        try:
            return source.read(0, source.size), source.etag
        finally:
            getattr(source, "close", lambda: None)()

    def get_fast(self, location: Location, stats: ReadStats | None) -> tuple[bytes, str | None]:
        return self.get(location, stats)

    def put(self, location: Location, data: bytes | bytearray, content_type: str, *,
            tags: dict[str, str] | None, if_match: str | None, if_none_match: bool) -> str | None:
        raise read_only(location)

    def put_fast(self, location: Location, data: bytes | bytearray, content_type: str) -> str | None:
        return self.put(location, data, content_type, tags=None, if_match=None, if_none_match=False)

    def upload(self, location: Location) -> Upload:
        raise read_only(location)

    def delete(self, location: Location) -> None:
        raise read_only(location)

    def uploads(self, location: Location) -> Iterator[tuple[Location, str, datetime]]:
        raise read_only(location)

    def delete_tree(self, location: Location) -> None:
        raise read_only(location)

    def staging(self, location: Location, tag: str) -> str:
        raise read_only(location)

    def make_folder(self, location: Location) -> None:
        """Make the folder/prefix ready for objects to be written into it (prefixes need nothing)."""
        if not self.writable:
            raise read_only(location)

    def glob(self, location: Location) -> tuple[Location, ...] | None:
        return None

    def is_folder(self, location: Location) -> bool:
        return False

    def presigned_url(self, location: Location, expires: int, filename: str | None) -> str:
        raise StorageError(f"{location.url}: only s3:// objects have presigned URLs")


def read_only(location: Location) -> TargetNotWritableError:
    """The error of a write to a location whose backend cannot write."""
    return TargetNotWritableError(f"{location.url}: {location.scheme}:// locations are read-only for cubecut; "
                                  "write to a local path or an s3:// location")


#: Attempts of one read whose response *body* failed or came up short. The clients retry a
#: request that fails (5xx, throttling, resets before the answer) with backoff and jitter,
#: but not a body that breaks off after the headers arrived, nor one shorter than asked
#: for: those are retried here.
READ_ATTEMPTS = 5
RETRY_BASE_SECONDS = 0.1
RETRY_MAX_SECONDS = 5.0
#: How often each kind of body retry happened in this process (figures for reports).
RETRIES: Counter = Counter()
_retries_lock = threading.Lock()


def _note_retry(kind: str, attempt: int) -> None:
    """Count a retry of ``kind`` and wait before retry ``attempt`` (0-based): full jitter,
    exponential, capped."""
    with _retries_lock:
        RETRIES[kind] += 1
    time.sleep(random.uniform(0.0, min(RETRY_MAX_SECONDS, RETRY_BASE_SECONDS * 2 ** attempt)))


class BodyError(Exception):
    """Raised by a ``fetch`` of :func:`read_exactly` when a response body broke off (the
    request itself was answered): the read is retried."""


Body = TypeVar("Body", bytes, memoryview)


def read_exactly(fetch: Callable[[], tuple[Body, str | None]], expected: int | None, what: str,
                 stats: ReadStats | None) -> tuple[Body, str | None]:
    """``fetch()`` of a body and its ETag until the body is ``expected`` bytes (None: any
    number, as for a whole object), counted in ``stats``.

    A body that breaks off (``fetch`` raises :class:`BodyError`) or comes up short is
    fetched again, with full-jitter exponential backoff, up to :data:`READ_ATTEMPTS`
    times, and no more than the :func:`~cubecut.storage.s3_config.deadlines`' attempts;
    any other exception propagates.
    """
    attempts = min(READ_ATTEMPTS, deadlines().attempts)
    for attempt in range(attempts):
        last = attempt + 1 == attempts
        try:
            data, etag = fetch()
        except BodyError as exc:
            if last:
                raise StorageError(f"{what}: the response body failed {attempts} times: {exc}") from None
            _note_retry("body", attempt)
            continue
        if expected is None or len(data) == expected:
            if stats is not None:
                stats.add(len(data))
            return data, etag
        if last:
            raise StorageError(f"{what}: short read, {len(data)} of {expected} bytes in each of "
                               f"{attempts} attempts")
        _note_retry("short_read", attempt)
    raise AssertionError("unreachable: attempts >= 1")
