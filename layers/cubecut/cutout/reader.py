"""Read cutout pixels from a cube by byte range.

In the cube, one FFI row ``y`` is contiguous (columns x frames x planes float32
big-endian; planes = (flux, error), or flux only in 1-plane TICA cubes), so the pixels of
columns ``[x0, x1)`` of that row for all frames are the one byte range
``row_offset(y) + [x0, x1) * nt * nplanes * 4``. A cutout is one such range per row it
needs, fetched concurrently through the source (for S3: one pooled, thread-safe boto3
client). Several boxes on one cube share their reads: per row, overlapping or touching
column spans are merged so that no byte is fetched twice.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np

from ..cube.index import CubeIndex
from ..errors import InputError, NotACubeError
from ..storage import MAX_POOL_CONNECTIONS, ByteSource
from .geometry import Box

#: Upper bound of concurrent range reads per call for ``threads="auto"``: one S3 client's
#: connection pool, so a cutout of up to this many rows is one round trip.
MAX_THREADS = MAX_POOL_CONNECTIONS

Threads = int | Literal["auto"]


@dataclass(frozen=True)
class _Span:
    """Columns ``[x0, x1)`` of cube row ``y`` (0-based)."""

    y: int
    x0: int
    x1: int


def read_box(source: ByteSource, index: CubeIndex, box: Box,
             threads: Threads = "auto") -> tuple[np.ndarray, np.ndarray]:
    """Flux and flux error of ``box``, each shaped ``(nt, ny, nx)``, float32, native byte order.

    Pixels of the box outside the image are NaN; a 1-plane (TICA) cube has error 0 on the
    image. One range read per image row in the box.
    """
    return read_boxes(source, index, [box], threads)[0]


def read_boxes(source: ByteSource, index: CubeIndex, boxes: Sequence[Box],
               threads: Threads = "auto") -> list[tuple[np.ndarray, np.ndarray]]:
    """:func:`read_box` for many boxes on one cube, reading bytes they share once.

    Args:
        threads: concurrent range reads; ``"auto"`` = one per read, at most ``MAX_THREADS``
            (the work is waiting on I/O), ``1`` reads sequentially.
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
Chunks = dict[int, list[tuple["_Span", np.ndarray]]]


def read_chunks(source: ByteSource, index: CubeIndex, boxes: Sequence[Box], threads: Threads = "auto") -> Chunks:
    """Read the cube rows ``boxes`` need (one range per row span, shared spans merged),
    all in flight at once for ``threads="auto"``; :func:`fill_box` lays them out."""
    spans = merged_spans(index, boxes)
    workers = _workers(threads, len(spans))
    if workers == 1:
        values = [_read_span(source, index, span) for span in spans]
    else:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cubecut-read") as pool:
            values = list(pool.map(lambda span: _read_span(source, index, span), spans))
    chunks: Chunks = {}
    for span, chunk in zip(spans, values):
        chunks.setdefault(span.y, []).append((span, chunk))
    return chunks


def fill_box(index: CubeIndex, box: Box, chunks: Chunks, flux: np.ndarray, flux_err: np.ndarray) -> None:
    """Write ``box``'s pixels from ``chunks`` into ``flux``/``flux_err``: ``(nt, ny, nx)``
    float32 arrays of either byte order, any strides (e.g. a FITS table's columns, so the
    values go from the cube's big-endian bytes to the file's without a byte swap).

    Pixels off the image get NaN; a 1-plane (TICA) cube's errors are 0 on the image.
    """
    part = box.overlap(index.ncols, index.nrows)
    if part is None or (part.nx, part.ny) != (box.nx, box.ny):
        flux[...] = np.nan
        flux_err[...] = np.nan
    if part is None:
        return
    for y in range(part.y0, part.y1):
        span, chunk = next((s, c) for s, c in chunks[y] if s.x0 <= part.x0 and part.x1 <= s.x1)
        values = chunk[part.x0 - span.x0:part.x1 - span.x0]  # (columns, nt, nplanes)
        row = y - box.y0
        cols = slice(part.x0 - box.x0, part.x1 - box.x0)
        flux[:, row, cols] = values[:, :, 0].T
        flux_err[:, row, cols] = values[:, :, 1].T if index.nplanes > 1 else 0.0


def _workers(threads: Threads, nreads: int) -> int:
    if threads == "auto":
        # Row reads wait on the network, not the CPU: one thread per read up to the cap,
        # whatever the CPU count, so a 30-row cutout is one round trip (measured: -17% on
        # 2 CPUs against 8 x CPUs threads).
        return max(1, min(MAX_THREADS, nreads))
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise InputError(f"threads must be a positive integer or 'auto', got {threads!r}")
    return max(1, min(threads, nreads))


def merged_spans(index: CubeIndex, boxes: Sequence[Box]) -> list[_Span]:
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
        start, stop = None, None
        for x0, x1 in sorted(ranges[y]):
            if start is not None and x0 <= stop:
                stop = max(stop, x1)
                continue
            if start is not None:
                spans.append(_Span(y, start, stop))
            start, stop = x0, x1
        spans.append(_Span(y, start, stop))
    return spans


def span_bytes(index: CubeIndex, span: _Span) -> tuple[int, int]:
    """The cube's byte range ``[start, stop)`` holding ``span`` (all frames and planes)."""
    per_column = index.nt * index.nplanes * 4
    start = index.row_offset(span.y) + span.x0 * per_column
    return start, start + (span.x1 - span.x0) * per_column


def _read_span(source: ByteSource, index: CubeIndex, span: _Span) -> np.ndarray:
    """The span's values as a big-endian float32 array shaped ``(x1 - x0, nt, nplanes)``."""
    start, stop = span_bytes(index, span)
    data = source.read(start, stop)
    if len(data) != stop - start:
        raise NotACubeError(f"{source.location.url}: truncated: bytes [{start}, {stop}) of row "
                            f"{span.y} returned {len(data)} bytes")
    return np.frombuffer(data, dtype=">f4").reshape(span.x1 - span.x0, index.nt, index.nplanes)
