"""Read cutout pixels from a cube by byte range.

In the cube, one FFI row ``y`` is contiguous (columns x frames x planes float32
big-endian; planes = (flux, error), or flux only in 1-plane TICA cubes), so the pixels of
columns ``[x0, x1)`` of that row for all frames are the one byte range
``row_offset(y) + [x0, x1) * nt * nplanes * 4``. A cutout is one such range per row it
needs, all in flight at once (:mod:`cubecut.reads`: the one read policy) through the
cube opened by :func:`open_cube` (on S3 obstore's ranged GETs, each with ``If-Match`` on
the indexed ETag). Several boxes on one cube share their reads: per row, overlapping or
touching column spans are merged so that no byte is fetched twice.

This is the cube pixel reader of every cutout kind (moving targets plan their own ranges
and read them with :func:`read_elements`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from ..cube.index import CubeIndex
from ..errors import NotACubeError
from ..reads import Threads, concurrently, read_range, started
from ..storage import Location, RangeSource, ReadStats, open_pinned
from .geometry import Box

def open_cube(location: Location, index: CubeIndex, stats: ReadStats | None) -> RangeSource:
    """The cube for pixel reads, pinned to the version ``index`` describes
    (:func:`cubecut.storage.open_pinned`): StaleObjectError if its size or ETag no longer
    match ``index`` (on S3: at the first read, every GET carrying ``If-Match``)."""
    return open_pinned(location, stats, size=index.cube_size, etag=index.cube_etag)


@dataclass(frozen=True)
class Span:
    """Columns ``[x0, x1)`` of cube row ``y`` (0-based)."""

    y: int
    x0: int
    x1: int


def read_box(source: RangeSource, index: CubeIndex, box: Box,
             threads: Threads = "auto") -> tuple[np.ndarray, np.ndarray]:
    """Flux and flux error of ``box``, each shaped ``(nt, ny, nx)``, float32, native byte order.

    Pixels of the box outside the image are NaN; a 1-plane (TICA) cube has error 0 on the
    image. One range read per image row in the box.
    """
    return read_boxes(source, index, [box], threads)[0]


def read_boxes(source: RangeSource, index: CubeIndex, boxes: Sequence[Box],
               threads: Threads = "auto") -> list[tuple[np.ndarray, np.ndarray]]:
    """:func:`read_box` for many boxes on one cube, reading bytes they share once.

    Args:
        threads: concurrent range reads (:data:`cubecut.reads.Threads`): ``"auto"`` = all
            at once, ``1`` reads sequentially.
    """
    chunks = read_chunks(source, index, boxes, threads)
    out = []
    for box in boxes:
        flux = np.empty((index.nt, box.ny, box.nx), dtype=np.float32)
        flux_err = np.empty_like(flux)
        fill_box(index, box, chunks, flux, flux_err)
        out.append((flux, flux_err))
    return out


#: The bytes read for some boxes: per cube row, its spans and their big-endian values.
Chunks = dict[int, list[tuple[Span, np.ndarray]]]


def read_chunks(source: RangeSource, index: CubeIndex, boxes: Sequence[Box], threads: Threads = "auto") -> Chunks:
    """Read the cube rows ``boxes`` need (one range per row span, shared spans merged),
    all in flight at once for ``threads="auto"``; :func:`fill_box` lays them out."""
    return start_chunks(source, index, boxes, threads)()


def start_chunks(source: RangeSource, index: CubeIndex, boxes: Sequence[Box], threads: Threads = "auto",
                 arrived: Callable[[Span, np.ndarray], None] | None = None) -> Callable[[], Chunks]:
    """:func:`read_chunks`, started: the reads are in flight when this returns; the
    returned function waits for them and gives the chunks (raising what a read raised),
    so a cutout lays out its files while its rows cross the network.

    ``arrived(span, chunk)``, when given, is called with each span's chunk as soon as it
    is read (on the reading thread, concurrently for different spans), e.g. to lay the
    pixels out while other rows are still on their way. It then owns the chunks: they are
    not kept here (the returned function gives an empty mapping), so a row can be freed
    as soon as it has been used.
    """
    spans = merged_spans(index, boxes)

    def read(i: int) -> np.ndarray | None:
        span = spans[i]
        start, stop = span_bytes(index, span)
        data = read_range(source, start, stop, NotACubeError, "cube rows")
        chunk = np.frombuffer(data, dtype=">f4").reshape(span.x1 - span.x0, index.nt, index.nplanes)
        if arrived is None:
            return chunk
        arrived(span, chunk)
        return None

    largest = max((span.x1 - span.x0 for span in spans), default=0) * index.nt * index.nplanes * 4
    pending = started(read, range(len(spans)), threads, largest)

    def chunks() -> Chunks:
        out: Chunks = {}
        for span, chunk in zip(spans, pending()):
            if chunk is not None:
                out.setdefault(span.y, []).append((span, chunk))
        return out

    return chunks


def fill_box(index: CubeIndex, box: Box, chunks: Chunks, flux: np.ndarray, flux_err: np.ndarray) -> None:
    """Write ``box``'s pixels from ``chunks`` into ``flux``/``flux_err``: ``(nt, ny, nx)``
    float32 arrays of either byte order, any strides (e.g. a FITS table's columns, so the
    values go from the cube's big-endian bytes to the file's without a byte swap).

    Pixels off the image get NaN; a 1-plane (TICA) cube's errors are 0 on the image.
    """
    part = fill_off_image(index, box, flux, flux_err)
    if part is None:
        return
    for y in range(part.y0, part.y1):
        span, chunk = next((s, c) for s, c in chunks[y] if s.x0 <= part.x0 and part.x1 <= s.x1)
        fill_row(index, box, span, chunk, flux, flux_err)


def fill_off_image(index: CubeIndex, box: Box, flux: np.ndarray, flux_err: np.ndarray) -> Box | None:
    """:func:`fill_box` for the pixels off the image (NaN); returns the box's part on the
    image (None if none), whose rows :func:`fill_row` fills."""
    part = box.overlap(index.ncols, index.nrows)
    if part is None or (part.nx, part.ny) != (box.nx, box.ny):
        flux[...] = np.nan
        flux_err[...] = np.nan
    return part


def fill_row(index: CubeIndex, box: Box, span: Span, chunk: np.ndarray, flux: np.ndarray,
             flux_err: np.ndarray) -> None:
    """:func:`fill_box` for cube row ``span.y`` of ``box``, from the chunk of a span that
    covers the box's on-image columns of that row."""
    part = box.overlap(index.ncols, index.nrows)
    if part is None or not part.y0 <= span.y < part.y1 or not span.x0 <= part.x0 <= part.x1 <= span.x1:
        raise ValueError(f"span {span} does not cover row {span.y} of {box}")
    values = chunk[part.x0 - span.x0:part.x1 - span.x0]  # (columns, nt, nplanes)
    row = span.y - box.y0
    cols = slice(part.x0 - box.x0, part.x1 - box.x0)
    flux[:, row, cols] = values[:, :, 0].T
    flux_err[:, row, cols] = values[:, :, 1].T if index.nplanes > 1 else 0.0


def merged_spans(index: CubeIndex, boxes: Sequence[Box]) -> list[Span]:
    """Per cube row, the union of the boxes' on-image column ranges as disjoint spans."""
    ranges: dict[int, list[tuple[int, int]]] = {}
    for box in boxes:
        part = box.overlap(index.ncols, index.nrows)
        if part is None:
            continue
        for y in range(part.y0, part.y1):
            ranges.setdefault(y, []).append((part.x0, part.x1))
    spans = []
    for y in sorted(ranges):
        (start, stop), *rest = sorted(ranges[y])
        for x0, x1 in rest:
            if x0 <= stop:
                stop = max(stop, x1)
                continue
            spans.append(Span(y, start, stop))
            start, stop = x0, x1
        spans.append(Span(y, start, stop))
    return spans


def span_bytes(index: CubeIndex, span: Span) -> tuple[int, int]:
    """The cube's byte range ``[start, stop)`` holding ``span`` (all frames and planes)."""
    per_column = index.nt * index.nplanes * 4
    start = index.row_offset(span.y) + span.x0 * per_column
    return start, start + (span.x1 - span.x0) * per_column


def read_elements(source: RangeSource, index: CubeIndex, ranges: Sequence[tuple[int, int]],
                  consume: Callable[[int, np.ndarray], None], threads: Threads = "auto") -> None:
    """Read elements ``[start, stop)`` of the cube's image data per ``ranges`` (element =
    one pixel in one frame, ``(row * ncols + col) * nt + frame``), all at once for
    ``"auto"``; ``consume(i, values)`` gets range ``i``'s big-endian float32 values
    shaped ``(stop - start, nplanes)`` as soon as they arrive (so memory is one range per
    concurrent read)."""
    width = index.nplanes * 4

    def fetch(i: int) -> None:
        start, stop = (index.data_offset + e * width for e in ranges[i])
        data = read_range(source, start, stop, NotACubeError, "cube elements")
        consume(i, np.frombuffer(data, dtype=">f4").reshape(-1, index.nplanes))

    largest = max((stop - start for start, stop in ranges), default=0) * width
    concurrently(fetch, range(len(ranges)), threads, largest)
