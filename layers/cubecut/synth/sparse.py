"""Full-size SPOC FFIs that cost no pixels: real headers, pixels from a formula.

``make_sector`` renders every pixel (a 2078 x 2136 FFI takes ~35 MB and a second of CPU);
planning an ingest of 11,700 of them needs only their headers. :func:`spoc_units` gives a
frame's three HDU headers as bytes (the headers ``make_sector`` writes, without
checksums); :func:`write_sparse_sector` writes files of the full size whose pixel data
are holes (zeros, no disk blocks) except the rows asked for, which get
:func:`pattern_rows`' values; a server can synthesize any byte range of the same file
from :class:`SparseFFI` without any file (benchmarks/synthserver.py).

Pixel coordinates are 0-based rows/columns of the image; frames are 0-based within the sector.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.io import fits

from ..errors import InputError
from ..fitsio import padded
from ..storage import writable_folder
from .geometry import Card, crop_shape, wcs_cards
from .headers import spoc_image_cards, spoc_name, spoc_primary_cards
from .sector import load_sector
from .timing import frame_times


def _pattern(row: np.ndarray, col: np.ndarray, frame: np.ndarray, plane: np.ndarray) -> np.ndarray:
    """The value of every pixel, broadcast over the integer arguments: distinct per (row mod
    32, column, frame mod 64, plane), a multiple of 1/128 below 2**17, so exact in float32
    (summed in float32 with no rounding)."""
    pixel = ((row % 32) * 4096 + col).astype(np.float32)
    time = ((frame % 64) * 2 + plane).astype(np.float32) / np.float32(128)
    out = np.empty(np.broadcast_shapes(pixel.shape, time.shape), dtype=">f4")
    np.add(pixel, time, out=out)
    return out


def pattern_rows(frame: int, plane: int, rows: tuple[int, int], ncols: int) -> np.ndarray:
    """The pixels of rows ``[row0, row1)`` of image ``plane`` (0 flux, 1 uncertainty) of
    ``frame``: big-endian float32, shape ``(rows, ncols)``."""
    return _pattern(np.arange(*rows)[:, None], np.arange(ncols)[None, :], np.array(frame), np.array(plane))


def pattern_cube_rows(rows: tuple[int, int], ncols: int, nt: int, nplanes: int, *,
                      first_frame: int = 0) -> np.ndarray:
    """What a cube of frames ``first_frame .. first_frame + nt - 1`` holds in rows ``[row0,
    row1)``: shape ``(rows, ncols, nt, nplanes)`` big-endian float32, as ingest lays
    :func:`pattern_rows` out."""
    return _pattern(np.arange(*rows)[:, None, None, None], np.arange(ncols)[None, :, None, None],
                    np.arange(first_frame, first_frame + nt)[None, None, :, None],
                    np.arange(nplanes)[None, None, None, :])


@dataclass(frozen=True)
class SparseFFI:
    """One synthetic SPOC FFI's bytes: three headers, two images of ``shape`` float32."""

    name: str
    primary: bytes
    flux_header: bytes
    error_header: bytes
    shape: tuple[int, int]

    @property
    def image_bytes(self) -> int:
        """Bytes of one image's data unit, padded to 2880."""
        return padded(self.shape[0] * self.shape[1] * 4)

    @property
    def flux_offset(self) -> int:
        """Absolute offset of the flux image's first pixel."""
        return len(self.primary) + len(self.flux_header)

    @property
    def error_offset(self) -> int:
        """Absolute offset of the uncertainty image's first pixel."""
        return self.flux_offset + self.image_bytes + len(self.error_header)

    @property
    def size(self) -> int:
        return self.error_offset + self.image_bytes


class _Patcher:
    """One header's bytes for any frame: frame 0's, with the cards that differ re-formatted
    (astropy builds a 140-card header in ~20 ms; 11,700 frames need it faster)."""

    def __init__(self, cards: list[Card], hdu: fits.PrimaryHDU | fits.ImageHDU) -> None:
        self.cards = cards
        self.template = hdu.header.tostring().encode()
        keys = [c[0] for c in cards]
        if len(set(keys)) != len(keys) or len(self.template) // 80 < len(hdu.header):  # CONTINUE cards
            raise InputError("header cards do not map one to one onto 80-character records")
        self.records = [hdu.header.index(key) for key in keys]

    def bytes(self, cards: list[Card]) -> bytes:
        out = bytearray(self.template)
        for j, (mine, theirs) in enumerate(zip(cards, self.cards)):
            if mine != theirs:
                at = self.records[j] * 80
                out[at:at + 80] = fits.Card(*mine).image.encode()
        return bytes(out)


def sparse_sector(*, sector: int, camera: int, ccd: int, frames: int, first_frame: int = 0,
                  shape: tuple[int, int] | None = None) -> list[SparseFFI]:
    """Frames ``first_frame .. first_frame + frames - 1`` of a sector as :class:`SparseFFI` s:
    the headers ``make_sector`` writes, without DATASUM/CHECKSUM."""
    if frames < 1 or first_frame < 0:
        raise InputError(f"need frames >= 1 and first_frame >= 0, got {frames}, {first_frame}")
    info = load_sector(sector, camera, ccd)
    times = frame_times(info, first_frame, frames)
    wcs = wcs_cards(info.wcs)
    rows_cols = crop_shape(shape)
    image = np.broadcast_to(np.float32(0), rows_cols)  # headers only: no pixels are made

    def cards(i: int, kind: str | None) -> list[Card]:
        """Frame ``i``'s primary (``kind`` None) or image (``cal``, ``uncert``) header cards."""
        return spoc_primary_cards(info, times, i) if kind is None else spoc_image_cards(info, times, i, wcs, kind)

    primary = fits.PrimaryHDU(header=fits.Header(cards(0, None)))
    primary.header["EXTEND"] = True  # where make_sector's files have it
    head = _Patcher(cards(0, None), primary)
    flux, error = (_Patcher(cards(0, kind), fits.ImageHDU(image, header=fits.Header(cards(0, kind))))
                   for kind in ("cal", "uncert"))
    return [SparseFFI(spoc_name(info, times, i), head.bytes(cards(i, None)), flux.bytes(cards(i, "cal")),
                      error.bytes(cards(i, "uncert")), rows_cols) for i in range(frames)]


def write_sparse_sector(outdir: str | Path, ffis: list[SparseFFI], *, filled: tuple[int, int] | None = None,
                        first_frame: int = 0) -> list[Path]:
    """Write ``ffis`` as full-size files in ``outdir``: headers, and pixels only for rows
    ``filled = (row0, row1)`` (:func:`pattern_rows`, frame = ``first_frame`` + position);
    the rest are holes. Returns the paths in the order given."""
    outdir = writable_folder(outdir)
    paths = []
    for position, ffi in enumerate(ffis):
        path = outdir / ffi.name
        with open(path, "wb") as handle:
            handle.write(ffi.primary + ffi.flux_header)
            handle.seek(ffi.flux_offset + ffi.image_bytes)
            handle.write(ffi.error_header)
            handle.truncate(ffi.size)
            if filled is not None:
                ncols = ffi.shape[1]
                for plane, offset in enumerate((ffi.flux_offset, ffi.error_offset)):
                    rows = pattern_rows(first_frame + position, plane, filled, ncols)
                    os.pwrite(handle.fileno(), rows.tobytes(), offset + filled[0] * ncols * 4)
        paths.append(path)
    return paths


def write_cut_down(ffis: list[SparseFFI], rows: tuple[int, int], outdir: str | Path) -> list[Path]:
    """Write ``ffis`` (frames 0, 1, ... of their sector) as small FITS files holding only
    image rows ``[row0, row1)`` (:func:`pattern_rows`; their headers, NAXIS2 = the rows kept):
    astrocut's input for the same rows of a cube. Returns the paths in the order given."""
    outdir = writable_folder(outdir)
    paths = []
    for frame, ffi in enumerate(ffis):
        images = [fits.ImageHDU(pattern_rows(frame, plane, rows, ffi.shape[1]), header=fits.Header.fromstring(header))
                  for plane, header in enumerate((ffi.flux_header, ffi.error_header))]
        primary = fits.PrimaryHDU(header=fits.Header.fromstring(ffi.primary))
        fits.HDUList([primary, *images]).writeto(outdir / ffi.name)
        paths.append(outdir / ffi.name)
    return paths
