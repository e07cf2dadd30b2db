"""The fast TPF writers: a cutout's target pixel file as the bytes of its FITS file, or
written to a file object as it is built.

:func:`tpf_bytes` writes, byte for byte, what astropy's ``writeto(checksum=True)`` gives
for :func:`.tpf_reference.reference_tpf`'s HDUList (the definition of the content, and
the readable second writer the tests compare this one with), in milliseconds: the cards
every cutout of a cube shares come from the cube's template (:mod:`.tpf_template`), only
the target's cards (position, box size, WCS) are rendered per cutout, the pixels are
written big-endian into their final place, and the checksums are vectorised
(:mod:`cubecut.fitswrite`). :class:`TPFDraft` is the file laid out but for its pixels; it
owns the file's checksum arithmetic (:func:`.engine.start_tpfs` fills drafts row by row).

Streamed TPFs are never whole in memory. A TPF is ~20 bytes per pixel-frame (RAW_CNTS and
four float32 image columns), the cube box it is cut from 8 (flux and error): a 100x100
cutout of a 200-second sector (11,700 frames) is a 2.3 GB file from a 0.94 GB box.
:class:`StreamedTPF` writes the file front to back from the box in memory
(:func:`read_planes`): the FITS checksum of the PIXELS table is known before any row is
written (the sum of the box's words plus the cube-wide columns' sums,
:meth:`TPFLayout.table_datasum`), so the headers go first, then the table in chunks of
frames (:data:`CHUNK_BYTES`), then APERTURE. Memory: the box and one chunk.
"""
from __future__ import annotations

import io
import itertools
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Protocol

import numpy as np
from astropy.coordinates import SkyCoord
from astropy.io import fits

from .. import fitswrite
from ..cube.index import CubeIndex
from ..fitsio import CARD, padded
from ..storage import RangeSource
from .geometry import Box, cutout_wcs, ffi_wcs, fit_linear_wcs
from .reader import Span, fill_off_image, fill_row, span_bytes, start_chunks
from .tpf_reference import check_shapes, row_dtype, target_values
from .tpf_template import Template, template_for


def tpf_filename(cube_name: str, ra: float, dec: float, nx: int | str, ny: int | str) -> str:
    """astrocut's TPF name: ``{cube stem}_{ra:.7f}_{dec:.7f}_{nx}-x-{ny}_astrocut.fits``.

    ``cube_name`` may be a file name, path or URL; ``.fits`` and a trailing ``-cube`` are
    dropped from it. ``ra``/``dec`` are ICRS degrees; ``nx``/``ny`` are the requested x
    (column) and y (row) sizes as astrocut prints them (see ``geometry.size_label``).
    """
    stem = PurePosixPath(cube_name).name.removesuffix(".fits").removesuffix("-cube")
    return f"{stem}_{ra:.7f}_{dec:.7f}_{nx}-x-{ny}_astrocut.fits"


def build_tpf(index: CubeIndex, box: Box, flux: np.ndarray, flux_err: np.ndarray, coord: SkyCoord,
              *, cube_name: str) -> fits.HDUList:
    """The TPF of one cutout, as an HDUList read lazily from the file :func:`tpf_bytes` writes.

    Args:
        index: the cube's index.
        box: the cutout box (0-based FFI pixels; may extend off the image).
        flux, flux_err: ``(nt, ny, nx)`` arrays from :func:`.reader.read_box` (NaN off-image).
        coord: the requested target position (written as RA_OBJ/DEC_OBJ).
        cube_name: the cube's file name (for messages).
    """
    check_shapes(index, box, flux, flux_err, cube_name)

    def fill(flux_out: np.ndarray, flux_err_out: np.ndarray) -> None:
        flux_out[...] = flux
        flux_err_out[...] = flux_err

    return fits.open(io.BytesIO(tpf_bytes(index, box, fill, coord)))


def tpf_bytes(index: CubeIndex, box: Box, fill: Callable[[np.ndarray, np.ndarray], None], coord: SkyCoord,
              *, timestamp: str | None = None, allocate: Callable[[int], bytearray] = bytearray) -> bytearray:
    """The FITS file of one cutout's TPF: the bytes astropy writes for :func:`reference_tpf`'s
    HDUList with ``writeto(checksum=True)``, built directly (a few ms for 30x30x1,000).

    ``fill(flux, flux_err)`` writes the pixels straight into the file's FLUX/FLUX_ERR
    columns (two ``(nt, ny, nx)`` big-endian float32 views; NaN off the image, error 0 for
    1-plane cubes).
    ``timestamp`` is the checksum comments' time (default: now, as astropy writes it).
    ``allocate(size)`` gives the file's buffer: ``size`` zero bytes (default a new
    ``bytearray``; a bulk worker recycles the buffers of files already written).
    """
    return tpf_draft(index, box, coord, timestamp=timestamp, allocate=allocate).finish(fill)


class TPFDraft:
    """A TPF file laid out but for its pixels: :func:`tpf_bytes` in two steps, so that the
    part that needs no pixel (headers, the cube-wide columns, APERTURE, the checksums of
    HDUs 0 and 2: most of the work) is done while the cutout's rows are being read.

    The pixels go in through :meth:`fill_off_image` and :meth:`fill_row` (from any thread,
    rows in any order), which also keep the sum of the words they write, so that
    :meth:`finish` writes the PIXELS checksums without reading the pixels again; the file
    is the one :func:`tpf_bytes` gives.
    """

    def __init__(self, layout: TPFLayout, buffer: bytearray, table: np.ndarray, when: str) -> None:
        self._layout, self._index, self._box = layout, layout.index, layout.box
        self._buffer, self._when = buffer, when
        #: The FLUX and FLUX_ERR columns, ``(nt, ny, nx)`` big-endian float32 views into the file.
        self.pixels: tuple[np.ndarray, np.ndarray] = (table["FLUX"], table["FLUX_ERR"])
        #: Sums of the big-endian words of the FLUX/FLUX_ERR values written so far (appended
        #: from the reading threads; ``list.append`` is atomic).
        self._words: list[int] = []

    def fill_off_image(self) -> Box | None:
        """Write NaN to the pixels off the image; returns the box's part on the image
        (None if none), whose rows :meth:`fill_row` writes."""
        box, nt = self._box, self._index.nt
        part = fill_off_image(self._index, box, *self.pixels)
        if part != box:  # every pixel is NaN now; the rows overwrite the ones on the image
            off_image = (box.nx * box.ny - (part.nx * part.ny if part is not None else 0)) * nt
            self._words.append(off_image * sum(int(a.view(">u4")[0, 0, 0]) for a in self.pixels))
        return part

    def fill_row(self, span: Span, chunk: np.ndarray) -> None:
        """Write cube row ``span.y``'s pixels of the box from ``chunk`` (the big-endian values
        of ``span``, as :func:`.reader.start_chunks` gives them)."""
        part = self._box.overlap(self._index.ncols, self._index.nrows)
        fill_row(self._index, self._box, span, chunk, *self.pixels)
        assert part is not None  # fill_row raised otherwise
        # The words written: the row's flux (and error) values; a 1-plane cube's errors are 0.
        self._words.append(int(chunk[part.x0 - span.x0:part.x1 - span.x0].view(">u4").sum(dtype=np.uint64)))

    def finish(self, fill: Callable[[np.ndarray, np.ndarray], None] | None = None) -> bytearray:
        """The file, with its PIXELS checksums: the pixels are what :meth:`fill_off_image`
        and :meth:`fill_row` wrote (zeros elsewhere), or, when ``fill`` is given, what
        ``fill(flux, flux_err)`` writes into :attr:`pixels` (as for :func:`tpf_bytes`)."""
        if fill is not None:
            fill(*self.pixels)
        layout, datasum = self._layout, None
        if layout.sums_by_parts:  # else write_hdu sums the whole table
            # Pixels the caller wrote are summed from the table.
            words = (sum(self._words) if fill is None
                     else sum(int(a.view(">u4").sum(dtype=np.uint64)) for a in self.pixels))
            datasum = layout.table_datasum(words)
        layout.write_hdu(self._buffer, 1, layout.offsets[1], self._when, datasum)
        return self._buffer


@dataclass(frozen=True, eq=False)
class TPFLayout:
    """Where everything goes in one cutout's TPF file, before any byte is written.

    ``headers`` are the three HDUs' card images (target cards rendered, CHECKSUM/DATASUM
    still the template's); ``data_bytes`` each HDU's data size (unpadded: none, the PIXELS
    table, APERTURE); ``header_bytes`` each header's padded size; ``offsets`` each HDU's
    start in the file (0-based byte offsets), then the file's size.
    """

    index: CubeIndex
    template: Template
    box: Box
    rows: np.dtype
    headers: list[list[str]]
    data_bytes: tuple[int, int, int]
    header_bytes: list[int]
    offsets: list[int]

    @property
    def size(self) -> int:
        """Bytes of the file."""
        return self.offsets[-1]

    def fill_constant_columns(self, table: np.ndarray, start: int = 0) -> None:
        """Write the columns every cutout of the cube shares (TIME, QUALITY ...: the
        template's) and RAW_CNTS (-1) into ``table``, rows ``start, start + len(table)``
        (0-based frames) of the PIXELS table; the other columns are left as they are."""
        for name, column in self.template.columns.items():
            table[name] = column[start:start + len(table)]
        table["RAW_CNTS"] = -1

    def write_aperture(self, buf: bytearray, offset: int, when: str) -> None:
        """Write the APERTURE HDU into ``buf`` (zeros) at ``offset``: its image, 1 on the
        image and 0 off it, and its header (:meth:`write_hdu`)."""
        box, index = self.box, self.index
        part = box.overlap(index.ncols, index.nrows)
        if part is not None:
            aperture = np.ndarray((box.ny, box.nx), dtype=">i4", buffer=buf, offset=offset + self.header_bytes[2])
            aperture[part.y0 - box.y0:part.y1 - box.y0, part.x0 - box.x0:part.x1 - box.x0] = 1
        self.write_hdu(buf, 2, offset, when)

    def write_hdu(self, buf: bytearray, number: int, offset: int, when: str, datasum: int | None = None) -> None:
        """Write HDU ``number``'s header (with CHECKSUM and DATASUM) into ``buf`` at
        ``offset``, its data being already in place after it, or summed in ``datasum``
        (:func:`cubecut.fitswrite.write_hdu`)."""
        header = self.template.headers[number]
        fitswrite.write_hdu(buf, offset, self.headers[number], checksum_card=header.checksum,
                            datasum_card=header.datasum, data_bytes=self.data_bytes[number], when=when,
                            datasum=datasum)

    @property
    def sums_by_parts(self) -> bool:
        """Whether :meth:`table_datasum` applies: every field and row of the PIXELS table is
        a whole number of 32-bit words and FLUX_ERR follows FLUX in a row."""
        fields = self.rows.fields
        assert fields is not None  # a structured row type
        return (self.template.constant_words is not None
                and fields["FLUX_ERR"][1] == fields["FLUX"][1] + 4 * self.box.nx * self.box.ny)

    def table_datasum(self, pixel_words: int) -> int:
        """The PIXELS table's DATASUM from its parts (when :attr:`sums_by_parts`): the
        ones'-complement sum is the sum of the cube-wide columns' words (computed once per
        cube), RAW_CNTS (-1 in every word), the zero columns (0) and the FLUX/FLUX_ERR
        words, whose sum is ``pixel_words``."""
        assert self.template.constant_words is not None  # sums_by_parts
        raw = self.index.nt * self.box.nx * self.box.ny * 0xFFFFFFFF
        return fitswrite.fold(self.template.constant_words + raw + pixel_words)


def tpf_layout(index: CubeIndex, box: Box, coord: SkyCoord) -> TPFLayout:
    """The layout of the TPF of the cutout ``box`` (0-based FFI pixels) around ``coord``:
    the target's cards rendered into the cube's template (:class:`TPFLayout`)."""
    fit = fit_linear_wcs(cutout_wcs(ffi_wcs(index), box), box.nx, box.ny)
    template = template_for(index, coord)
    rows = row_dtype(template.name_width, box.nx, box.ny)
    values = target_values(box, fit, coord, rows.itemsize)
    headers = [part.render(cards) for part, cards in zip(template.headers, values)]
    sizes = (0, index.nt * rows.itemsize, box.nx * box.ny * 4)
    header_sizes = [padded(sum(map(len, images)) + CARD) for images in headers]
    offsets = np.cumsum([0] + [h + padded(d) for h, d in zip(header_sizes, sizes)]).tolist()
    return TPFLayout(index, template, box, rows, headers, sizes, header_sizes, offsets)


def tpf_draft(index: CubeIndex, box: Box, coord: SkyCoord, *, timestamp: str | None = None,
              allocate: Callable[[int], bytearray] = bytearray) -> TPFDraft:
    """The TPF of one cutout without its pixels (see :class:`TPFDraft`; arguments as
    :func:`tpf_bytes`)."""
    layout = tpf_layout(index, box, coord)
    buf = allocate(layout.size)
    table = np.ndarray((index.nt,), dtype=layout.rows, buffer=buf,
                       offset=layout.offsets[1] + layout.header_bytes[1])
    layout.fill_constant_columns(table)
    when = timestamp or fitswrite.checksum_timestamp()
    layout.write_hdu(buf, 0, 0, when)  # the PIXELS HDU is written by finish, once its pixels are in
    layout.write_aperture(buf, layout.offsets[2], when)
    return TPFDraft(layout, buf, table, when)


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
    flux, flux_err = (planes[..., plane].transpose(2, 0, 1) for plane in (0, 1))  # (nt, ny, nx) views
    part = fill_off_image(index, box, flux, flux_err)
    if part is None:
        return planes
    start, stop = span_bytes(index, Span(part.y0, part.x0, part.x1))
    threads = max(1, READ_BYTES_IN_FLIGHT // (stop - start))
    start_chunks(source, index, [box], threads, lambda span, chunk: fill_row(index, box, span, chunk, flux, flux_err))()
    return planes


class StreamedTPF:
    """The TPF of one cutout whose pixels are in memory as :func:`read_planes` gives them
    (``planes``, ``(ny, nx, nt, 2)`` big-endian float32; the other arguments as
    :func:`build_tpf`'s), written front to back by :meth:`write_to`: the file of
    :func:`tpf_bytes` for the same cutout and ``timestamp`` (default: now, as astropy writes it).
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
