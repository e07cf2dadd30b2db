"""The fsspec backend: every other URL scheme (``https://``, ``memory://`` ...), read-only,
by byte ranges (HTTP ``Range`` requests for ``https://``), not ETag-pinned."""
from __future__ import annotations

from typing import Any, Callable, Iterator

from ..errors import AccessDeniedError, ObjectNotFoundError, StorageError
from .base import Backend, BodyError, ByteSource, Listed, ObjectInfo, ReadStats, read_exactly
from .location import SCHEME, Location


def _filesystem(location: Location) -> tuple[Any, str]:
    """The fsspec file system and path of ``location`` (fsspec caches the instances)."""
    import fsspec  # only the non-S3, non-local URLs need it (the Lambda layer does not ship it)

    try:
        return fsspec.core.url_to_fs(location.url)
    except (ValueError, ImportError) as exc:  # unknown protocol, or its package is not installed
        raise StorageError(f"{location.url}: cannot read {location.scheme}:// URLs: {exc}") from None


def _call(location: Location, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``function(*args, **kwargs)`` with fsspec's and aiohttp's errors as named cubecut errors."""
    try:
        return function(*args, **kwargs)
    except FileNotFoundError:
        raise ObjectNotFoundError(f"{location.url}: not found") from None
    except PermissionError:
        raise AccessDeniedError(f"{location.url}: access denied") from None
    except Exception as exc:  # noqa: BLE001 - fsspec back ends raise their own (aiohttp, OSError...) types
        raise StorageError(f"{location.url}: {type(exc).__name__}: {exc}") from None


class FsspecSource:
    """An object behind an fsspec URL, read by byte ranges.

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
            info = _call(location, self._fs.info, self._path)
            self.stats.add(0)
            size = info.get("size")
            if not isinstance(size, int):
                raise StorageError(f"{location.url}: the server does not report the object's size")
            # the version: an ETag, else an MD5 or a time, else None
            etag = next((str(info[k]) for k in ("ETag", "etag", "md5", "created", "mtime") if info.get(k)), None)
        self.size: int = size
        self.etag = etag

    def read(self, start: int, stop: int) -> bytes:
        stop = min(stop, self.size)
        if stop <= start:
            return b""
        what = f"{self.location.url} bytes [{start}, {stop})"

        def fetch() -> tuple[bytes, None]:
            try:
                data = _call(self.location, self._fs.cat_file, self._path, start=start, end=stop)
            except (ObjectNotFoundError, AccessDeniedError):
                raise
            except StorageError as exc:  # a transport failure: read again
                raise BodyError(exc) from None
            if len(data) > stop - start:
                raise StorageError(f"{what}: the server ignores byte ranges (it sent {len(data)} bytes); "
                                   "cubecut reads only the bytes it needs and cannot use it")
            return data, None

        return read_exactly(fetch, stop - start, what, self.stats)[0]


class FsspecBackend(Backend):
    """Objects behind any other URL fsspec understands; read-only."""

    def open(self, location: Location, stats: ReadStats, *, size: int | None = None,
             etag: str | None = None) -> ByteSource:
        return FsspecSource(location, stats, size=size, etag=etag)

    def head(self, location: Location) -> ObjectInfo:
        source = FsspecSource(location)
        return ObjectInfo(source.size, source.etag, {})

    def list(self, location: Location) -> Iterator[Listed]:  # sorted by URL
        fs, path = _filesystem(location)
        found = _call(location, fs.find, path, detail=True)
        for name in sorted(found):
            url = name if SCHEME.match(name) else fs.unstrip_protocol(name)
            yield Listed(Location.parse(url, anon=location.anon), int(found[name].get("size") or 0), None, None)
