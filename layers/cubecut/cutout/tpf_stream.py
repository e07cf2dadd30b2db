"""Streamed TPFs: a cutout's target pixel file written to a file object as it is built,
never whole in memory.

A TPF is ~20 bytes per pixel-frame (RAW_CNTS and four float32 image columns), the cube
box it is cut from 8 (flux and error): a 100x100 cutout of a 200-second sector (11,700
frames) is a 2.3 GB file from a 0.94 GB box. :func:`read_planes` reads the box into
memory as the cube stores it (big-endian, per pixel all frames, flux and error), a few
rows in flight at once (:data:`READ_BYTES_IN_FLIGHT`). :class:`StreamedTPF` then writes
the file front to back: the FITS checksum of the PIXELS table is known before any row is
written (the sum of the box's words plus the cube-wide columns' sums,
:meth:`.tpf.TPFLayout.table_datasum`), so the headers go first, then the table in chunks
of frames (:data:`CHUNK_BYTES`, laid out from the template and the box), then APERTURE.
The bytes are exactly :func:`.tpf.tpf_bytes`'s for the same cutout and timestamp.
Memory: the box (8 bytes per pixel-frame) and one chunk.
"""
from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from typing import Protocol

import numpy as np
from astropy.coordinates import SkyCoord

from .. import fitswrite
from ..cube.index import CubeIndex
from ..fitsio import padded
from ..storage import RangeSource
from .geometry import Box
from .reader import Span, span_bytes, start_chunks
from .tpf import TPFLayout, tpf_layout

#: Bytes of PIXELS rows laid out and written at once (at least one frame's row).
CHUNK_BYTES = 2**20
#: Bytes of cube rows being read at once into a box (fewer concurrent reads when rows are larger).
READ_BYTES_IN_FLIGHT = 64 * 2**20


class Sink(Protocol):
    """Where a streamed TPF goes: any binary file object open for writing."""

    def write(self, data: memoryview, /) -> int: ...


def read_planes(source: RangeSource, index: CubeIndex, box: Box) -> np.ndarray:
    """The pixels of ``box`` (0-based FFI pixels), ``(ny, nx, nt, 2)`` big-endian float32:
    per pixel, every frame's flux (``[..., 0]``) and error (``[..., 1]``), as the cube
    stores them; NaN off the image, error 0 for a 1-plane (TICA) cube. One range read per
    image row of the box, at most :data:`READ_BYTES_IN_FLIGHT` of them at once."""
    planes = np.empty((box.ny, box.nx, index.nt, 2), dtype=">f4")
    part = box.overlap(index.ncols, index.nrows)
    if part != box:
        planes[...] = np.nan
    if part is None:
        return planes
    cols = slice(part.x0 - box.x0, part.x1 - box.x0)

    def arrived(span: Span, chunk: np.ndarray) -> None:
        values = chunk[part.x0 - span.x0:part.x1 - span.x0]  # (columns, nt, nplanes)
        row = planes[span.y - box.y0, cols]
        row[..., :index.nplanes] = values
        if index.nplanes == 1:
            row[..., 1] = 0.0

    start, stop = span_bytes(index, Span(part.y0, part.x0, part.x1))
    threads = max(1, READ_BYTES_IN_FLIGHT // (stop - start))
    start_chunks(source, index, [box], threads, arrived)()
    return planes


class StreamedTPF:
    """The TPF of one cutout whose pixels are in memory as :func:`read_planes` gives them,
    written front to back by :meth:`write_to` (the file of :func:`.tpf.tpf_bytes` for the
    same cutout and ``timestamp``; default: now, as astropy writes it).

    Args:
        index: the cube's index.
        box: the cutout box (0-based FFI pixels; may extend off the image).
        planes: the box's pixels, ``(ny, nx, nt, 2)`` big-endian float32 (:func:`read_planes`).
        coord: the requested target position (written as RA_OBJ/DEC_OBJ).
    """

    def __init__(self, index: CubeIndex, box: Box, planes: np.ndarray, coord: SkyCoord, *,
                 timestamp: str | None = None) -> None:
        if planes.shape != (box.ny, box.nx, index.nt, 2) or planes.dtype != np.dtype(">f4"):
            raise ValueError(f"planes of {box} must be ({box.ny}, {box.nx}, {index.nt}, 2) >f4, got "
                             f"{planes.shape} {planes.dtype}")
        self.layout: TPFLayout = tpf_layout(index, box, coord)
        self._planes = planes
        self._when = timestamp or fitswrite.checksum_timestamp()
        self._lock = threading.Lock()

    @property
    def size(self) -> int:
        """Bytes of the file."""
        return self.layout.size

    def write_to(self, out: Sink) -> int:
        """Write the file to ``out`` (headers, the PIXELS table chunk by chunk, APERTURE);
        returns the bytes written (:attr:`size`)."""
        with self._lock:  # one writer at a time: the chunk buffer is reused
            layout, written = self.layout, 0
            pieces = itertools.chain([self._primary(), self._pixels_header()], self._rows(), [self._aperture()])
            for piece in pieces:  # each chunk of rows is written before the next is laid out in its buffer
                out.write(piece)
                written += piece.nbytes
            assert written == layout.size
            return written

    def _primary(self) -> memoryview:
        buf = bytearray(self.layout.header_bytes[0])
        self.layout.write_hdu(buf, 0, 0, self._when)
        return memoryview(buf)

    def _pixels_header(self) -> memoryview:
        layout = self.layout
        if layout.sums_by_parts:
            datasum = layout.table_datasum(int(self._planes.view(">u4").sum(dtype=np.uint64)))
        else:  # the table's words summed from its chunks: one pass more
            datasum = fitswrite.fold(sum(int(np.frombuffer(chunk, ">u4").sum(dtype=np.uint64))
                                         for chunk in self._rows(padding=False)))
        buf = bytearray(layout.header_bytes[1])
        layout.write_hdu(buf, 1, 0, self._when, datasum)
        return memoryview(buf)

    def _rows(self, padding: bool = True) -> Iterator[memoryview]:
        """The PIXELS table's bytes in chunks of frames, then (``padding``) its padding; each
        chunk is a view of one buffer, laid out again for the next chunk."""
        layout, planes = self.layout, self._planes
        nt = layout.index.nt
        step = max(1, CHUNK_BYTES // layout.rows.itemsize)
        chunk = np.zeros(min(step, nt), dtype=layout.rows)
        for start in range(0, nt, step):
            rows = chunk[:min(step, nt - start)]
            layout.fill_constant_columns(rows, start)
            frames = slice(start, start + len(rows))
            rows["FLUX"] = planes[:, :, frames, 0].transpose(2, 0, 1)
            rows["FLUX_ERR"] = planes[:, :, frames, 1].transpose(2, 0, 1)
            yield memoryview(rows.view(np.uint8))
        if padding:
            yield memoryview(bytes(padded(layout.data_bytes[1]) - layout.data_bytes[1]))

    def _aperture(self) -> memoryview:
        buf = bytearray(self.layout.offsets[3] - self.layout.offsets[2])
        self.layout.write_aperture(buf, 0, self._when)
        return memoryview(buf)
