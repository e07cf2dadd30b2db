"""S3 through obstore (Rust ``object_store``): the fast path of cutouts' pixel reads and
cold sidecar GETs, and of bulk workers' uploads.

The same guarantees as botocore (:mod:`cubecut.storage.s3`): every ranged GET carries
``If-Match`` with the known ETag (a replaced object raises
:class:`~cubecut.errors.StaleObjectError`), failed requests are retried with backoff by
the client, a body that breaks off or comes up short is retried here (counted in
:data:`cubecut.storage.base.RETRIES`), every request and byte is counted in the caller's
:class:`~cubecut.storage.ReadStats`, and errors have botocore's words
(:func:`obstore_errors`). Why: botocore holds the GIL while
it builds, signs and parses each request; obstore does that work in Rust, outside it, so
a cutout's concurrent row reads cost a fraction of the Python CPU (measured when it was
adopted: benchmarks/README.md as of commit 64c085d).

Endpoint, region and signing as for botocore (:mod:`~cubecut.storage.s3_config`); the
credentials are boto3's, from any source it knows (environment, profile, role).
"""
from __future__ import annotations

import contextlib
import datetime
import functools
import os
import re
from typing import TYPE_CHECKING, Iterator

from ..errors import AccessDeniedError, ObjectNotFoundError, StaleObjectError, StorageError

from . import base, s3_config
from .base import BodyError, ReadStats, read_exactly
from .location import Location
from .s3_config import MAX_POOL_CONNECTIONS, S3Deadlines, anonymous, deadlines, endpoint, read_denied, unreachable

if TYPE_CHECKING:
    from obstore import Bytes, GetOptions
    from obstore.store import ClientConfig, RetryConfig, S3Config, S3Credential

#: How long obstore may keep credentials before asking boto3 again (it refreshes them).
CREDENTIALS_TTL = datetime.timedelta(minutes=5)


#: The process in which obstore started its tokio runtime (None before the first store).
_runtime_pid: int | None = None


def usable() -> bool:
    """Whether obstore can serve this process. Not in a process forked after obstore
    started its tokio runtime: the runtime's threads stay in the parent, and every request
    of the child would wait for them forever (new stores included); such a child reads
    through botocore instead."""
    return _runtime_pid in (None, os.getpid())


@functools.lru_cache(maxsize=16)
def _store(bucket: str, endpoint: str | None, region: str | None, anon: bool, limits: S3Deadlines):
    import boto3
    from obstore.store import S3Store

    global _runtime_pid
    if _runtime_pid is None:
        _runtime_pid = os.getpid()

    session = boto3.session.Session()
    credentials = session.get_credentials()
    options: ClientConfig = {"pool_max_idle_per_host": str(MAX_POOL_CONNECTIONS),
                             "connect_timeout": datetime.timedelta(seconds=limits.connect_timeout),
                             "read_timeout": datetime.timedelta(seconds=limits.read_timeout),
                             "timeout": datetime.timedelta(seconds=limits.request_timeout)}
    if endpoint and endpoint.startswith("http://"):
        options["allow_http"] = True
    retries: RetryConfig = {"max_retries": limits.attempts - 1,
                            "retry_timeout": datetime.timedelta(seconds=limits.retry_timeout),
                            "backoff": {"init_backoff": datetime.timedelta(seconds=base.RETRY_BASE_SECONDS),
                                        "max_backoff": datetime.timedelta(seconds=base.RETRY_MAX_SECONDS),
                                        "base": 2}}
    config: S3Config = {"region": region or session.region_name or "us-east-1",
                        "virtual_hosted_style_request": False}
    if endpoint:
        config["endpoint"] = endpoint
    if not endpoint or endpoint.startswith("https://"):
        # As botocore over HTTPS: TLS guards the body, so a PUT's signature does not hash it.
        config["unsigned_payload"] = True
    unsigned = anon or credentials is None
    if unsigned:  # as botocore's client for public buckets
        config["skip_signature"] = True

    def boto3_credentials() -> S3Credential:
        """obstore's credential provider: boto3's resolution chain (which refreshes)."""
        frozen = credentials.get_frozen_credentials()
        return {"access_key_id": frozen.access_key, "secret_access_key": frozen.secret_key, "token": frozen.token,
                "expires_at": datetime.datetime.now(datetime.UTC) + CREDENTIALS_TTL}

    return S3Store(bucket, config=config, client_options=options, retry_config=retries,
                   credential_provider=None if unsigned else boto3_credentials)


def store_for(bucket: str, anon: bool | None = None):
    """The (cached, thread-safe) obstore S3 store of ``bucket``, configured as botocore's
    client for ``anon`` (:func:`cubecut.storage.s3.s3_client`)."""
    return _store(bucket, s3_config.endpoint(), s3_config.region(), anonymous(anon), deadlines())


class ObstoreSource:
    """An S3 object of known size and ETag, read by ranged GETs through obstore."""

    def __init__(self, location: Location, stats: ReadStats | None = None, *, size: int,
                 etag: str | None) -> None:
        self.location = location
        self.stats = stats if stats is not None else ReadStats()
        self.size = size
        self.etag = etag
        self._store = store_for(location.bucket, location.anon)

    def read(self, start: int, stop: int) -> bytes | memoryview:
        """Bytes ``[start, stop)`` (clipped to the object) as a read-only ``memoryview`` of
        obstore's buffer, not copied into ``bytes`` (a :class:`~cubecut.storage.base.RangeSource`)."""
        stop = min(stop, self.size)
        if stop <= start:
            return b""
        options: GetOptions = {"range": (start, stop)}
        if self.etag:
            options["if_match"] = self.etag
        what = f"{self.location.url} bytes [{start}, {stop})"

        def fetch() -> tuple[memoryview, str | None]:
            body, etag, _ = _body(self._store, self.location, options, what)
            return memoryview(body), etag

        return read_exactly(fetch, stop - start, what, self.stats)[0]


def get_object(location: Location, stats: ReadStats | None = None) -> tuple[bytes, str | None]:
    """The whole S3 object and its ETag, as botocore's GET gives them (the same errors,
    retries and counting), through obstore: cutouts' cold reads of an index sidecar
    (~0.8 ms of CPU for a 160 KB sidecar against ~4 ms through botocore)."""
    def whole() -> tuple[bytes, str | None]:
        body, etag, size = _body(store_for(location.bucket, location.anon), location, {}, location.url)
        data = bytes(body)
        # obstore resumes a broken body with ranged GETs; a whole object must be all there
        if len(data) != size:
            raise BodyError(f"{len(data)} of {size} bytes")
        return data, etag

    return read_exactly(whole, None, location.url, stats)


def put_object(location: Location, data: bytes | bytearray, content_type: str = "application/octet-stream") -> str | None:
    """Write a whole S3 object in one PUT, as botocore's PUT writes it (unconditionally;
    the same errors; requests retried by the client), through obstore, which signs and
    sends the request outside the GIL; returns the ETag. Bulk workers' TPF uploads
    (benchmarks/bulk.py measures the client's CPU per upload)."""
    import obstore

    with obstore_errors(f"write {location.url}", "no such bucket", read=False):
        result = obstore.put(store_for(location.bucket, location.anon), location.key, data,
                             attributes={"Content-Type": content_type}, use_multipart=False)
    return result.get("e_tag")


def _body(store, location: Location, options: GetOptions, what: str) -> tuple[Bytes, str | None, int]:
    """One GET of ``location`` with ``options``: its body (obstore's buffer), the object's
    ETag and size; a body that breaks off raises :class:`~cubecut.storage.base.BodyError`
    (the callers retry it with :func:`~cubecut.storage.base.read_exactly`)."""
    import obstore

    with obstore_errors(what, anon=location.anon):
        result = obstore.get(store, location.key, options=options)
    try:
        body = result.bytes()
    except Exception as exc:  # noqa: BLE001 - the body broke off: any transport error
        raise BodyError(exc) from None
    return body, result.meta.get("e_tag"), result.meta["size"]


@contextlib.contextmanager
def obstore_errors(what: str, missing: str = "not found", *, anon: bool | None = None,
                   read: bool = True) -> Iterator[None]:
    """Run the block's obstore call (which retries failed requests itself) with its errors
    as cubecut's, in the words of the botocore path: a failed If-Match is StaleObjectError,
    a missing object or bucket ObjectNotFoundError (``"{what}: {missing}"``), refused
    credentials AccessDeniedError (a ``read`` as :func:`read_denied` words it for ``anon``),
    a host that does not answer HostUnreachableError, anything else StorageError with
    obstore's first line (never its multi-line debug dump)."""
    from obstore.exceptions import NotFoundError, PermissionDeniedError, PreconditionError, UnauthenticatedError

    try:
        yield
    except PreconditionError:
        raise StaleObjectError(f"{what}: the object changed while being read") from None
    except (NotFoundError, FileNotFoundError):
        raise ObjectNotFoundError(f"{what}: {missing}") from None
    except (PermissionDeniedError, UnauthenticatedError) as exc:
        status = _STATUS.search(str(exc))
        detail = status.group(1) if status else type(exc).__name__
        if read:
            raise read_denied(what, detail, anon) from None
        raise AccessDeniedError(f"{what}: access denied ({detail})") from None
    except Exception as exc:  # noqa: BLE001 - obstore has retried the request already
        text = str(exc)
        if any(marker in text for marker in _CONNECT_MARKERS):
            host = _HOST.search(text)
            raise unreachable(what, host.group(1) if host else endpoint() or "the S3 endpoint") from None
        raise StorageError(f"{what}: {type(exc).__name__}: {text.split(_DEBUG, 1)[0].strip()}") from None


#: What obstore's messages say when the host did not answer (reqwest's connect errors).
_CONNECT_MARKERS = ("error sending request", "kind: Connect", "tcp connect error", "dns error")
#: Where obstore's one-line message ends and its debug dump begins.
_DEBUG = "\n\nDebug source:"
_HOST = re.compile(r"https?://([^/\s,)]+)")
_STATUS = re.compile(r"status code: (\d{3}[^:]*)")
