"""Ingest step 2: one row block → one part of the cube object.

A worker reads rows ``[row0, row1)`` of the flux (and uncertainty) image of every FFI with
one byte-range read each, writes them transposed into cube order ``(rows, cols, time,
planes)`` as big-endian float32 straight into the part's buffer, and uploads the part.
Memory is one part plus one row span per concurrent read, independent of the sector's
length beyond the part itself. Re-running a block rewrites the same bytes (idempotent).

For an update the frames already in the base cube come from one range read of the base
version's rows (``If-Match`` its ETag, so a replaced base fails with StaleObjectError
rather than mixing two versions), spread over their new positions on the time axis.
"""
from __future__ import annotations

import numpy as np

from ..errors import NotACubeError, StaleObjectError, StorageError
from ..ffi import PixelRef
from ..ffi_rows import read_pixels
from ..reads import Threads, concurrently, read_range
from ..storage import PartReceipt, ReadStats, get_bytes, open_source, open_upload
from .partition import Block
from .plan import BaseCube, FFIRef, IngestPlan


def _read_base_rows(base: BaseCube, row0: int, row1: int, ncols: int, nplanes: int,
                    stats: ReadStats) -> np.ndarray:
    """Rows ``[row0, row1)`` of the base cube version, shape (rows, ncols, base nt, nplanes)."""
    stride = ncols * base.nt * nplanes * 4
    start, stop = base.data_offset + row0 * stride, base.data_offset + row1 * stride
    source = open_source(base.url, stats, size=base.size, etag=base.etag)
    try:
        if source.etag != base.etag:  # a local base cube replaced since the plan (S3: If-Match)
            raise StaleObjectError(f"{base.url} changed since the update was planned; nothing was written")
        data = read_range(source, start, stop, NotACubeError, f"base cube rows {row0}-{row1}")
    finally:
        getattr(source, "close", lambda: None)()
    return np.frombuffer(data, dtype=">f4").reshape(row1 - row0, ncols, base.nt, nplanes)


def _read_rows(ffi: FFIRef, pixels: PixelRef, row0: int, row1: int, ncols: int, stats: ReadStats) -> np.ndarray:
    """Rows ``[row0, row1)`` of one FFI image (:func:`cubecut.ffi_rows.read_pixels`), shape
    (rows, ncols); on S3 pinned to the planned version (``If-Match`` its ETag)."""
    source = open_source(ffi.url, stats, size=ffi.size, etag=ffi.etag)
    try:
        return read_pixels(source, pixels, ncols, (row0, row1))
    finally:
        getattr(source, "close", lambda: None)()


def sweep(block: int, nblocks: int, nt: int) -> list[int]:
    """The order block ``block`` (0-based, of ``nblocks``) reads the ``nt`` frames in: all of
    them, starting at ``block * nt // nblocks``. Blocks running at once are thus spread
    evenly over the time axis, and so over the FFIs' S3 prefixes (MAST: one per day and
    camera/CCD), instead of all reading the same prefix at the same time."""
    start = block * nt // nblocks
    return [*range(start, nt), *range(start)]


def build_part(plan: IngestPlan, block: Block, *, threads: Threads = "auto",
               stats: ReadStats | None = None) -> bytearray:
    """The bytes of ``block``'s part: [headers] + transposed rows + [padding + table]."""
    stats = stats if stats is not None else ReadStats()
    layout = plan.layout
    head = get_bytes(plan.head_url, stats)[0] if block.head else b""
    tail = get_bytes(plan.tail_url, stats)[0] if block.tail else b""
    # The pixels are placed after the head and the tail is placed from the end: a staged
    # object of the wrong length would shift them and still give a part of the right size.
    if block.head and len(head) != layout.head_bytes:
        raise StorageError(f"{plan.head_url}: {len(head)} bytes, the plan needs {layout.head_bytes}")
    if block.tail and len(tail) != layout.data_padding + layout.table_bytes:
        raise StorageError(f"{plan.tail_url}: {len(tail)} bytes, the plan needs "
                           f"{layout.data_padding + layout.table_bytes}")
    nrows = block.row1 - block.row0
    part = bytearray(block.size)
    part[:len(head)] = head
    if tail:
        part[block.size - len(tail):] = tail
    cube = np.frombuffer(part, dtype=">f4", count=nrows * layout.ncols * layout.nt * layout.nplanes,
                         offset=len(head)).reshape(nrows, layout.ncols, layout.nt, layout.nplanes)

    def fill(job: tuple[int, int]) -> None:
        frame, plane = job
        if frame < 0:
            assert plan.base is not None
            cube[:, :, plan.base.positions] = _read_base_rows(plan.base, block.row0, block.row1, layout.ncols,
                                                               layout.nplanes, stats)
            return
        ffi = plan.ffis[frame]
        assert ffi is not None
        pixels = ffi.flux if plane == 0 else ffi.error
        assert pixels is not None  # planes = 2 only for FFIs with an uncertainty image
        cube[:, :, frame, plane] = _read_rows(ffi, pixels, block.row0, block.row1, layout.ncols, stats)

    jobs = [(-1, 0)] if plan.base else []  # frame -1: the base cube's rows, all planes
    jobs += [(t, k) for t in sweep(block.index, len(plan.blocks), layout.nt) if plan.ffis[t] is not None
             for k in range(layout.nplanes)]
    base_bytes = nrows * layout.ncols * plan.base.nt * layout.nplanes * 4 if plan.base else 0
    concurrently(fill, jobs, threads, max(base_bytes, nrows * layout.ncols * 8))
    return part


def write_block(plan: IngestPlan, block_index: int, *, threads: Threads = "auto",
                stats: ReadStats | None = None) -> PartReceipt:
    """Build block ``block_index`` of ``plan`` and upload it as its part."""
    block = plan.blocks[block_index]
    part = build_part(plan, block, threads=threads, stats=stats)
    return open_upload(plan.cube).write_part(plan.upload_id, block.part, block.offset, part)

