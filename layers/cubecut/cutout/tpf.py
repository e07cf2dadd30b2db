"""The fast TPF writer: a cutout's target pixel file as the bytes of its FITS file.

:func:`tpf_bytes` writes, byte for byte, what astropy's ``writeto(checksum=True)`` gives
for :func:`.tpf_reference.reference_tpf`'s HDUList (the definition of the content, and
the readable second writer the tests compare this one with), in milliseconds: the cards
every cutout of a cube shares come from the cube's template (:mod:`.tpf_template`), only
the target's cards (position, box size, WCS) are rendered per cutout, the pixels are
written big-endian into their final place, and the checksums are vectorised
(:mod:`cubecut.fitswrite`). :class:`TPFDraft` is the file laid out but for its pixels; it
owns the file's checksum arithmetic (:mod:`.pipeline` fills drafts row by row).
"""
from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import PurePosixPath

import numpy as np
from astropy.coordinates import SkyCoord
from astropy.io import fits

from .. import fitswrite
from ..cube.index import CubeIndex
from ..fitsio import CARD, padded
from .geometry import Box, cutout_wcs, ffi_wcs, fit_linear_wcs
from .reader import Span, fill_off_image, fill_row
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

    The headers are the cube's template (cached per index) with the target's cards
    rendered in; the table is laid out big-endian in the output buffer and ``fill(flux,
    flux_err)`` writes the pixels straight into its FLUX/FLUX_ERR columns (two ``(nt, ny,
    nx)`` big-endian float32 views; NaN off the image, error 0 for 1-plane cubes).
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

    def __init__(self, index: CubeIndex, template: Template, box: Box, buffer: bytearray, table: np.ndarray,
                 images: list[str], offset: int, when: str) -> None:
        self._index, self._template, self._box, self._buffer, self._table = index, template, box, buffer, table
        self._images, self._offset, self._when = images, offset, when
        #: The FLUX and FLUX_ERR columns, ``(nt, ny, nx)`` big-endian float32 views into the file.
        self.pixels: tuple[np.ndarray, np.ndarray] = (table["FLUX"], table["FLUX_ERR"])
        #: Sums of the big-endian words of the FLUX/FLUX_ERR values written so far (appended
        #: from the reading threads; ``list.append`` is atomic).
        self._words: list[int] = []

    @property
    def box(self) -> Box:
        return self._box

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
        pixel_words: int | None = sum(self._words)
        if fill is not None:
            fill(*self.pixels)
            pixel_words = None  # written by the caller: summed from the table
        header = self._template.headers[1]
        fitswrite.write_hdu(self._buffer, self._offset, self._images, checksum_card=header.checksum,
                            datasum_card=header.datasum, data_bytes=self._table.nbytes, when=self._when,
                            datasum=_table_datasum(self._template, self._table, self._box, pixel_words))
        return self._buffer


def tpf_draft(index: CubeIndex, box: Box, coord: SkyCoord, *, timestamp: str | None = None,
              allocate: Callable[[int], bytearray] = bytearray) -> TPFDraft:
    """The TPF of one cutout without its pixels (see :class:`TPFDraft`; arguments as
    :func:`tpf_bytes`)."""
    fit = fit_linear_wcs(cutout_wcs(ffi_wcs(index), box), box.nx, box.ny)
    template = template_for(index, coord)
    rows = row_dtype(template.name_width, box.nx, box.ny)
    values = target_values(box, fit, coord, rows.itemsize)
    headers = [part.render(cards) for part, cards in zip(template.headers, values)]
    sizes = (0, index.nt * rows.itemsize, box.nx * box.ny * 4)
    header_sizes = [padded(sum(map(len, images)) + CARD) for images in headers]
    offsets = np.cumsum([0] + [h + padded(d) for h, d in zip(header_sizes, sizes)]).tolist()
    buf = allocate(offsets[-1])

    table = np.ndarray((index.nt,), dtype=rows, buffer=buf, offset=offsets[1] + header_sizes[1])
    for name, column in template.columns.items():
        table[name] = column
    table["RAW_CNTS"] = -1
    aperture = np.ndarray((box.ny, box.nx), dtype=">i4", buffer=buf, offset=offsets[2] + header_sizes[2])
    part = box.overlap(index.ncols, index.nrows)
    if part is not None:
        aperture[part.y0 - box.y0:part.y1 - box.y0, part.x0 - box.x0:part.x1 - box.x0] = 1

    when = timestamp or fitswrite.checksum_timestamp()
    for number in (0, 2):  # the PIXELS HDU is written by finish, once its pixels are in
        header = template.headers[number]
        fitswrite.write_hdu(buf, offsets[number], headers[number], checksum_card=header.checksum,
                            datasum_card=header.datasum, data_bytes=sizes[number], when=when)
    return TPFDraft(index, template, box, buf, table, headers[1], offsets[1], when)


def _table_datasum(template: Template, table: np.ndarray, box: Box, pixel_words: int | None = None) -> int | None:
    """The PIXELS table's DATASUM from its parts: when every field and row is a whole number
    of 32-bit words, the ones'-complement sum is the sum of the cube-wide columns' words
    (computed once per cube), RAW_CNTS (-1 in every word), the zero columns (0) and only the
    FLUX/FLUX_ERR words, which are read here (40 % of a 30x30 table) unless ``pixel_words``
    gives their sum. None when the layout does not allow it (the whole table is summed then)."""
    if template.constant_words is None:
        return None
    npix = box.nx * box.ny
    fields = table.dtype.fields
    assert fields is not None  # a structured row type
    offset = fields["FLUX"][1]
    if fields["FLUX_ERR"][1] != offset + 4 * npix:
        return None
    if pixel_words is None:
        pixels = np.ndarray((len(table), 2 * npix), dtype=">u4", buffer=table, offset=offset,
                            strides=(table.dtype.itemsize, 4))
        pixel_words = int(pixels.sum(dtype=np.uint64))
    raw = len(table) * npix * 0xFFFFFFFF
    return fitswrite.fold(template.constant_words + raw + pixel_words)
