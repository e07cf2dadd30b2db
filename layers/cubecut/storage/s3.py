"""The S3 backend (``s3://bucket/key``): which client serves each call, and every botocore call.

obstore (:mod:`~cubecut.storage.s3_obstore`) serves the ``fast`` calls, where the client's
CPU per request counts (``open_pinned``, ``get_fast``, ``put_fast``), unless this process
was forked after obstore started (:func:`~cubecut.storage.s3_obstore.usable`); botocore
serves everything else (docs/architecture.md, "Data sources").

The client honours the standard AWS environment (:mod:`cubecut.storage.s3_config`), so a
local S3-compatible server and AWS are one code path; its requests are unsigned when
:func:`~cubecut.storage.s3_config.anonymous` says so, as public buckets such as MAST's
``stpubdata`` accept, and time out and retry as the
:func:`~cubecut.storage.s3_config.deadlines` profile says. Its failures are raised as the
named errors of :mod:`cubecut.errors` (:func:`s3_errors`), in the words obstore's get
(:func:`~cubecut.storage.s3_obstore.obstore_errors`).
"""
from __future__ import annotations

import contextlib
import dataclasses
import fnmatch
import functools
import os
from datetime import datetime
from typing import TYPE_CHECKING, Any, Iterator
from urllib.parse import urlencode, urlparse

from botocore import UNSIGNED
from botocore.config import Config
import urllib3.exceptions
from botocore.exceptions import (BotoCoreError, ClientError, ConnectionClosedError, ConnectTimeoutError,
                                 EndpointConnectionError, IncompleteReadError, ReadTimeoutError,
                                 ResponseStreamingError)

from ..errors import (AccessDeniedError, ConcurrentWriteError, ObjectNotFoundError, StaleObjectError, StorageError,
                      TargetNotWritableError, UploadGoneError)
from . import s3_obstore
from .base import Backend, BodyError, ByteSource, Listed, ObjectInfo, PartReceipt, RangeSource, ReadStats, read_exactly
from .location import Location
from .s3_config import (BATCH, MAX_POOL_CONNECTIONS, S3Deadlines, anonymous, deadlines, endpoint, read_denied, region,
                        unreachable)

if TYPE_CHECKING:  # boto3 itself (sessions, s3transfer) loads with the first client
    import boto3


#: S3's smallest part of a multipart upload but the last, bytes.
MIN_PART_BYTES = 5 * 2**20

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


def s3_client(anon: bool | None = None):
    """The thread-safe, pooled botocore client of the environment's endpoint, unsigned when
    :func:`anonymous` says so for ``anon``, timing out and retrying as :func:`deadlines` says."""
    return _client(endpoint(), region(), anonymous(anon), deadlines())


class S3Source:
    """An S3 object read by ranged GETs; the size and ETag come from a HEAD unless known
    (e.g. from an index). Every ranged GET carries ``If-Match`` once the ETag is known, so a
    reader never mixes bytes from two versions: a replaced object raises :class:`StaleObjectError`.
    """

    def __init__(self, location: Location, stats: ReadStats | None = None, *,
                 size: int | None = None, etag: str | None = None) -> None:
        self.location = location
        self.stats = stats if stats is not None else ReadStats()
        self._client = s3_client(location.anon)
        if size is None:
            with s3_errors(location.url, read=True, anon=location.anon):
                head = self._client.head_object(Bucket=location.bucket, Key=location.key)
            self.stats.add(0)
            size, etag = head["ContentLength"], head.get("ETag")
        self.size: int = size
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
        expected = max(0, min(stop, self.size) - start)
        return read_exactly(lambda: _body(self._client, self.location, kwargs), expected,
                            f"{self.location.url} bytes [{start}, {stop})", self.stats)[0]


def _body(client: Any, location: Location, kwargs: dict[str, str]) -> tuple[bytes, str | None]:
    """One GetObject: the body and the ETag. A failed ``IfMatch`` is StaleObjectError,
    other failures are named errors; a body that breaks off is :class:`BodyError`."""
    try:
        with s3_errors(location.url, read=True, anon=location.anon):
            try:
                response = client.get_object(**kwargs)
            except ClientError as exc:
                if kwargs.get("IfMatch") and error_code(exc) in {"PreconditionFailed", "412"}:
                    raise StaleObjectError(f"{location.url} changed while being read") from None
                raise
        return response["Body"].read(), response.get("ETag")
    except BODY_ERRORS as exc:  # the body (of an answer, or of an error answer) broke off
        raise BodyError(exc) from None


class S3Backend(Backend):
    """Objects on S3 (or an S3-compatible server at ``AWS_ENDPOINT_URL``)."""

    writable = True
    min_part_bytes = MIN_PART_BYTES

    def open(self, location: Location, stats: ReadStats, *, size: int | None = None,
             etag: str | None = None) -> ByteSource:
        return S3Source(location, stats, size=size, etag=etag)

    def open_pinned(self, location: Location, stats: ReadStats, *, size: int, etag: str | None) -> RangeSource:
        if not s3_obstore.usable():
            return S3Source(location, stats, size=size, etag=etag)
        return s3_obstore.ObstoreSource(location, stats, size=size, etag=etag)

    def get(self, location: Location, stats: ReadStats | None) -> tuple[bytes, str | None]:
        """One GET, retried whole if its body breaks off (botocore checks its length
        against Content-Length)."""
        kwargs = {"Bucket": location.bucket, "Key": location.key}
        with _miss_counted(stats):
            return read_exactly(lambda: _body(s3_client(location.anon), location, kwargs), None, location.url, stats)

    def get_fast(self, location: Location, stats: ReadStats | None) -> tuple[bytes, str | None]:
        if not s3_obstore.usable():
            return self.get(location, stats)
        with _miss_counted(stats):
            return s3_obstore.get_object(location, stats)

    def put(self, location: Location, data: bytes | bytearray, content_type: str, *,
            tags: dict[str, str] | None = None, if_match: str | None = None,
            if_none_match: bool = False) -> str | None:
        extra: dict[str, str] = {"Tagging": urlencode(tags)} if tags else {}
        if if_match is not None:
            extra["IfMatch"] = if_match
        if if_none_match:
            extra["IfNoneMatch"] = "*"
        try:
            response = s3_client().put_object(Bucket=location.bucket, Key=location.key, Body=data,
                                              ContentType=content_type, **extra)
        except BOTO_ERRORS as exc:
            error = translate_client_error(exc, f"write {location.url}")
            if isinstance(error, ObjectNotFoundError) and if_match is not None:
                raise ConcurrentWriteError(f"write {location.url}: the version {if_match} is gone") from None
            raise error from None
        return response.get("ETag")

    def put_fast(self, location: Location, data: bytes | bytearray, content_type: str) -> str | None:
        if not s3_obstore.usable():
            return self.put(location, data, content_type)
        return s3_obstore.put_object(location, data, content_type)

    def upload(self, location: Location) -> S3Upload:
        return S3Upload(location)

    def head(self, location: Location) -> ObjectInfo:
        with s3_errors(location.url):
            response = s3_client(location.anon).head_object(Bucket=location.bucket, Key=location.key)
        return ObjectInfo(response["ContentLength"], response.get("ETag"), dict(response.get("Metadata", {})))

    def delete(self, location: Location) -> None:
        with s3_errors(location.url):  # S3 answers alike whether the object existed or not
            s3_client().delete_object(Bucket=location.bucket, Key=location.key)

    def list(self, location: Location) -> Iterator[Listed]:
        for item in _entries(location):
            yield Listed(Location("s3", location.bucket, item["Key"], location.anon), item["Size"], item.get("ETag"),
                         item["LastModified"])

    def uploads(self, location: Location) -> Iterator[tuple[Location, str, datetime]]:
        paginator = s3_client().get_paginator("list_multipart_uploads")  # 1,000 uploads a page
        with s3_errors(f"list uploads under {location.url}"):
            for page in paginator.paginate(Bucket=location.bucket, Prefix=location.key):
                for upload in page.get("Uploads", []):
                    yield Location("s3", location.bucket, upload["Key"]), upload["UploadId"], upload["Initiated"]

    def delete_tree(self, location: Location) -> None:
        keys = [item["Key"] for item in _entries(location)]
        for start in range(0, len(keys), 1000):  # DeleteObjects takes 1,000 keys at most
            with s3_errors(f"delete the objects under {location.url}"):
                s3_client().delete_objects(Bucket=location.bucket, Delete={
                    "Objects": [{"Key": key} for key in keys[start:start + 1000]], "Quiet": True})

    def glob(self, location: Location) -> tuple[Location, ...]:
        head = location.key[:min((i for i in map(location.key.find, "*?[") if i >= 0), default=None)]
        return tuple(item.location for item in self.list(dataclasses.replace(location, key=head))
                     if fnmatch.fnmatchcase(item.location.key, location.key))

    def is_folder(self, location: Location) -> bool:
        return location.key.endswith("/") or not location.key

    def staging(self, location: Location, tag: str) -> str:
        return f"{location.url}.ingest/{tag}/"

    def presigned_url(self, location: Location, expires: int, filename: str | None) -> str:
        params = {"Bucket": location.bucket, "Key": location.key}
        if filename:
            params["ResponseContentDisposition"] = f'attachment; filename="{filename}"'
        return s3_client().generate_presigned_url("get_object", Params=params, ExpiresIn=int(expires))


@contextlib.contextmanager
def _miss_counted(stats: ReadStats | None) -> Iterator[None]:
    """Count a GET that S3 answered "not found" as a request (of no bytes)."""
    try:
        yield
    except ObjectNotFoundError:
        if stats is not None:
            stats.add(0)
        raise


def _entries(location: Location) -> Iterator[dict]:
    """Every object entry (``Key``, ``Size``, ``ETag`` ...) of one LIST (paginated) under
    the prefix ``location.key``, signed or not as ``location.anon`` asks."""
    paginator = s3_client(location.anon).get_paginator("list_objects_v2")
    with s3_errors(location.url, read=True, anon=location.anon):
        for page in paginator.paginate(Bucket=location.bucket, Prefix=location.key):
            yield from page.get("Contents", [])


class S3Upload:
    """An :class:`~cubecut.storage.base.Upload` by S3 multipart upload. Parts are
    re-sendable bytes, so botocore's retries of a failed UploadPart are safe; the bucket's
    AbortIncompleteMultipartUpload rule removes the parts of a process that dies before
    it could abort."""

    def __init__(self, location: Location) -> None:
        self.location = location

    def _call(self, what: str, method: str, **kwargs: Any) -> dict:
        with s3_errors(f"{what} {self.location.url}"):
            return getattr(s3_client(), method)(Bucket=self.location.bucket, Key=self.location.key, **kwargs)

    def begin(self, content_type: str, metadata: dict[str, str] | None = None, size: int | None = None) -> str:
        try:
            return self._call("start upload of", "create_multipart_upload", ContentType=content_type,
                              Metadata=metadata or {})["UploadId"]
        except StorageError as exc:
            raise TargetNotWritableError(f"cannot write: {exc}") from None

    def write_part(self, upload_id: str, part: int, offset: int, data: bytes | bytearray) -> PartReceipt:
        try:
            response = self._call(f"upload part {part} of", "upload_part", UploadId=upload_id, PartNumber=part,
                                  Body=data)
        except ObjectNotFoundError:
            raise UploadGoneError(f"{self.location.url}: upload {upload_id} is gone (aborted by the janitor, the "
                                  "bucket's lifecycle rule or by hand): nothing was written") from None
        return PartReceipt(part, len(data), response["ETag"])

    def list_parts(self, upload_id: str) -> list[PartReceipt]:
        paginator = s3_client().get_paginator("list_parts")
        with s3_errors(f"list parts of {self.location.url}"):
            receipts = [PartReceipt(p["PartNumber"], p["Size"], p["ETag"]) for page in paginator.paginate(
                Bucket=self.location.bucket, Key=self.location.key, UploadId=upload_id) for p in page.get("Parts", [])]
        return sorted(receipts, key=lambda r: r.part)

    def complete(self, upload_id: str, parts: list[PartReceipt], *, if_match: str | None = None,
                 if_none_match: bool = False) -> str | None:
        condition = {"IfMatch": if_match} if if_match else {"IfNoneMatch": "*"} if if_none_match else {}
        # NoSuchKey with If-Match: the key is now empty (NoSuchUpload stays ObjectNotFoundError).
        deleted = ConcurrentWriteError(f"{self.location.url}: the version {if_match} was deleted meanwhile; "
                                       "nothing was written") if if_match else None
        with s3_errors(f"complete upload of {self.location.url}", missing_key=deleted):
            response = s3_client().complete_multipart_upload(
                Bucket=self.location.bucket, Key=self.location.key, UploadId=upload_id,
                MultipartUpload={"Parts": [{"PartNumber": p.part, "ETag": p.etag}
                                           for p in sorted(parts, key=lambda r: r.part)]}, **condition)
        return response.get("ETag")

    def abort(self, upload_id: str) -> None:
        with contextlib.suppress(ObjectNotFoundError):
            self._call("abort upload of", "abort_multipart_upload", UploadId=upload_id)


# -- botocore's failures as named errors ----------------------------------------------------
def error_code(exc: Exception) -> str:
    """A botocore error's S3 code (``NoSuchKey`` ...); "" when it has no answer (a reset)."""
    return str((getattr(exc, "response", None) or {}).get("Error", {}).get("Code", ""))


def _status(exc: Exception) -> str:
    return str((getattr(exc, "response", None) or {}).get("ResponseMetadata", {}).get("HTTPStatusCode", ""))


def translate_client_error(exc: Exception, what: str) -> StorageError:
    """Turn a botocore error into a named cubecut error mentioning ``what``."""
    if isinstance(exc, (EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError)):  # no answer
        url = str(getattr(exc, "kwargs", {}).get("endpoint_url", "")) or "the S3 endpoint"
        return unreachable(what, urlparse(url).netloc or url)
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
