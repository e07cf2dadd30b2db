"""Byte-level access to objects on S3, on the local disk or behind any fsspec URL, with one interface.

Locations are URLs: ``s3://bucket/key``, a plain/``file://`` path, or any other URL fsspec
understands (``https://``, ``memory://`` ...). Which code path reads what:

* ``s3://`` goes through boto3 (:class:`S3Source`): it honours the standard AWS environment
  (``AWS_ENDPOINT_URL``, credentials, region), so a local S3-compatible server and AWS are
  one code path; ranged GETs carry ``If-Match`` on the object's ETag, and writes are
  multipart uploads. When no AWS credentials are configured anywhere, or when asked
  (``anon=True`` on a :class:`Location`, or ``CUBECUT_ANON=1`` in the environment, which
  ``--anon`` on the CLI sets), requests are *unsigned*, as public buckets such as MAST's
  ``stpubdata`` accept.
* local paths are read with ``os.pread`` (:class:`FileSource`).
* every other scheme is read through fsspec (:class:`FsspecSource`) with byte-range reads
  (HTTP ``Range`` requests for ``https://``); it is read-only and not ETag-pinned.

Every read is a byte range ``[start, stop)`` (0-based, stop exclusive) and is counted in
a :class:`ReadStats` so callers can report requests and bytes.
"""
from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import fcntl
import functools
import os
import random
import re
import stat
import threading
import time
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Callable, Iterator, Protocol, TypeVar
from urllib.parse import urlencode, urlparse

import urllib3.exceptions
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import (BotoCoreError, ClientError, ConnectionClosedError, ConnectTimeoutError,
                                 EndpointConnectionError, IncompleteReadError, ReadTimeoutError,
                                 ResponseStreamingError)

if TYPE_CHECKING:  # boto3 itself (sessions, s3transfer) loads with the first client
    import boto3

from .errors import (AccessDeniedError, ConcurrentWriteError, HostUnreachableError, ObjectNotFoundError,
                     StaleObjectError, StorageError, TargetNotWritableError)

#: Connections kept per client; threaded readers and block workers share one client.
MAX_POOL_CONNECTIONS = 128

#: Attempts of one read whose response *body* failed or came up short. botocore retries a
#: request that fails (5xx, throttling, resets before the answer) with backoff and jitter,
#: but not a body that breaks off after the headers arrived, nor one shorter than asked
#: for: those are retried here, with full-jitter exponential backoff.
READ_ATTEMPTS = 5
RETRY_BASE_SECONDS = 0.1
RETRY_MAX_SECONDS = 5.0
#: How often each kind of body retry happened in this process (figures for reports).
RETRIES: Counter = Counter()
_retries_lock = threading.Lock()
#: Failures while reading an answer's body. urllib3's own errors get through botocore
#: unwrapped and unretried when the body of an *error* answer to GetObject (404, 412,
#: 503 ...) breaks off (botocore reads it in ``convert_to_response_dict``, outside its
#: retry loop).
_BODY_ERRORS = (IncompleteReadError, ResponseStreamingError, ReadTimeoutError, ConnectionClosedError,
                urllib3.exceptions.HTTPError)

_PRECONDITION = {"PreconditionFailed", "412"}
_NOT_FOUND = {"NoSuchKey", "NoSuchBucket", "404", "NotFound", "NoSuchUpload"}
_DENIED = {"AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch", "Forbidden",
           "ExpiredToken", "InvalidToken"}


#: A URL scheme (RFC 3986) followed by ``://``: what tells a URL from a local path.
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


@dataclass(frozen=True)
class Location:
    """A parsed object location.

    ``scheme`` is ``"s3"``, ``"file"`` (a local path, absolute, in ``key``) or another fsspec
    protocol (``"https"``, ``"memory"`` ...); ``bucket`` is the S3 bucket or the URL's host.
    ``anon`` says how S3 requests are made: True = unsigned, False = signed, None = unsigned
    only when no credentials are configured (and ``CUBECUT_ANON`` is not set); it does not
    take part in comparisons.
    """

    scheme: str
    bucket: str
    key: str
    anon: bool | None = field(default=None, compare=False)

    @classmethod
    def parse(cls, url: str | os.PathLike[str], *, anon: bool | None = None) -> "Location":
        text = os.fspath(url)
        scheme = _SCHEME.match(text)
        if scheme is None or scheme.group(1).lower() == "file":
            if text.startswith("file://"):
                text = urlparse(text).path
            return cls("file", "", str(Path(text).expanduser().resolve()), anon)
        name = scheme.group(1).lower()
        host, _, key = text[scheme.end():].partition("/")
        if name == "s3":
            if not host:
                raise ValueError(f"S3 URL without a bucket: {text!r}")
            key = urlparse(text).path.lstrip("/")
        return cls(name, host, key, anon)

    @property
    def is_s3(self) -> bool:
        return self.scheme == "s3"

    @property
    def is_local(self) -> bool:
        """A path on this machine's file system."""
        return self.scheme == "file"

    @property
    def url(self) -> str:
        return self.key if self.is_local else f"{self.scheme}://{self.bucket}/{self.key}"

    @property
    def name(self) -> str:
        """The last path component (the file name)."""
        return self.key.rstrip("/").rsplit("/", 1)[-1]

    def with_suffix(self, suffix: str) -> "Location":
        """The location with ``suffix`` appended to the key (e.g. ``.index.json``)."""
        return dataclasses.replace(self, key=self.key + suffix)

    def sibling(self, name: str) -> "Location":
        """A location in the same folder/prefix with another name."""
        head = self.key.rsplit("/", 1)[0] + "/" if "/" in self.key else ""
        return dataclasses.replace(self, key=head + name)

    def __str__(self) -> str:
        return self.url


@dataclass(frozen=True)
class S3Deadlines:
    """How long one S3 call may take before it fails with a named error, for both clients
    (botocore in this module, obstore in :mod:`cubecut.storage_obstore`); all in seconds.

    ``connect_timeout`` bounds opening a connection; ``read_timeout`` bounds each wait for
    bytes on a connection; ``request_timeout`` bounds a whole obstore request (headers and
    body; botocore has no such bound); ``attempts`` counts the tries of one request (the first and its retries);
    obstore stops retrying once ``retry_timeout`` has passed since the first try.
    """

    connect_timeout: float
    read_timeout: float
    request_timeout: float
    attempts: int
    retry_timeout: float


#: Callers that answer a person within an integration timeout (the API: 29 s): a server
#: that accepts connections but never answers fails one call in about 2 x 4 s (botocore)
#: or 2 x 8 s (obstore), one that refuses them at once (tests/library/test_s3_deadlines.py).
INTERACTIVE = S3Deadlines(connect_timeout=2.0, read_timeout=4.0, request_timeout=8.0, attempts=2,
                          retry_timeout=10.0)
#: Workers with minutes to spare (ingest, bulk, the CLI): ride out a slow or flaky S3
#: (botocore's own timeouts; 8 retries with back-off up to 20 s, tests/library/test_faults.py).
BATCH = S3Deadlines(connect_timeout=60.0, read_timeout=60.0, request_timeout=30.0, attempts=9,
                    retry_timeout=60.0)
_DEADLINES: contextvars.ContextVar[S3Deadlines] = contextvars.ContextVar("cubecut_s3_deadlines", default=BATCH)


def deadlines() -> S3Deadlines:
    """The :class:`S3Deadlines` of S3 calls made here: :data:`BATCH` unless a caller chose
    otherwise with :func:`using_deadlines`."""
    return _DEADLINES.get()


@contextlib.contextmanager
def using_deadlines(profile: S3Deadlines) -> Iterator[None]:
    """Make the S3 calls of this block (and of the work it hands to thread pools through
    :func:`carrying_deadlines`) under ``profile``."""
    token = _DEADLINES.set(profile)
    try:
        yield
    finally:
        _DEADLINES.reset(token)


F = TypeVar("F", bound=Callable[..., Any])


def carrying_deadlines(function: F) -> F:
    """``function``, run under the caller's :func:`deadlines` in whatever thread calls it
    (pool threads do not inherit the caller's context)."""
    profile = deadlines()

    @functools.wraps(function)
    def run(*args: Any, **kwargs: Any) -> Any:
        token = _DEADLINES.set(profile)
        try:
            return function(*args, **kwargs)
        finally:
            _DEADLINES.reset(token)

    return run


@functools.lru_cache(maxsize=16)
def _client(endpoint: str | None, region: str | None, unsigned: bool = False,
            limits: S3Deadlines = BATCH) -> "boto3.client":
    config = Config(
        max_pool_connections=MAX_POOL_CONNECTIONS,
        retries={"total_max_attempts": limits.attempts, "mode": "standard"},
        connect_timeout=limits.connect_timeout,
        read_timeout=limits.read_timeout,
        tcp_keepalive=True,
        s3={"addressing_style": "path"} if endpoint else None,
        signature_version=UNSIGNED if unsigned else "s3v4",
    )
    import boto3.session

    session = boto3.session.Session()
    return session.client("s3", endpoint_url=endpoint, region_name=region or session.region_name
                          or "us-east-1", config=config)


# A forked child opens connections of its own: sockets shared with the parent would mix
# both processes' responses.
os.register_at_fork(after_in_child=_client.cache_clear)

#: Environment variables that can change where botocore finds credentials.
_CREDENTIAL_ENVIRONMENT = (
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_PROFILE",
    "AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_EC2_METADATA_DISABLED", "HOME",
)


@functools.lru_cache(maxsize=8)
def _credentials_configured(_environment: tuple[str | None, ...]) -> bool:
    """Whether botocore's credential chain finds any credentials (cached per environment)."""
    import boto3.session

    return boto3.session.Session().get_credentials() is not None


def anonymous(anon: bool | None = None) -> bool:
    """Whether S3 requests are unsigned: ``anon`` if given, else True when ``CUBECUT_ANON``
    is set (to anything but ``0``/``false``/``no``/empty) or no AWS credentials are configured."""
    if anon is not None:
        return anon
    if os.environ.get("CUBECUT_ANON", "").strip().lower() not in {"", "0", "false", "no"}:
        return True
    return not _credentials_configured(tuple(os.environ.get(k) for k in _CREDENTIAL_ENVIRONMENT))


def s3_client(anon: bool | None = None):
    """A thread-safe, connection-pooled S3 client configured from the environment.

    Its requests are unsigned when :func:`anonymous` says so for ``anon``, and time out
    and retry as :func:`deadlines` says.
    """
    return _client(os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None,
                   os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION"), anonymous(anon),
                   deadlines())


def retry_delay(attempt: int) -> float:
    """Seconds to wait before retry ``attempt`` (0-based): full jitter, exponential, capped."""
    return random.uniform(0.0, min(RETRY_MAX_SECONDS, RETRY_BASE_SECONDS * 2 ** attempt))


def _note_retry(kind: str, attempt: int) -> None:
    with _retries_lock:
        RETRIES[kind] += 1
    time.sleep(retry_delay(attempt))


class BodyError(Exception):
    """Raised by a ``fetch`` of :func:`read_exactly` when a response body broke off (the
    request itself was answered): the read is retried."""


Body = TypeVar("Body", bytes, memoryview)


def read_exactly(fetch: Callable[[], Body], expected: int | None, what: str) -> Body:
    """``fetch()`` until it returns ``expected`` bytes (None: any number).

    A body that breaks off (``fetch`` raises :class:`BodyError`) or comes up short is
    fetched again, with full-jitter exponential backoff, up to :data:`READ_ATTEMPTS`
    times, and no more than the :func:`deadlines`' attempts; any other exception
    propagates. The one retry policy of every byte source.
    """
    attempts = min(READ_ATTEMPTS, deadlines().attempts)
    for attempt in range(attempts):
        last = attempt + 1 == attempts
        try:
            data = fetch()
        except BodyError as exc:
            if last:
                raise StorageError(f"{what}: the response body failed {attempts} times: {exc}") from None
            _note_retry("body", attempt)
            continue
        if expected is None or len(data) == expected:
            return data
        if last:
            raise StorageError(f"{what}: short read, {len(data)} of {expected} bytes in each of "
                               f"{attempts} attempts")
        _note_retry("short_read", attempt)
    raise AssertionError("unreachable: attempts >= 1")


def unreachable(what: str, host: str) -> HostUnreachableError:
    """The one wording, whichever client failed, of a host that does not answer."""
    return HostUnreachableError(f"{what}: cannot reach host {host}; check the endpoint (AWS_ENDPOINT_URL) "
                                "and the network")


def read_denied(what: str, detail: str, anon: bool | None) -> AccessDeniedError:
    """The one wording, whichever client was refused, of a read refused by S3 (``detail``:
    the code or status), saying whether the request was signed (:func:`anonymous` for
    ``anon``): a refused unsigned request means the object is not public; a refused signed
    one may be public data that the credentials may not read (``--anon`` / ``anon=True``)."""
    if anonymous(anon):
        return AccessDeniedError(f"{what}: access denied ({detail}); the request was unsigned (no AWS credentials "
                                 "are configured, or anonymous access was asked for) and the object is not public")
    return AccessDeniedError(f"{what}: access denied ({detail}) (use --anon for public data)")


def translate_client_error(exc: Exception, what: str) -> StorageError:
    """Turn a botocore error into a named cubecut error mentioning ``what``."""
    if isinstance(exc, (EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError)):  # no answer
        endpoint = str(getattr(exc, "kwargs", {}).get("endpoint_url", "")) or "the S3 endpoint"
        return unreachable(what, urlparse(endpoint).netloc or endpoint)
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        status = str(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
        if code in _PRECONDITION or status == "412":
            return ConcurrentWriteError(f"{what}: the object changed since it was read (precondition failed)")
        if code in _NOT_FOUND or status == "404":
            return ObjectNotFoundError(f"{what}: not found")
        if code in _DENIED or status == "403":
            return AccessDeniedError(f"{what}: access denied ({code or status})")
        return StorageError(f"{what}: {code or status}: {exc}")
    return StorageError(f"{what}: {exc}")


@contextlib.contextmanager
def s3_errors(what: str, *, missing_key: StorageError | None = None) -> Iterator[None]:
    """Run the block's S3 calls with every botocore failure raised as the named error of
    :func:`translate_client_error` (mentioning ``what``), so no caller handles botocore's
    types; ``missing_key``, if given, is raised instead when S3 answers ``NoSuchKey``."""
    try:
        yield
    except (ClientError, BotoCoreError) as exc:
        # A connection error (a reset mid-upload) has no response, or ``response = None``.
        code = str((getattr(exc, "response", None) or {}).get("Error", {}).get("Code", ""))
        if missing_key is not None and code == "NoSuchKey":
            raise missing_key from None
        raise translate_client_error(exc, what) from None


def presigned_url(url: str | Location, expires: int, filename: str | None = None) -> str:
    """A SigV4 presigned GET URL of ``s3://bucket/key``, valid for ``expires`` seconds; with
    ``filename``, the download is named so (``Content-Disposition: attachment``)."""
    location = url if isinstance(url, Location) else Location.parse(url)
    params = {"Bucket": location.bucket, "Key": location.key}
    if filename:
        params["ResponseContentDisposition"] = f'attachment; filename="{filename}"'
    return s3_client().generate_presigned_url("get_object", Params=params, ExpiresIn=int(expires))


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


class ByteSource(Protocol):
    """A readable object of known size whose byte ranges can be fetched concurrently."""

    location: Location
    size: int
    etag: str | None

    def read(self, start: int, stop: int) -> bytes: ...


class RangeSource(Protocol):
    """What pixel reads take: a :class:`ByteSource` whose reads may also come as a
    read-only ``memoryview`` (of a client's own buffer, not copied into ``bytes``); pixel
    reads only view what they read as arrays, slice it or take its length."""

    location: Location
    size: int
    etag: str | None

    def read(self, start: int, stop: int) -> bytes | memoryview: ...


def file_etag(st: os.stat_result) -> str:
    """A local file's version tag, the counterpart of an S3 ETag: inode, mtime (ns), size.

    Files are only ever replaced by renaming a new file over them, so a new version has
    a new inode and mtime.
    """
    return f"{st.st_ino:x}-{st.st_mtime_ns:x}-{st.st_size:x}"


@contextlib.contextmanager
def local_write_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock for conditional writes of ``path`` (across processes).

    The lock is a ``flock`` on the file's folder (no lock file is left behind; released
    when the holder exits or dies), so conditional writes in one folder take turns.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def check_local_precondition(path: Path, if_match: str | None, if_none_match: bool) -> None:
    """Raise ConcurrentWriteError unless ``path`` is the version ``if_match`` (or absent
    when ``if_none_match``); call it holding :func:`local_write_lock`."""
    try:
        current: str | None = file_etag(path.stat())
    except (FileNotFoundError, NotADirectoryError):
        current = None
    if if_none_match and current is not None:
        raise ConcurrentWriteError(f"{path}: exists already (another writer got there first)")
    if if_match is not None and current != if_match:
        raise ConcurrentWriteError(f"{path}: is no longer the version {if_match} (now {current})")


class FileSource:
    """A local file read with ``os.pread`` (thread-safe, no shared file position)."""

    def __init__(self, location: Location, stats: ReadStats | None = None) -> None:
        self.location = location
        self.stats = stats if stats is not None else ReadStats()
        try:
            self._fd = os.open(location.key, os.O_RDONLY)
        except FileNotFoundError:
            raise ObjectNotFoundError(f"{location.key}: no such file") from None
        except PermissionError:
            raise AccessDeniedError(f"{location.key}: permission denied") from None
        st = os.fstat(self._fd)
        if stat.S_ISDIR(st.st_mode):
            self.close()
            raise ObjectNotFoundError(f"{location.key}: is a folder, not a file")
        self.size = st.st_size
        self.etag = file_etag(st)

    def read(self, start: int, stop: int) -> bytes:
        data = os.pread(self._fd, max(0, stop - start), start)
        self.stats.add(len(data))
        return data

    def close(self) -> None:
        """Close the file descriptor; safe to call more than once."""
        fd, self._fd = getattr(self, "_fd", -1), -1
        if fd >= 0:
            os.close(fd)

    def __del__(self) -> None:
        self.close()


class S3Source:
    """An S3 object read by ranged GETs; the size and ETag come from the first response.

    When ``size``/``etag`` are known (e.g. from an index) no HEAD request is made. Every
    ranged GET carries ``If-Match`` once the ETag is known, so a reader never mixes bytes
    from two versions of an object: a replaced object raises :class:`StaleObjectError`.
    """

    def __init__(self, location: Location, stats: ReadStats | None = None, *,
                 size: int | None = None, etag: str | None = None) -> None:
        self.location = location
        self.stats = stats if stats is not None else ReadStats()
        self._client = s3_client(location.anon)
        if size is None:
            try:
                head = self._client.head_object(Bucket=location.bucket, Key=location.key)
            except (ClientError, BotoCoreError) as exc:
                raise _translate_read_error(exc, location) from None
            self.stats.add(0)
            size, etag = head["ContentLength"], head.get("ETag")
        self.size = size
        self.etag = etag

    def read(self, start: int, stop: int) -> bytes:
        if stop <= start:
            return b""
        kwargs = {"Bucket": self.location.bucket, "Key": self.location.key,
                  "Range": f"bytes={start}-{stop - 1}"}
        if self.etag:
            kwargs["IfMatch"] = self.etag
        # Within the object's known size S3 returns exactly the bytes asked for; fewer means
        # the transfer broke (a reader past the end gets what there is and checks itself).
        expected = max(0, min(stop, self.size) - start) if self.size is not None else None

        def fetch() -> bytes:
            try:
                body = self._client.get_object(**kwargs)["Body"]
            except ClientError as exc:
                code = str(exc.response.get("Error", {}).get("Code", ""))
                if code in {"PreconditionFailed", "412"}:
                    raise StaleObjectError(f"{self.location.url} changed while being read") from None
                raise _translate_read_error(exc, self.location) from None
            except BotoCoreError as exc:  # botocore has retried the request already
                raise _translate_read_error(exc, self.location) from None
            except _BODY_ERRORS as exc:  # the body of an error answer broke off
                raise BodyError(exc) from None
            try:
                return body.read()
            except _BODY_ERRORS as exc:
                raise BodyError(exc) from None

        data = read_exactly(fetch, expected, f"{self.location.url} bytes [{start}, {stop})")
        self.stats.add(len(data))
        return data


def _translate_read_error(exc: Exception, location: Location) -> StorageError:
    """:func:`translate_client_error`, with a refused read worded by :func:`read_denied`."""
    error = translate_client_error(exc, location.url)
    if isinstance(error, AccessDeniedError) and isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", "")) or str(
            exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
        return read_denied(location.url, code, location.anon)
    return error


class FsspecSource:
    """An object behind any other fsspec URL (``https://``, ``memory://`` ...),
    read by byte ranges (``Range`` requests over HTTP).

    The size (and ETag, when the server gives one) come from one ``info`` request unless
    known. A server that answers a range request with more bytes than asked for (it ignores
    ``Range``) is refused rather than downloaded whole on every read.
    """

    def __init__(self, location: Location, stats: ReadStats | None = None, *,
                 size: int | None = None, etag: str | None = None) -> None:
        self.location = location
        self.stats = stats if stats is not None else ReadStats()
        self._fs, self._path = _filesystem(location)
        if size is None:
            info = _fsspec_call(location, self._fs.info, self._path)
            self.stats.add(0)
            size = info.get("size")
            if not isinstance(size, int):
                raise StorageError(f"{location.url}: the server does not report the object's size")
            etag = next((str(info[k]) for k in ("ETag", "etag", "md5", "created", "mtime") if info.get(k)), None)
        self.size = size
        self.etag = etag

    def read(self, start: int, stop: int) -> bytes:
        stop = min(stop, self.size)
        if stop <= start:
            return b""
        what = f"{self.location.url} bytes [{start}, {stop})"

        def fetch() -> bytes:
            try:
                data = _fsspec_call(self.location, self._fs.cat_file, self._path, start=start, end=stop)
            except (ObjectNotFoundError, AccessDeniedError):
                raise
            except StorageError as exc:  # a transport failure: read again
                raise BodyError(exc) from None
            if len(data) > stop - start:
                raise StorageError(f"{what}: the server ignores byte ranges (it sent {len(data)} bytes); "
                                   "cubecut reads only the bytes it needs and cannot use it")
            return data

        data = read_exactly(fetch, stop - start, what)
        self.stats.add(len(data))
        return data


def _filesystem(location: Location):
    """The fsspec file system and path of ``location`` (fsspec caches the instances)."""
    import fsspec  # only the non-S3, non-local URLs need it (the Lambda layer does not ship it)

    try:
        return fsspec.core.url_to_fs(location.url)
    except (ValueError, ImportError) as exc:  # unknown protocol, or its package is not installed
        raise StorageError(f"{location.url}: cannot read {location.scheme}:// URLs: {exc}") from None


def _fsspec_call(location: Location, function, *args, **kwargs):
    """``function(*args, **kwargs)`` with fsspec's and aiohttp's errors as named cubecut errors."""
    try:
        return function(*args, **kwargs)
    except FileNotFoundError:
        raise ObjectNotFoundError(f"{location.url}: not found") from None
    except PermissionError:
        raise AccessDeniedError(f"{location.url}: access denied") from None
    except Exception as exc:  # noqa: BLE001 - fsspec back ends raise their own (aiohttp, OSError...) types
        raise StorageError(f"{location.url}: {type(exc).__name__}: {exc}") from None


def open_source(url: str | Location, stats: ReadStats | None = None, **known) -> ByteSource:
    """Open ``url`` for ranged reads; ``known`` may carry ``size``/``etag`` (S3, fsspec)."""
    location = url if isinstance(url, Location) else Location.parse(url)
    if location.is_s3:
        return S3Source(location, stats, **known)
    if location.is_local:
        return FileSource(location, stats)
    return FsspecSource(location, stats, **known)


def get_bytes(url: str | Location, stats: ReadStats | None = None) -> tuple[bytes, str | None]:
    """The whole object and its ETag (one GET)."""
    location = url if isinstance(url, Location) else Location.parse(url)
    if location.is_local:
        source = FileSource(location, stats)
        try:
            return source.read(0, source.size), source.etag
        finally:
            source.close()
    if not location.is_s3:
        other = FsspecSource(location, stats)
        return other.read(0, other.size), other.etag
    etag: list[str | None] = []

    def fetch() -> bytes:
        try:
            response = s3_client(location.anon).get_object(Bucket=location.bucket, Key=location.key)
        except (ClientError, BotoCoreError) as exc:  # botocore has retried the request already
            raise _translate_read_error(exc, location) from None
        except _BODY_ERRORS as exc:  # the body of an error answer broke off
            raise BodyError(exc) from None
        etag[:] = [response.get("ETag")]
        try:
            return response["Body"].read()  # botocore checks the length against Content-Length
        except _BODY_ERRORS as exc:
            raise BodyError(exc) from None

    data = read_exactly(fetch, None, location.url)
    if stats is not None:
        stats.add(len(data))
    return data, etag[0]


def put_bytes(url: str | Location, data: bytes | bytearray, content_type: str = "application/octet-stream", *,
              tags: dict[str, str] | None = None, if_match: str | None = None,
              if_none_match: bool = False) -> str | None:
    """Write a whole object atomically (S3 PUT, or temp file + rename); returns its ETag.

    ``tags`` become S3 object tags (lifecycle rules can select on them); ignored locally.
    ``if_match`` (an ETag) / ``if_none_match`` make the write conditional (S3 ``If-Match``
    / ``If-None-Match: *``; locally the same check under a file lock): when the object is
    not that version (or exists), nothing is written and ConcurrentWriteError is raised.
    """
    location = writable(url if isinstance(url, Location) else Location.parse(url))
    if location.is_s3:
        extra: dict[str, str] = {"Tagging": urlencode(tags)} if tags else {}
        if if_match is not None:
            extra["IfMatch"] = if_match
        if if_none_match:
            extra["IfNoneMatch"] = "*"
        try:
            response = s3_client().put_object(Bucket=location.bucket, Key=location.key, Body=data,
                                              ContentType=content_type, **extra)
        except (ClientError, BotoCoreError) as exc:
            error = translate_client_error(exc, f"write {location.url}")
            if isinstance(error, ObjectNotFoundError) and if_match is not None:
                raise ConcurrentWriteError(f"write {location.url}: the version {if_match} is gone") from None
            raise error from None
        return response.get("ETag")
    path = Path(location.key)
    tmp = _temporary_beside(path)
    try:
        tmp.write_bytes(data)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise TargetNotWritableError(f"{path}: cannot write it: {exc.strerror or exc}") from None
    if if_match is None and not if_none_match:
        os.replace(tmp, path)
        return file_etag(path.stat())
    try:
        with local_write_lock(path):
            check_local_precondition(path, if_match, if_none_match)
            os.replace(tmp, path)
            return file_etag(path.stat())
    finally:
        tmp.unlink(missing_ok=True)


def _temporary_beside(path: Path) -> Path:
    """A hidden temporary name in ``path``'s folder (created if need be) for this process
    and thread, renamed over ``path`` when the write is complete."""
    writable_folder(path.parent)
    return path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")


def writable_folder(folder: str | os.PathLike[str]) -> Path:
    """A local folder, created if need be, that this process may write files into;
    TargetNotWritableError (one line, the OS's reason) if it cannot be."""
    path = Path(folder)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TargetNotWritableError(f"{path}: cannot create the folder: {exc.strerror or exc}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise TargetNotWritableError(f"{path}: the folder is not writable")
    return path


#: Part size of :class:`ObjectStreamWriter` uploads: S3 wants >= 5 MiB for every part but
#: the last and at most 10,000 parts (78 GiB at this size).
STREAM_PART_BYTES = 8 * 2**20
_MIN_PART_BYTES = 5 * 2**20


class ObjectStreamWriter:
    """A whole object written as a stream of bytes, visible only once complete.

    A write-only, unseekable binary file object (``write``, ``tell``, ``flush``; what
    :mod:`zipfile` needs) used as a context manager. Bytes collect in a buffer; each time it
    holds ``part_bytes`` they are sent: on S3 as the next part of a multipart upload (started
    with the first part; the upload of one part runs in a background thread while the next
    fills, at most one in flight, so at most about two parts are held), locally appended to a
    hidden temporary file beside the destination. Leaving the block normally makes the object
    visible in one step (CompleteMultipartUpload, or a rename); an object that never filled
    one part is written with one :func:`put_bytes` instead (one PUT) and its bytes are kept in
    :attr:`body`. Leaving it with an exception, or a failed part or completion, aborts the
    upload (or deletes the temporary file): no partial object is ever visible and the key
    keeps what it held before. Parts are re-sendable bytes, so botocore's retries of a failed
    UploadPart are safe; the bucket's AbortIncompleteMultipartUpload rule removes the parts
    of a process that dies before it could abort.

    After the block: :attr:`size` (bytes written), :attr:`etag`, :attr:`body` (the bytes of
    a single-PUT object, else None).
    """

    def __init__(self, url: str | Location, content_type: str = "application/octet-stream", *,
                 part_bytes: int = STREAM_PART_BYTES) -> None:
        if part_bytes < _MIN_PART_BYTES:
            raise ValueError(f"part_bytes must be >= {_MIN_PART_BYTES} (S3's smallest part), got {part_bytes}")
        self.location = writable(url if isinstance(url, Location) else Location.parse(url))
        self.content_type = content_type
        self.part_bytes = part_bytes
        self.size = 0
        self.etag: str | None = None
        self.body: bytes | None = None
        self._buffer = bytearray()
        self._parts: list[dict] = []
        self._upload_id: str | None = None
        self._pending: Future | None = None
        self._sender: ThreadPoolExecutor | None = None
        self._file: BinaryIO | None = None
        self._tmp: Path | None = None
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
        if len(self._buffer) >= self.part_bytes:
            part, self._buffer = self._buffer, bytearray()
            self._send(part)
        return written

    def __enter__(self) -> "ObjectStreamWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    # -- sending ---------------------------------------------------------------------------
    def _send(self, part: bytearray) -> None:
        if not self.location.is_s3:
            if self._file is None:
                self._tmp = _temporary_beside(Path(self.location.key))
                self._file = open(self._tmp, "wb")  # closed by close() or abort()
            self._file.write(part)
            return
        self._wait()  # at most one part in flight
        if self._upload_id is None:
            with s3_errors(f"start upload of {self.location.url}"):
                self._upload_id = s3_client().create_multipart_upload(
                    Bucket=self.location.bucket, Key=self.location.key, ContentType=self.content_type)["UploadId"]
            self._sender = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cubecut-part")
        assert self._sender is not None
        self._pending = self._sender.submit(self._upload_part, len(self._parts) + 1, part)

    def _upload_part(self, number: int, part: bytearray) -> None:
        with s3_errors(f"upload part {number} of {self.location.url}"):
            response = s3_client().upload_part(Bucket=self.location.bucket, Key=self.location.key,
                                               UploadId=self._upload_id, PartNumber=number, Body=part)
        self._parts.append({"PartNumber": number, "ETag": response["ETag"]})

    def _wait(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def close(self) -> None:
        """Send what is left and make the object visible (abort and raise if that fails)."""
        if self._closed:
            return
        try:
            if self.location.is_s3 and self._upload_id is not None:
                if self._buffer:
                    part, self._buffer = self._buffer, bytearray()
                    self._send(part)
                self._wait()
                with s3_errors(f"complete upload of {self.location.url}"):
                    response = s3_client().complete_multipart_upload(
                        Bucket=self.location.bucket, Key=self.location.key, UploadId=self._upload_id,
                        MultipartUpload={"Parts": self._parts})
                self.etag = response.get("ETag")
            elif self._file is not None and self._tmp is not None:
                self._file.write(self._buffer)
                self._file.close()
                os.replace(self._tmp, self.location.key)
                self.etag = file_etag(Path(self.location.key).stat())
            else:
                self.body = bytes(self._buffer)
                self.etag = put_bytes(self.location, self.body, self.content_type)
        except BaseException:
            self.abort()
            raise
        self._finish()

    def abort(self) -> None:
        """Drop everything written: abort the upload / delete the temporary file."""
        if self._closed:
            return
        try:
            if self._pending is not None:
                self._pending.cancel()
                with contextlib.suppress(Exception):  # the upload is aborted whatever the part did
                    self._pending.result()
            if self._upload_id is not None:
                with contextlib.suppress(StorageError):  # the lifecycle rule removes what is left
                    with s3_errors(f"abort upload of {self.location.url}"):
                        s3_client().abort_multipart_upload(Bucket=self.location.bucket, Key=self.location.key,
                                                           UploadId=self._upload_id)
            if self._file is not None:
                self._file.close()
            if self._tmp is not None:
                self._tmp.unlink(missing_ok=True)
        finally:
            self._finish()

    def _finish(self) -> None:
        self._closed = True
        self._buffer = bytearray()
        self._pending = None
        if self._sender is not None:
            self._sender.shutdown(wait=True)
            self._sender = None


@dataclass(frozen=True)
class ObjectInfo:
    """What a HEAD says about an object: size (bytes), ETag, user metadata, version id."""

    size: int
    etag: str | None
    metadata: dict[str, str]
    version_id: str | None = None


def head(url: str | Location) -> ObjectInfo:
    """Size, ETag, user metadata and version of an object (ObjectNotFoundError if absent)."""
    location = url if isinstance(url, Location) else Location.parse(url)
    if not (location.is_s3 or location.is_local):
        source = open_source(location)
        return ObjectInfo(source.size, source.etag, {})
    if location.is_local:
        try:
            st = Path(location.key).stat()
        except (FileNotFoundError, NotADirectoryError):
            raise ObjectNotFoundError(f"{location.key}: no such file") from None
        return ObjectInfo(st.st_size, file_etag(st), {})
    try:
        response = s3_client().head_object(Bucket=location.bucket, Key=location.key)
    except (ClientError, BotoCoreError) as exc:
        raise translate_client_error(exc, location.url) from None
    version = response.get("VersionId")
    return ObjectInfo(response["ContentLength"], response.get("ETag"), dict(response.get("Metadata", {})),
                      None if version in (None, "null") else version)


def writable(location: Location) -> Location:
    """``location`` if cubecut can write there (S3 or a local path), else TargetNotWritableError."""
    if not (location.is_s3 or location.is_local):
        raise TargetNotWritableError(f"{location.url}: {location.scheme}:// locations are read-only for "
                                     "cubecut; write to a local path or an s3:// location")
    return location


def delete(url: str | Location) -> None:
    """Delete an object if it exists."""
    location = writable(url if isinstance(url, Location) else Location.parse(url))
    if location.is_s3:
        try:
            s3_client().delete_object(Bucket=location.bucket, Key=location.key)
        except (ClientError, BotoCoreError) as exc:
            raise translate_client_error(exc, location.url) from None
    else:
        Path(location.key).unlink(missing_ok=True)


def list_objects(prefix: str | Location) -> Iterator[tuple[Location, int]]:
    """Yield ``(location, size)`` of every object under an S3 prefix, local folder, or other
    fsspec folder (for ``https://``, the links of an HTML index page, as fsspec reads them)."""
    location = prefix if isinstance(prefix, Location) else Location.parse(prefix)
    if location.is_s3:
        paginator = s3_client(location.anon).get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=location.bucket, Prefix=location.key):
                for item in page.get("Contents", []):
                    yield Location("s3", location.bucket, item["Key"], location.anon), item["Size"]
        except (ClientError, BotoCoreError) as exc:
            raise _translate_read_error(exc, location) from None
        return
    if not location.is_local:
        fs, path = _filesystem(location)
        found = _fsspec_call(location, fs.find, path, detail=True)
        for name in sorted(found):
            url = name if _SCHEME.match(name) else fs.unstrip_protocol(name)
            yield Location.parse(url, anon=location.anon), int(found[name].get("size") or 0)
        return
    root = Path(location.key)
    if root.is_file():
        yield location, root.stat().st_size
        return
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        yield Location("file", "", str(path)), path.stat().st_size


def list_etags(prefix: str | Location) -> dict[str, str | None]:
    """``{url: ETag}`` of every object under an S3 prefix or in a local folder (local
    files: :func:`file_etag`), from one LIST (paginated) on S3."""
    location = prefix if isinstance(prefix, Location) else Location.parse(prefix)
    if not location.is_s3:
        root = Path(writable(location).key)
        return {str(path): file_etag(path.stat()) for path in root.glob("*") if path.is_file()}
    found: dict[str, str | None] = {}
    try:
        for page in s3_client().get_paginator("list_objects_v2").paginate(Bucket=location.bucket,
                                                                          Prefix=location.key):
            for item in page.get("Contents", []):
                found[f"s3://{location.bucket}/{item['Key']}"] = item.get("ETag")
    except (ClientError, BotoCoreError) as exc:
        raise translate_client_error(exc, location.url) from None
    return found
