"""Read a moving box — a different box in every frame — from a cube by byte range.

In the cube, value ``(row y, col x, frame t)`` sits at element ``(y * ncols + x) * nt + t``
(times ``nplanes`` float32): for one pixel all frames are contiguous, then the next
column, then the next row. A moving cutout needs, in frame ``t``, only the pixels of that
frame's box. Sorted by element, those cells form runs (one per pixel and stretch of
consecutive frames it is needed in). Runs closer than ``merge_gap`` bytes are read as one
range — fetching a few unneeded bytes is cheaper than another request — and no range
grows beyond ``max_read`` bytes. For TESS sectors (~1,000-12,000 frames) the gap from one
column's needed frames to the next column's is tens of kB, the gap to the next row tens
of MB, so this reads **one range per cube row per stretch of frames that needs the row**
(a row's columns ``[x0, x1)`` for the frames ``[t0, t1)`` whose boxes cover it), and
nothing of the rows and frames the path does not touch.

The ranges are read by the cube pixel reader (:func:`cubecut.cutout.reader.read_elements`:
the read policy of every cutout, all in flight at once) and each is consumed as soon as
it arrives (its values are scattered into the output), so memory is the output plus one
range per concurrent read.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..cube.index import CubeIndex
from ..cutout.reader import read_elements
from ..errors import InputError
from ..reads import Threads
from ..storage import RangeSource

#: Unneeded bytes worth reading to save one request (a request to S3 costs about as long
#: as transferring a MiB on one connection).
MERGE_GAP_BYTES = 1024 * 1024
#: Largest single range read (with :data:`cubecut.reads.BYTES_IN_FLIGHT`, bounds the
#: memory of concurrent reads).
MAX_READ_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class ReadRange:
    """Elements ``[start, stop)`` of the cube's image data (element = one pixel in one
    frame, ``nplanes`` float32 values) and the output cells they fill: ``cells`` are
    indices into the flat ``(nframes, ny, nx)`` output, ``elements`` their element
    numbers (sorted)."""

    start: int
    stop: int
    cells: np.ndarray
    elements: np.ndarray


def plan_reads(index: CubeIndex, frames: np.ndarray, x0: np.ndarray, y0: np.ndarray, nx: int, ny: int, *,
               merge_gap: int = MERGE_GAP_BYTES, max_read: int = MAX_READ_BYTES) -> list[ReadRange]:
    """The range reads that fetch boxes ``[x0[i], x0[i] + nx) x [y0[i], y0[i] + ny)``
    (0-based FFI pixels, may extend off the image) of cube frames ``frames[i]``.

    ``frames`` must be distinct. Off-image cells are not read.
    """
    frames, x0, y0 = (np.asarray(a, dtype=np.int64) for a in (frames, x0, y0))
    if len(np.unique(frames)) != len(frames):
        raise InputError("a moving cutout reads each frame once")
    n = len(frames)
    i = np.repeat(np.arange(n), ny * nx)
    r = np.tile(np.repeat(np.arange(ny), nx), n)
    c = np.tile(np.arange(nx), n * ny)
    y, x = y0[i] + r, x0[i] + c
    on = (y >= 0) & (y < index.nrows) & (x >= 0) & (x < index.ncols)
    cells = np.flatnonzero(on)
    elements = (y[on] * index.ncols + x[on]) * index.nt + frames[i[on]]
    order = np.argsort(elements, kind="stable")
    cells, elements = cells[order], elements[order]
    if not len(elements):
        return []

    element_bytes = index.nplanes * 4
    breaks = np.flatnonzero(np.diff(elements) != 1) + 1
    run_starts = np.concatenate([[0], breaks])
    run_stops = np.concatenate([breaks, [len(elements)]])
    ranges: list[ReadRange] = []
    first = 0  # run index where the current range begins
    for k in range(1, len(run_starts) + 1):
        if k < len(run_starts):
            gap = (elements[run_starts[k]] - elements[run_stops[k - 1] - 1] - 1) * element_bytes
            size = (elements[run_stops[k] - 1] + 1 - elements[run_starts[first]]) * element_bytes
            if gap <= merge_gap and size <= max_read:
                continue
        lo, hi = run_starts[first], run_stops[k - 1]
        ranges.append(ReadRange(int(elements[lo]), int(elements[hi - 1]) + 1, cells[lo:hi], elements[lo:hi]))
        first = k
    return ranges


def read_moving_box(source: RangeSource, index: CubeIndex, frames: np.ndarray, x0: np.ndarray, y0: np.ndarray,
                    nx: int, ny: int, *, merge_gap: int = MERGE_GAP_BYTES, max_read: int = MAX_READ_BYTES,
                    threads: Threads = "auto") -> tuple[np.ndarray, np.ndarray]:
    """Flux and flux error of the moving box, each ``(len(frames), ny, nx)`` float32.

    Row ``i`` of the output is cube frame ``frames[i]`` cut at ``(x0[i], y0[i])``. Pixels
    off the image are NaN; a 1-plane (TICA) cube has error 0 on the image.
    """
    ranges = plan_reads(index, frames, x0, y0, nx, ny, merge_gap=merge_gap, max_read=max_read)
    flux = np.full(len(frames) * ny * nx, np.nan, dtype=np.float32)
    flux_err = np.full_like(flux, np.nan)

    def scatter(i: int, values: np.ndarray) -> None:
        job = ranges[i]
        values = values[job.elements - job.start]
        flux[job.cells] = values[:, 0]
        flux_err[job.cells] = values[:, 1] if index.nplanes > 1 else 0.0

    read_elements(source, index, [(job.start, job.stop) for job in ranges], scatter, threads)
    shape = (len(frames), ny, nx)
    return flux.reshape(shape), flux_err.reshape(shape)
