"""The local backend: paths on this machine (plain or ``file://``), read with ``os.pread``,
written as :mod:`cubecut.storage.files` writes files (whole, atomically; bulk outputs with
``O_DIRECT``; conditional writes under a folder lock)."""
from __future__ import annotations

import glob
import json
import os
import shutil
import stat
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from ..errors import AccessDeniedError, ObjectNotFoundError, TargetNotWritableError, UploadGoneError
from .base import Backend, ByteSource, Listed, ObjectInfo, PartReceipt, ReadStats
from .files import file_etag, replace_checked, replace_file, writable_folder, write_file
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


def _modified(st: os.stat_result) -> datetime:
    return datetime.fromtimestamp(st.st_mtime, timezone.utc)


class LocalBackend(Backend):
    """Files on this machine's file system."""

    writable = True

    def make_folder(self, location: Location) -> None:
        writable_folder(location.key)

    def open(self, location: Location, stats: ReadStats, *, size: int | None = None,
             etag: str | None = None) -> ByteSource:
        return FileSource(location, stats)  # the file says its size and version itself

    def put(self, location: Location, data: bytes | bytearray, content_type: str, *,
            tags: dict[str, str] | None, if_match: str | None, if_none_match: bool) -> str | None:
        return replace_file(Path(location.key), data, if_match=if_match, if_none_match=if_none_match)

    def put_fast(self, location: Location, data: bytes | bytearray, content_type: str) -> str | None:
        write_file(location.key, data)
        return None

    def upload(self, location: Location) -> FileUpload:
        return FileUpload(location)

    def head(self, location: Location) -> ObjectInfo:
        try:
            st = Path(location.key).stat()
        except (FileNotFoundError, NotADirectoryError):
            raise ObjectNotFoundError(f"{location.key}: no such file") from None
        return ObjectInfo(st.st_size, file_etag(st), {})

    def delete(self, location: Location) -> None:
        path = Path(location.key)
        if path.is_dir():
            path.rmdir()
        else:
            path.unlink(missing_ok=True)

    def list(self, location: Location) -> Iterator[Listed]:
        """The file itself, else every file below the folder (sorted; none if it is absent)."""
        root = Path(location.key)
        for path in [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file()):
            st = path.stat()
            yield Listed(Location("file", "", str(path)), st.st_size, file_etag(st), _modified(st))

    def uploads(self, location: Location) -> Iterator[tuple[Location, str, datetime]]:
        """The :class:`FileUpload` s in the folder and below; each dated by the newest
        modification of its file and receipts (which a running upload keeps fresh)."""
        root = Path(location.key)
        if not root.is_dir():
            raise ObjectNotFoundError(f"{root}: no such folder")
        # ``.{name}.{upload}`` with its file, its receipts or both: a completion killed
        # between renaming the file into place and removing the receipts leaves these alone.
        stems = sorted({(path.parent, path.name.rpartition(".")[0])
                        for pattern in (".*.partial", ".*.parts") for path in root.rglob(pattern)})
        for folder, stem in stems:
            name, _, upload_id = stem[1:].rpartition(".")
            receipts = folder / f"{stem}.parts"
            try:
                initiated = max(_modified(path.stat()) for path in [folder / f"{stem}.partial", receipts, *receipts.glob("*")]
                                if path.exists())
            except (FileNotFoundError, ValueError):  # completed or aborted meanwhile
                continue
            yield Location("file", "", str(folder / name)), upload_id, initiated

    def glob(self, location: Location) -> tuple[Location, ...]:
        return tuple(Location("file", "", path, location.anon) for path in sorted(glob.glob(location.key))
                     if not os.path.isdir(path))

    def is_folder(self, location: Location) -> bool:
        return os.path.isdir(location.key)

    def staging(self, location: Location, tag: str) -> str:
        return location.sibling(f".{location.name}.{tag}.staging").url + "/"

    def delete_tree(self, location: Location) -> None:
        shutil.rmtree(location.key, ignore_errors=True)


class FileUpload:
    """An :class:`~cubecut.storage.base.Upload` in a hidden temporary file beside the
    destination, its parts written at their offsets; a small JSON receipt per part records
    what arrived, so ``list_parts`` works across processes like S3's. ``complete`` renames
    the file into place (conditionally under the folder's write lock)."""

    def __init__(self, location: Location) -> None:
        self.location = location
        self.path = Path(location.key)

    def _partial(self, upload_id: str) -> Path:
        return self.path.with_name(f".{self.path.name}.{upload_id}.partial")

    def _receipts(self, upload_id: str) -> Path:
        return self.path.with_name(f".{self.path.name}.{upload_id}.parts")

    def begin(self, content_type: str, metadata: dict[str, str] | None = None, size: int | None = None) -> str:
        upload_id = os.urandom(8).hex()
        try:
            writable_folder(self.path.parent)
            with open(self._partial(upload_id), "wb") as handle:
                handle.truncate(size or 0)
            self._receipts(upload_id).mkdir()
        except OSError as exc:
            raise TargetNotWritableError(f"{self.path}: cannot write: {exc.strerror or exc}") from None
        return upload_id

    def write_part(self, upload_id: str, part: int, offset: int, data: bytes | bytearray) -> PartReceipt:
        partial = self._partial(upload_id)
        if not partial.exists():
            raise UploadGoneError(f"{self.path}: upload {upload_id} does not exist")
        with open(partial, "r+b") as handle:
            handle.seek(offset)
            handle.write(data)
        receipt = PartReceipt(part, len(data))
        (self._receipts(upload_id) / f"{part:05d}.json").write_text(json.dumps(receipt.__dict__))
        return receipt

    def list_parts(self, upload_id: str) -> list[PartReceipt]:
        folder = self._receipts(upload_id)
        if not folder.is_dir():
            raise ObjectNotFoundError(f"{self.path}: upload {upload_id} does not exist")
        return [PartReceipt(**json.loads(p.read_text())) for p in sorted(folder.glob("*.json"))]

    def complete(self, upload_id: str, parts: list[PartReceipt], *, if_match: str | None = None,
                 if_none_match: bool = False) -> str | None:
        partial = self._partial(upload_id)
        if not partial.exists():
            raise ObjectNotFoundError(f"{self.path}: upload {upload_id} does not exist")
        etag = replace_checked(partial, self.path, if_match, if_none_match)
        shutil.rmtree(self._receipts(upload_id), ignore_errors=True)
        return etag

    def abort(self, upload_id: str) -> None:
        self._partial(upload_id).unlink(missing_ok=True)
        shutil.rmtree(self._receipts(upload_id), ignore_errors=True)
