"""The S3 backend: ``s3://bucket/key`` through two clients, each where it serves best.

* obstore (:mod:`~cubecut.storage.s3_obstore`) for the fast path, where the client's CPU
  per request counts: cutouts' pixel reads (``open_pinned``) and cold sidecar GETs
  (``get_fast``), bulk workers' uploads (``put_fast``). In a process forked after obstore
  started its runtime (:func:`~cubecut.storage.s3_obstore.usable`), botocore serves these too.
* botocore (:mod:`~cubecut.storage.s3_boto`) for everything else: ranged reads of FFIs and
  cubes (``open``), whole GETs, conditional and tagged PUTs, multipart uploads, HEAD,
  DELETE, LIST and presigned URLs.
"""
from __future__ import annotations

import contextlib
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Iterator
from urllib.parse import urlencode

from ..errors import ConcurrentWriteError, ObjectNotFoundError, StorageError
from . import s3_obstore
from .base import ByteSource, ObjectInfo, RangeSource, ReadStats
from .location import Location
from .s3_boto import S3Source, get_object, s3_client
from .s3_failures import BOTO_ERRORS, s3_errors, s3_read_errors, translate_client_error


class S3Backend:
    """Objects on S3 (or an S3-compatible server at ``AWS_ENDPOINT_URL``)."""

    writable = True

    def open(self, location: Location, stats: ReadStats, *, size: int | None = None,
             etag: str | None = None) -> ByteSource:
        return S3Source(location, stats, size=size, etag=etag)

    def open_pinned(self, location: Location, stats: ReadStats, *, size: int, etag: str | None) -> RangeSource:
        if not s3_obstore.usable():
            return S3Source(location, stats, size=size, etag=etag)
        return s3_obstore.ObstoreSource(location, stats, size=size, etag=etag)

    def get(self, location: Location, stats: ReadStats | None) -> tuple[bytes, str | None]:
        return get_object(location, stats)

    def get_fast(self, location: Location, stats: ReadStats | None) -> tuple[bytes, str | None]:
        if not s3_obstore.usable():
            return get_object(location, stats)
        return s3_obstore.get_object(location, stats)

    def put(self, location: Location, data: bytes | bytearray, content_type: str, *,
            tags: dict[str, str] | None, if_match: str | None, if_none_match: bool) -> str | None:
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
            return self.put(location, data, content_type, tags=None, if_match=None, if_none_match=False)
        return s3_obstore.put_object(location, data, content_type)

    def parts(self, location: Location, content_type: str) -> "MultipartUpload":
        return MultipartUpload(location, content_type)

    def head(self, location: Location) -> ObjectInfo:
        with s3_errors(location.url):
            response = s3_client().head_object(Bucket=location.bucket, Key=location.key)
        version = response.get("VersionId")
        return ObjectInfo(response["ContentLength"], response.get("ETag"), dict(response.get("Metadata", {})),
                          None if version in (None, "null") else version)

    def delete(self, location: Location) -> None:
        with s3_errors(location.url):
            s3_client().delete_object(Bucket=location.bucket, Key=location.key)

    def _pages(self, location: Location) -> Iterator[dict]:
        """Every object entry (``Key``, ``Size``, ``ETag`` ...) of one LIST (paginated) under
        the prefix ``location.key``, signed or not as ``location.anon`` asks."""
        paginator = s3_client(location.anon).get_paginator("list_objects_v2")
        with s3_read_errors(location):
            for page in paginator.paginate(Bucket=location.bucket, Prefix=location.key):
                yield from page.get("Contents", [])

    def list(self, location: Location) -> Iterator[tuple[Location, int]]:
        for item in self._pages(location):
            yield Location("s3", location.bucket, item["Key"], location.anon), item["Size"]

    def list_etags(self, location: Location) -> dict[str, str | None]:
        return {f"s3://{location.bucket}/{item['Key']}": item.get("ETag") for item in self._pages(location)}

    def presigned_url(self, location: Location, expires: int, filename: str | None) -> str:
        params = {"Bucket": location.bucket, "Key": location.key}
        if filename:
            params["ResponseContentDisposition"] = f'attachment; filename="{filename}"'
        return s3_client().generate_presigned_url("get_object", Params=params, ExpiresIn=int(expires))


class MultipartUpload:
    """An object sent as a multipart upload (started with the first part), its parts
    uploaded in a background thread, at most one in flight. Parts are re-sendable bytes,
    so botocore's retries of a failed UploadPart are safe; the bucket's
    AbortIncompleteMultipartUpload rule removes the parts of a process that dies before
    it could abort."""

    def __init__(self, location: Location, content_type: str) -> None:
        self.location = location
        self.content_type = content_type
        self._parts: list[dict] = []
        self._upload_id: str | None = None
        self._pending: Future | None = None
        self._sender: ThreadPoolExecutor | None = None

    def send(self, part: bytearray) -> None:
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

    def complete(self) -> str | None:
        self._wait()
        with s3_errors(f"complete upload of {self.location.url}"):
            response = s3_client().complete_multipart_upload(
                Bucket=self.location.bucket, Key=self.location.key, UploadId=self._upload_id,
                MultipartUpload={"Parts": self._parts})
        self._shutdown()
        return response.get("ETag")

    def abort(self) -> None:
        try:
            if self._pending is not None:
                self._pending.cancel()
                with contextlib.suppress(Exception):  # the upload is aborted whatever the part did
                    self._pending.result()
                self._pending = None
            if self._upload_id is not None:
                with contextlib.suppress(StorageError):  # the lifecycle rule removes what is left
                    with s3_errors(f"abort upload of {self.location.url}"):
                        s3_client().abort_multipart_upload(Bucket=self.location.bucket, Key=self.location.key,
                                                           UploadId=self._upload_id)
                self._upload_id = None
        finally:
            self._shutdown()

    def _shutdown(self) -> None:
        if self._sender is not None:
            self._sender.shutdown(wait=True)
            self._sender = None

