"""S3 failures as cubecut's named errors (:mod:`cubecut.errors`), in the same words
whichever client failed: botocore's (:func:`s3_errors`) and
obstore's (:func:`obstore_errors`)."""
from __future__ import annotations

import contextlib
import re
from typing import Iterator
from urllib.parse import urlparse

import urllib3.exceptions
from botocore.exceptions import (BotoCoreError, ClientError, ConnectionClosedError, ConnectTimeoutError,
                                 EndpointConnectionError, IncompleteReadError, ReadTimeoutError,
                                 ResponseStreamingError)

from ..errors import (AccessDeniedError, ConcurrentWriteError, HostUnreachableError, ObjectNotFoundError,
                      StaleObjectError, StorageError)
from .s3_config import anonymous, endpoint

#: Every botocore failure of a request (after botocore's own retries).
BOTO_ERRORS = (ClientError, BotoCoreError)
#: Failures while reading an answer's body. urllib3's own errors get through botocore
#: unwrapped and unretried when the body of an *error* answer to GetObject (404, 412,
#: 503 ...) breaks off (botocore reads it in ``convert_to_response_dict``, outside its
#: retry loop).
BODY_ERRORS = (IncompleteReadError, ResponseStreamingError, ReadTimeoutError, ConnectionClosedError,
               urllib3.exceptions.HTTPError)

_PRECONDITION = {"PreconditionFailed", "412"}
_NOT_FOUND = {"NoSuchKey", "NoSuchBucket", "404", "NotFound", "NoSuchUpload"}
_DENIED = {"AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch", "Forbidden",
           "ExpiredToken", "InvalidToken"}


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


def error_code(exc: Exception) -> str:
    """A botocore error's S3 code (``NoSuchKey`` ...); "" when it has no answer (a reset)."""
    return str((getattr(exc, "response", None) or {}).get("Error", {}).get("Code", ""))


def _status(exc: Exception) -> str:
    return str((getattr(exc, "response", None) or {}).get("ResponseMetadata", {}).get("HTTPStatusCode", ""))


def translate_client_error(exc: Exception, what: str) -> StorageError:
    """Turn a botocore error into a named cubecut error mentioning ``what``."""
    if isinstance(exc, (EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError)):  # no answer
        endpoint = str(getattr(exc, "kwargs", {}).get("endpoint_url", "")) or "the S3 endpoint"
        return unreachable(what, urlparse(endpoint).netloc or endpoint)
    if isinstance(exc, ClientError):
        code, status = error_code(exc), _status(exc)
        if code in _PRECONDITION or status == "412":
            return ConcurrentWriteError(f"{what}: the object changed since it was read (precondition failed)")
        if code in _NOT_FOUND or status == "404":
            return ObjectNotFoundError(f"{what}: not found")
        if code in _DENIED or status == "403":
            return AccessDeniedError(f"{what}: access denied ({code or status})")
        return StorageError(f"{what}: {code or status}: {exc}")
    return StorageError(f"{what}: {exc}")


@contextlib.contextmanager
def s3_errors(what: str, *, missing_key: StorageError | None = None, read: bool = False,
              anon: bool | None = None) -> Iterator[None]:
    """Run the block's S3 calls with every botocore failure raised as the named error of
    :func:`translate_client_error` (mentioning ``what``), so no caller handles botocore's
    types; ``missing_key``, if given, is raised instead when S3 answers ``NoSuchKey``; a
    refused ``read`` is worded by :func:`read_denied` for ``anon``."""
    try:
        yield
    except BOTO_ERRORS as exc:  # botocore has retried the request already
        if missing_key is not None and error_code(exc) == "NoSuchKey":
            raise missing_key from None
        error = translate_client_error(exc, what)
        if read and isinstance(error, AccessDeniedError):  # only a ClientError is refused
            raise read_denied(what, error_code(exc) or _status(exc), anon) from None
        raise error from None


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
