"""Bulk outputs to local disk with ``O_DIRECT``: no page-cache pages to allocate per file.

A bulk worker writes thousands of fresh 2.5 MB files. Through the page cache each costs
the kernel the allocation of its pages (5 to 8 ms of system CPU per TPF measured on the
benchmark machine), which is most of a TPF's cost; written with ``O_DIRECT`` from an
aligned buffer it costs a few hundred microseconds. :func:`write_file` copies the data
into a page-aligned buffer (an anonymous ``mmap``, one per thread, reused), writes it in
aligned pieces of at most :data:`PIECE` bytes, the last one zero-padded to :data:`ALIGN`,
then truncates the file to the data's true length: the file holds exactly the data's bytes.

A file is written under a temporary name beside it (``.{name}.{pid}.{thread}.tmp``,
which no ``.fits``/``.tar`` listing matches) and renamed when complete, so a run killed
mid-write never leaves a file that a resumed run would count as done; the next write of
the same file replaces it.

Where ``O_DIRECT`` is refused (no ``os.O_DIRECT`` on this OS, a filesystem that rejects
the flag or the alignment with ``EINVAL``/``EOPNOTSUPP``), the file is written with
:func:`cubecut.storage.put_bytes` (buffered, temp file + rename), and that directory is
not tried with ``O_DIRECT`` again by this process. Files are not fsynced (neither are
``put_bytes``'s).
"""
from __future__ import annotations

import errno
import mmap
import os
import threading
from pathlib import Path

from ..storage import Location, put_bytes, writable
from ..storage_obstore import put_object

#: Offset, length and address alignment of the direct writes, bytes (a multiple of every
#: Linux logical block size in use, and of the page size).
ALIGN = max(4096, mmap.PAGESIZE)
#: Bytes copied and written at a time (the per-thread buffer's size): a whole 11x11 TPF of
#: a 1,300-frame cube (3.3 MB) in one write; a tar shard in several.
PIECE = 4 << 20
_REFUSED = (errno.EINVAL, errno.EOPNOTSUPP)

_buffers = threading.local()
_refused_dirs: set[str] = set()


def put_output(url: str, data: bytes | bytearray, content_type: str = "application/octet-stream") -> None:
    """Write a bulk output: with :func:`write_file` to a local path, to S3 in one PUT
    through obstore (:func:`cubecut.storage_obstore.put_object`)."""
    location = writable(Location.parse(url))
    if location.is_local:
        write_file(location.key, data)
    else:
        put_object(location, data, content_type)


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
        tmp = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
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
    put_bytes(str(target), bytes(data) if isinstance(data, memoryview) else data)
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
