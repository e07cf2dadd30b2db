"""The local backend: paths on this machine (plain or ``file://``), read with ``os.pread``,
written as :mod:`cubecut.storage.files` writes files (whole, atomically; bulk outputs with
``O_DIRECT``; conditional writes under a folder lock)."""
from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO, Iterator

from ..errors import AccessDeniedError, ObjectNotFoundError, StaleObjectError
from .base import Backend, ByteSource, ObjectInfo, RangeSource, ReadStats, pinned
from .files import file_etag, replace_file, temporary_beside, write_file
from .location import Location


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
        self.etag: str | None = file_etag(st)

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


def _files(root: Path) -> Iterator[Path]:
    """``root`` if it is a file, else every file below it (sorted; none if it is absent)."""
    if root.is_file():
        yield root
        return
    yield from sorted(p for p in root.rglob("*") if p.is_file())


class LocalBackend(Backend):
    """Files on this machine's file system."""

    writable = True

    def open(self, location: Location, stats: ReadStats, *, size: int | None = None,
             etag: str | None = None) -> ByteSource:
        return FileSource(location, stats)  # the file says its size and version itself

    def open_pinned(self, location: Location, stats: ReadStats, *, size: int, etag: str | None) -> RangeSource:
        source = FileSource(location, stats)
        try:
            return pinned(source, size, etag)
        except StaleObjectError:
            source.close()
            raise

    def get(self, location: Location, stats: ReadStats | None) -> tuple[bytes, str | None]:
        source = FileSource(location, stats)
        try:
            return source.read(0, source.size), source.etag
        finally:
            source.close()

    def put(self, location: Location, data: bytes | bytearray, content_type: str, *,
            tags: dict[str, str] | None, if_match: str | None, if_none_match: bool) -> str | None:
        return replace_file(Path(location.key), data, if_match=if_match, if_none_match=if_none_match)

    def put_fast(self, location: Location, data: bytes | bytearray, content_type: str) -> str | None:
        write_file(location.key, data)
        return None

    def parts(self, location: Location, content_type: str) -> "TemporaryFile":
        return TemporaryFile(Path(location.key))

    def head(self, location: Location) -> ObjectInfo:
        try:
            st = Path(location.key).stat()
        except (FileNotFoundError, NotADirectoryError):
            raise ObjectNotFoundError(f"{location.key}: no such file") from None
        return ObjectInfo(st.st_size, file_etag(st), {})

    def delete(self, location: Location) -> None:
        Path(location.key).unlink(missing_ok=True)

    def list(self, location: Location) -> Iterator[tuple[Location, int]]:
        for path in _files(Path(location.key)):
            yield Location("file", "", str(path)), path.stat().st_size

    def list_etags(self, location: Location) -> dict[str, str | None]:
        return {str(path): file_etag(path.stat()) for path in _files(Path(location.key))}


class TemporaryFile:
    """Parts appended to a hidden temporary file beside ``path``, renamed over it when complete."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._tmp: Path | None = None
        self._file: BinaryIO | None = None

    def send(self, part: bytearray) -> None:
        if self._file is None:
            self._tmp = temporary_beside(self.path)
            self._file = open(self._tmp, "wb")  # closed by complete() or abort()
        self._file.write(part)

    def complete(self) -> str | None:
        assert self._file is not None and self._tmp is not None, "complete() after a part was sent"
        self._file.close()
        os.replace(self._tmp, self.path)
        return file_etag(self.path.stat())

    def abort(self) -> None:
        if self._file is not None:
            self._file.close()
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)
