"""How both S3 clients (botocore, obstore) are set up: from the standard AWS environment,
the endpoint, the region and whether requests are signed; from the caller, how long calls
may take (the :data:`INTERACTIVE` and :data:`BATCH` profiles, chosen per block of work);
and the words both use for a host that does not answer and a refused read."""
from __future__ import annotations

import contextlib
import contextvars
import functools
import os
from dataclasses import dataclass
from typing import Any, Callable, Iterator, TypeVar

from ..errors import AccessDeniedError, HostUnreachableError

#: Connections kept per client; threaded readers and block workers share one client.
MAX_POOL_CONNECTIONS = 128

#: Environment variables that can change where botocore finds credentials.
_CREDENTIAL_ENVIRONMENT = (
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_PROFILE",
    "AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_EC2_METADATA_DISABLED", "HOME",
)


def endpoint() -> str | None:
    """The S3 endpoint URL (``AWS_ENDPOINT_URL_S3``, else ``AWS_ENDPOINT_URL``); None: AWS."""
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None


def region() -> str | None:
    """``AWS_REGION``, else ``AWS_DEFAULT_REGION``; None: the profile's, else us-east-1."""
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")


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


@dataclass(frozen=True)
class S3Deadlines:
    """How long one S3 call may take before it fails with a named error, for both clients
    (botocore and obstore); all in seconds.

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
        with using_deadlines(profile):
            return function(*args, **kwargs)

    return run


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
