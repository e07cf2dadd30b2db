"""Writing local files: whole and atomically (temp + rename), conditionally (a version
check under a folder lock), and bulk outputs with ``O_DIRECT``.

Files are only ever replaced by renaming a complete new file over them (written under a
hidden temporary name beside it, ``.{name}.{pid}.{thread}.tmp``, which no ``.fits``/``.tar``
listing matches), so a reader never sees a partial file, a run killed mid-write never
leaves a file that a resumed run would count as done, and a new version has a new inode
and mtime: :func:`file_etag` is a local file's ETag. Files are not fsynced.

``O_DIRECT`` (:func:`write_file`): no page-cache pages to allocate per file. A bulk
worker writes thousands of fresh 2.5 MB files. Through the page cache each costs the
kernel the allocation of its pages, milliseconds of system CPU per TPF; written with
``O_DIRECT`` from an aligned buffer it costs a fraction of that (both measured per TPF in
benchmarks/results/bulk.json). :func:`write_file` copies the data
into a page-aligned buffer (an anonymous ``mmap``, one per thread, reused), writes it in
aligned pieces of at most :data:`PIECE` bytes, the last one zero-padded to :data:`ALIGN`,
then truncates the file to the data's true length: the file holds exactly the data's bytes.
Where ``O_DIRECT`` is refused (no ``os.O_DIRECT`` on this OS, a filesystem that rejects
the flag or the alignment with ``EINVAL``/``EOPNOTSUPP``), the file is written buffered
(:func:`replace_file`), and that directory is not tried with ``O_DIRECT`` again by this
process.
"""
from __future__ import annotations

import errno
import fcntl
import mmap
import os
import threading
from pathlib import Path

from ..errors import ConcurrentWriteError, TargetNotWritableError

#: Offset, length and address alignment of the direct writes, bytes (a multiple of every
#: Linux logical block size in use, and of the page size).
ALIGN = max(4096, mmap.PAGESIZE)
#: Bytes copied and written at a time (the per-thread buffer's size): a whole 11x11 TPF of
#: a 1,300-frame cube (3.3 MB) in one write; a tar shard in several.
PIECE = 4 << 20
_REFUSED = (errno.EINVAL, errno.EOPNOTSUPP)

_buffers = threading.local()
_refused_dirs: set[str] = set()


def file_etag(st: os.stat_result) -> str:
    """A local file's version tag, the counterpart of an S3 ETag: inode, mtime (ns), size."""
    return f"{st.st_ino:x}-{st.st_mtime_ns:x}-{st.st_size:x}"


def replace_checked(new: Path, path: Path, if_match: str | None, if_none_match: bool) -> str:
    """Rename ``new`` over ``path``; the new :func:`file_etag`. ConcurrentWriteError, and
    nothing renamed, unless ``path`` is the version ``if_match`` (a :func:`file_etag`; None:
    any) and, with ``if_none_match``, absent.

    Checked and renamed holding a ``flock`` on the folder (across processes; no lock file is
    left behind; released when the holder exits or dies): conditional writes in one folder
    take turns.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            current: str | None = file_etag(path.stat())
        except (FileNotFoundError, NotADirectoryError):
            current = None
        if if_none_match and current is not None:
            raise ConcurrentWriteError(f"{path}: exists already (another writer got there first)")
        if if_match is not None and current != if_match:
            raise ConcurrentWriteError(f"{path}: is no longer the version {if_match} (now {current})")
        os.replace(new, path)
        return file_etag(path.stat())
    finally:
        os.close(fd)


def writable_folder(folder: str | os.PathLike[str]) -> Path:
    """A local folder, created if need be, that this process may write files into;
    TargetNotWritableError (one line, the OS's reason) if it cannot be."""
    path = Path(folder)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TargetNotWritableError(f"{path}: cannot create the folder: {exc.strerror or exc}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise TargetNotWritableError(f"{path}: the folder is not writable")
    return path


def temporary_beside(path: Path) -> Path:
    """A hidden temporary name in ``path``'s folder (created if need be) for this process
    and thread, renamed over ``path`` when the write is complete; no ``.fits``/``.tar``
    listing matches it."""
    writable_folder(path.parent)
    return path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")


def replace_file(path: Path, data: bytes | bytearray, *, if_match: str | None = None,
                 if_none_match: bool = False) -> str:
    """Write ``data`` as the whole file ``path`` (parents made), atomically, buffered; its
    :func:`file_etag`. ``if_match`` (a :func:`file_etag`) / ``if_none_match`` make the write
    conditional: ConcurrentWriteError, and nothing written, when ``path`` is not that
    version (or exists). TargetNotWritableError (one line) when it cannot be written."""
    tmp = temporary_beside(path)
    try:
        tmp.write_bytes(data)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise TargetNotWritableError(f"{path}: cannot write it: {exc.strerror or exc}") from None
    if if_match is None and not if_none_match:
        os.replace(tmp, path)
        return file_etag(path.stat())
    try:
        return replace_checked(tmp, path, if_match, if_none_match)
    finally:
        tmp.unlink(missing_ok=True)


def write_file(path: str | os.PathLike[str], data: bytes | bytearray | memoryview) -> bool:
    """Write ``data`` as the whole file ``path`` (parents made), atomically (temp + rename).

    Returns True when it went to disk with ``O_DIRECT``, False when written buffered
    because ``O_DIRECT`` was refused there.
    """
    target = Path(path)
    folder = str(target.parent)
    target.parent.mkdir(parents=True, exist_ok=True)
    flag = getattr(os, "O_DIRECT", 0)
    if flag and folder not in _refused_dirs:
        tmp = temporary_beside(target)
        try:
            _write_direct(tmp, memoryview(data).cast("B"), flag)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            if exc.errno not in _REFUSED:
                raise
            _refused_dirs.add(folder)
        else:
            os.replace(tmp, target)
            return True
    replace_file(target, bytes(data) if isinstance(data, memoryview) else data)
    return False


def _write_direct(path: Path, data: memoryview, flag: int) -> None:
    buffer = _buffer()
    view = memoryview(buffer)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | flag, 0o644)
    try:
        for start in range(0, max(1, len(data)), PIECE):
            piece = data[start:start + PIECE]
            view[:len(piece)] = piece
            length = -(-len(piece) // ALIGN) * ALIGN
            view[len(piece):length] = bytes(length - len(piece))
            written = 0
            while written < length:  # a short write leaves an aligned offset or fails with EINVAL
                done = os.write(fd, view[written:length])
                if done <= 0:
                    raise OSError(errno.EIO, f"{path}: short write")
                written += done
        os.ftruncate(fd, len(data))
    finally:
        view.release()
        os.close(fd)


def _buffer() -> mmap.mmap:
    """This thread's page-aligned buffer of :data:`PIECE` bytes."""
    buffer = getattr(_buffers, "buffer", None)
    if buffer is None or len(buffer) != PIECE:
        buffer = _buffers.buffer = mmap.mmap(-1, PIECE)
    return buffer
