"""Byte-level access to objects on S3, on the local disk or behind any fsspec URL, with one interface.

Each function hands its call to the location's backend (:class:`~cubecut.storage.base.Backend`),
chosen once from the scheme by :func:`backend_for` (the one place a scheme is looked at);
which client serves which call is told in docs/architecture.md ("Data sources", checked
by tests/library/test_storage_backends.py). S3 requests follow the standard AWS
environment and the caller's :func:`deadlines`, and fail with the named errors of
:mod:`cubecut.errors`. Every read is a byte range ``[start, stop)`` (0-based, stop
exclusive), counted in a :class:`ReadStats`.
"""
from __future__ import annotations

import os
from datetime import datetime
from typing import Any, Iterator, cast

from ..errors import StaleObjectError
from .base import (READ_ATTEMPTS, RETRIES, Backend, ByteSource, ObjectInfo, PartReceipt, RangeSource, ReadStats, Upload,
                   read_only)
from .files import file_etag, writable_folder
from .fsspec_backend import FsspecBackend
from .local import FileSource, LocalBackend
from .location import Location
from . import s3, s3_obstore
from .s3 import MIN_PART_BYTES, S3Backend, s3_client, translate_client_error
from .s3_config import (BATCH, INTERACTIVE, MAX_POOL_CONNECTIONS, S3Deadlines, anonymous, carrying_deadlines,
                        deadlines, read_denied, using_deadlines)
from .stream import PARTS_IN_FLIGHT, STREAM_PART_BYTES, ObjectStreamWriter

__all__ = [
    "BATCH", "INTERACTIVE", "MAX_POOL_CONNECTIONS", "MIN_PART_BYTES", "PARTS_IN_FLIGHT", "READ_ATTEMPTS", "RETRIES",
    "STREAM_PART_BYTES",
    "ByteSource", "FileSource", "Location", "ObjectInfo", "ObjectStreamWriter", "PartReceipt", "RangeSource",
    "ReadStats", "S3Deadlines", "StaleObjectError", "Upload",
    "anonymous", "backend_for", "carrying_deadlines", "deadlines", "delete", "delete_tree", "glob_objects",
    "is_folder",
    "file_etag", "get_bytes", "get_bytes_fast", "head", "list_dated", "list_etags", "list_objects",
    "open_pinned", "open_source", "open_upload", "part_minimum", "presigned_url", "put_bytes", "put_bytes_fast",
    "read_denied", "reset_clients", "s3_client", "staging_folder", "translate_client_error", "uploads", "using_deadlines",
    "output_folder", "writable", "writable_folder",
]

Where = str | os.PathLike[str] | Location

#: The backends, by scheme; every scheme not named is fsspec's.
_BACKENDS: dict[str, Backend] = {"s3": S3Backend(), "file": LocalBackend()}
_FSSPEC = FsspecBackend()


def backend_for(location: Location) -> Backend:
    """The backend of ``location``: S3 for ``s3://``, local for a path (or ``file://``),
    fsspec for every other scheme."""
    return _BACKENDS.get(location.scheme, _FSSPEC)


def writable(location: Location) -> Location:
    """``location`` if cubecut can write there (S3 or a local path), else TargetNotWritableError."""
    if not backend_for(location).writable:
        raise read_only(location)
    return location


def open_source(url: Where, stats: ReadStats | None = None, **known: Any) -> ByteSource:
    """Open ``url`` for ranged reads; ``known`` may carry ``size`` (bytes) and ``etag``,
    which spare a HEAD (S3, fsspec; a local file says them itself)."""
    location = Location.of(url)
    return backend_for(location).open(location, stats if stats is not None else ReadStats(), **known)


def open_pinned(url: Where, stats: ReadStats | None = None, *, size: int, etag: str | None) -> RangeSource:
    """Open ``url`` for the many ranged reads of a cutout, pinned to the version of ``size``
    bytes and ETag ``etag``: on S3 through the fast client, every GET with ``If-Match``
    (StaleObjectError at the first read of another version); elsewhere checked once on
    opening (StaleObjectError if the object is not that version)."""
    location = Location.of(url)
    return backend_for(location).open_pinned(location, stats if stats is not None else ReadStats(),
                                             size=size, etag=etag)


def get_bytes(url: Where, stats: ReadStats | None = None) -> tuple[bytes, str | None]:
    """The whole object and its ETag (one GET)."""
    location = Location.of(url)
    return backend_for(location).get(location, stats)


def get_bytes_fast(url: Where, stats: ReadStats | None = None) -> tuple[bytes, str | None]:
    """:func:`get_bytes` through the fast client (on S3, obstore: a quarter of botocore's
    CPU per request), for a cold read where nothing else can run meanwhile."""
    location = Location.of(url)
    return backend_for(location).get_fast(location, stats)


def put_bytes(url: Where, data: bytes | bytearray, content_type: str = "application/octet-stream", *,
              tags: dict[str, str] | None = None, if_match: str | None = None,
              if_none_match: bool = False) -> str | None:
    """Write a whole object atomically (S3 PUT, or temp file + rename); returns its ETag.

    ``tags`` become S3 object tags (lifecycle rules can select on them); ignored locally.
    ``if_match`` (an ETag) / ``if_none_match`` make the write conditional (S3 ``If-Match``
    / ``If-None-Match: *``; locally the same check under a file lock): when the object is
    not that version (or exists), nothing is written and ConcurrentWriteError is raised.
    """
    location = writable(Location.of(url))
    return backend_for(location).put(location, data, content_type, tags=tags, if_match=if_match,
                                     if_none_match=if_none_match)


def put_bytes_fast(url: Where, data: bytes | bytearray, content_type: str = "application/octet-stream") -> None:
    """Write one of many fresh outputs (a bulk job's TPFs and shards), whole, atomically,
    unconditionally: on S3 in one PUT through obstore (which signs and sends it outside
    the GIL), locally with ``O_DIRECT`` (no page-cache pages to allocate per file)."""
    location = writable(Location.of(url))
    backend_for(location).put_fast(location, data, content_type)


def head(url: Where) -> ObjectInfo:
    """Size, ETag, user metadata and version of an object (ObjectNotFoundError if absent)."""
    location = Location.of(url)
    return backend_for(location).head(location)


def delete(url: Where) -> None:
    """Delete an object if it exists (locally also an empty folder)."""
    location = writable(Location.of(url))
    backend_for(location).delete(location)


def list_objects(prefix: Where) -> Iterator[tuple[Location, int]]:
    """Yield ``(location, size)`` of every object under an S3 prefix, local folder, or other
    fsspec folder (for ``https://``, the links of an HTML index page, as fsspec reads them)."""
    location = Location.of(prefix)
    return ((item.location, item.size) for item in backend_for(location).list(location))


def list_etags(prefix: Where) -> dict[str, str | None]:
    """``{url: ETag}`` of every object under an S3 prefix or in a local folder (local
    files: :func:`file_etag`), from one LIST (paginated) on S3."""
    location = writable(Location.of(prefix))
    return {item.location.url: item.etag for item in backend_for(location).list(location)}


def presigned_url(url: Where, expires: int, filename: str | None = None) -> str:
    """A SigV4 presigned GET URL of ``s3://bucket/key``, valid for ``expires`` seconds; with
    ``filename``, the download is named so (``Content-Disposition: attachment``)."""
    location = Location.of(url)
    return backend_for(location).presigned_url(location, expires, filename)


def list_dated(prefix: Where) -> Iterator[tuple[Location, datetime]]:
    """Yield ``(location, last modified)`` (an aware UTC datetime) of every object under an
    S3 prefix or in a local folder."""
    location = writable(Location.of(prefix))
    # (cast: S3 and local listings, the writable ones, date every object)
    return ((item.location, cast(datetime, item.modified)) for item in backend_for(location).list(location))


def uploads(prefix: Where) -> Iterator[tuple[Location, str, datetime]]:
    """Yield ``(object, upload id, initiated: an aware UTC datetime)`` of every :func:`open_upload` in progress
    under an S3 prefix or in a local folder (ObjectNotFoundError if there is no such folder)."""
    location = writable(Location.of(prefix))
    return backend_for(location).uploads(location)


def delete_tree(prefix: Where) -> None:
    """Delete every object under an S3 prefix, or a local folder and all in it."""
    location = writable(Location.of(prefix))
    backend_for(location).delete_tree(location)


def glob_objects(pattern: Where) -> tuple[Location, ...] | None:
    """The objects whose names match ``pattern`` (``*``, ``?``, ``[``: local paths, or keys
    under an S3 prefix; sorted); None where the scheme has no patterns (fsspec URLs, where
    ``?`` starts a query): ``pattern`` then names one object."""
    location = Location.of(pattern)
    return backend_for(location).glob(location)


def is_folder(url: Where) -> bool:
    """Whether ``url`` names a folder: an existing local folder, or an S3 URL ending ``/``."""
    location = Location.of(url)
    return backend_for(location).is_folder(location)


def staging_folder(url: Where, tag: str) -> str:
    """The folder URL (ending ``/``) of the temporary objects of job ``tag`` that writes
    ``url``: ``{url}.ingest/{tag}/`` on S3 (the prefix the deployment's IAM policy and
    lifecycle rule name), the hidden ``.{name}.{tag}.staging/`` beside a local file (no
    listing of ``.fits`` names sees it). :func:`delete` of it removes the emptied folder."""
    location = writable(Location.of(url))
    return backend_for(location).staging(location, tag)


def output_folder(url: Where) -> Location:
    """The folder (created if need be) or S3 prefix at ``url``, checked to be writable
    before anything is written there (TargetNotWritableError, one line, otherwise)."""
    location = Location.of(url)
    backend_for(location).make_folder(location)
    return location


def open_upload(url: Where) -> Upload:
    """The :class:`~cubecut.storage.base.Upload` of ``url`` (an object assembled from parts)."""
    location = writable(Location.of(url))
    return backend_for(location).upload(location)


def part_minimum(url: Where) -> int:
    """Bytes of every part of a multipart upload to ``url`` but the last, at least (S3: 5 MiB)."""
    return backend_for(Location.of(url)).min_part_bytes


def reset_clients() -> None:
    """Forget every cached S3 client (botocore's and obstore's): the next call meets the
    environment's endpoint and credentials anew (tests, and a process that changed them)."""
    s3._client.cache_clear()
    s3_obstore._store.cache_clear()
