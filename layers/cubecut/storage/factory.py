"""The one place that looks at a location's scheme: which backend serves it."""
from __future__ import annotations

from .base import Backend, read_only
from .fsspec_backend import FsspecBackend
from .local import LocalBackend
from .location import Location
from .s3 import S3Backend

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
