"""The S3 backend: which of the two clients serves each call on ``s3://bucket/key``.

* obstore (:mod:`~cubecut.storage.s3_obstore`) for the ``fast`` calls, where the client's
  CPU per request counts: cutouts' pixel reads (``open_pinned``), cold sidecar GETs
  (``get_fast``), bulk workers' uploads (``put_fast``). In a process forked after obstore
  started its runtime (:func:`~cubecut.storage.s3_obstore.usable`), botocore serves these too.
* botocore (:mod:`~cubecut.storage.s3_boto`) for everything else: ranged reads of FFIs and
  cubes (``open``), whole GETs, conditional and tagged PUTs, multipart uploads, HEAD,
  DELETE, LIST and presigned URLs.
"""
from __future__ import annotations

from typing import Iterator

from . import s3_boto, s3_obstore
from .base import Backend, ByteSource, ObjectInfo, RangeSource, ReadStats
from .location import Location


class S3Backend(Backend):
    """Objects on S3 (or an S3-compatible server at ``AWS_ENDPOINT_URL``)."""

    writable = True

    def open(self, location: Location, stats: ReadStats, *, size: int | None = None,
             etag: str | None = None) -> ByteSource:
        return s3_boto.S3Source(location, stats, size=size, etag=etag)

    def open_pinned(self, location: Location, stats: ReadStats, *, size: int, etag: str | None) -> RangeSource:
        if not s3_obstore.usable():
            return s3_boto.S3Source(location, stats, size=size, etag=etag)
        return s3_obstore.ObstoreSource(location, stats, size=size, etag=etag)

    def get(self, location: Location, stats: ReadStats | None) -> tuple[bytes, str | None]:
        return s3_boto.get_object(location, stats)

    def get_fast(self, location: Location, stats: ReadStats | None) -> tuple[bytes, str | None]:
        if not s3_obstore.usable():
            return s3_boto.get_object(location, stats)
        return s3_obstore.get_object(location, stats)

    def put(self, location: Location, data: bytes | bytearray, content_type: str, *,
            tags: dict[str, str] | None, if_match: str | None, if_none_match: bool) -> str | None:
        return s3_boto.put_object(location, data, content_type, tags=tags, if_match=if_match,
                                  if_none_match=if_none_match)

    def put_fast(self, location: Location, data: bytes | bytearray, content_type: str) -> str | None:
        if not s3_obstore.usable():
            return s3_boto.put_object(location, data, content_type)
        return s3_obstore.put_object(location, data, content_type)

    def parts(self, location: Location, content_type: str) -> s3_boto.MultipartUpload:
        return s3_boto.MultipartUpload(location, content_type)

    def head(self, location: Location) -> ObjectInfo:
        return s3_boto.head_object(location)

    def delete(self, location: Location) -> None:
        s3_boto.delete_object(location)

    def list(self, location: Location) -> Iterator[tuple[Location, int]]:
        for item in s3_boto.list_entries(location):
            yield Location("s3", location.bucket, item["Key"], location.anon), item["Size"]

    def list_etags(self, location: Location) -> dict[str, str | None]:
        return {f"s3://{location.bucket}/{item['Key']}": item.get("ETag") for item in s3_boto.list_entries(location)}

    def presigned_url(self, location: Location, expires: int, filename: str | None) -> str:
        return s3_boto.presigned_url(location, expires, filename)
