"""FFI cutouts: the box of one sky position in each selected image HDU, one pixel read each
(:func:`cubecut.ffi_rows.read_pixels`, the reader ingest uses), and astrocut's ``fits_cut``."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.wcs import WCS

from ..cutout.geometry import Box, CoordInput, cutout_box, cutout_wcs, parse_coordinates
from ..cutout.size import SizeInput, parse_size, size_label
from ..cutout.tpf import tpf_filename
from ..errors import InputError
from ..ffi_rows import read_pixels
from ..reads import Threads, concurrently
from ..storage import ByteSource, Location, ReadStats, open_source
from .hdus import Extension, ImageHDU, image_hdus, image_wcs, selected
from .output import cutout_hdu, cutout_primary, write_fits


@dataclass(frozen=True)
class ImageCutout:
    """The cutout of one image HDU.

    ``data`` is ``(ny, nx)`` in native byte order (float32 for float32 and integer images,
    float64 for float64 ones), NaN where the box is off the image; ``box`` is in 0-based
    FFI pixels; ``wcs`` is the image's WCS (SIP kept) with CRPIX moved by the box corner.
    """

    file: str
    hdu: ImageHDU
    box: Box
    data: np.ndarray
    wcs: WCS


def cut_image(source: ByteSource, hdu: ImageHDU, coord: SkyCoord, size: SizeInput) -> ImageCutout:
    """The ``size`` cutout around ``coord`` of one image HDU (one pixel read).

    Raises OutsideCubeError when the box misses the image, CutoutSizeError for bad sizes.
    """
    wcs = image_wcs(hdu.header, f"{source.location.name} HDU {hdu.number}")
    nrows, ncols = hdu.shape
    box = cutout_box(wcs, coord, size, image_shape=hdu.shape, cube_name=source.location.name)
    part = box.overlap(ncols, nrows)
    assert part is not None  # cutout_box raised OutsideCubeError for a box off the image
    values = read_pixels(source, hdu.pixels, ncols, (part.y0, part.y1), (part.x0, part.x1))
    data = np.full((box.ny, box.nx), np.nan, dtype=values.dtype.newbyteorder("="))
    data[part.y0 - box.y0:part.y1 - box.y0, part.x0 - box.x0:part.x1 - box.x0] = values
    return ImageCutout(source.location.name, hdu, box, data, cutout_wcs(wcs, box))


def cutout_images(files: Sequence[str], coordinates: CoordInput, size: SizeInput, *,
                  extension: Extension = None, threads: Threads = "auto",
                  stats: ReadStats | None = None) -> list[list[ImageCutout]]:
    """Per file (in order), the cutouts of its selected image HDUs around one position.

    Args:
        files: FITS files (local paths or ``s3://`` URLs), e.g. TESS FFIs.
        coordinates: one sky position (SkyCoord or ``"ra dec"`` in degrees).
        size: pixels, ``(x, y)`` or an angle Quantity, as for cube cutouts.
        extension: None (the first image HDU: an FFI's flux), ``"all"`` (SPOC: flux and
            uncertainty), an HDU number or a list of them (0-based HDU indices).
        threads: files read concurrently (:data:`cubecut.reads.Threads`; ``"auto"``: all).
        stats: counts every read request and byte.
    """
    if not files:
        raise InputError("no FITS files given")
    coords = parse_coordinates(coordinates)
    if len(coords) != 1:
        raise InputError(f"FFI cutouts take one position, got {len(coords)}")

    def one(url: str) -> list[ImageCutout]:
        source = open_source(url, stats)
        try:
            hdus = selected(image_hdus(source), extension, source.location.name)
            return [cut_image(source, hdu, coords[0], size) for hdu in hdus]
        finally:
            getattr(source, "close", lambda: None)()

    return concurrently(one, files, threads)


def fits_cut(files: Sequence[str], coordinates: CoordInput, size: SizeInput, *, extension: Extension = None,
             single_outfile: bool = True, output_dir: str | os.PathLike[str] | None = None,
             cutout_prefix: str = "cutout", threads: Threads = "auto",
             stats: ReadStats | None = None) -> list[fits.HDUList] | list[str]:
    """astrocut's ``fits_cut`` over byte ranges: the same cutout from each FITS file.

    Args:
        files, coordinates, size, extension, threads, stats: as :func:`cutout_images`.
        single_outfile: one HDUList with every cutout as an extension (in file order), or
            one HDUList per file.
        output_dir: local folder or ``s3://`` prefix; when given, the files are written
            there (names as astrocut: ``{cutout_prefix}_{ra}_{dec}_{nx}-x-{ny}_astrocut.fits``
            for a single file, the input file stem instead of the prefix otherwise) and
            their paths/URLs are returned; otherwise the HDULists are returned.

    Raises:
        FFIError, OutsideCubeError, CutoutSizeError, CoordinateError, ObjectNotFoundError.
    """
    coord = parse_coordinates(coordinates)[0]
    per_file = cutout_images(files, coord, size, extension=extension, threads=threads, stats=stats)
    if single_outfile:
        hdulists = [fits.HDUList([cutout_primary(coord), *(cutout_hdu(c) for cs in per_file for c in cs)])]
        stems = [cutout_prefix]
    else:
        hdulists = [fits.HDUList([cutout_primary(coord), *(cutout_hdu(c) for c in cs)]) for cs in per_file]
        stems = [Location.parse(f).name for f in files]
    if output_dir is None:
        return hdulists
    labels = size_label(parse_size(size))
    names = [tpf_filename(stem, coord.ra.deg, coord.dec.deg, *labels) for stem in stems]
    return [write_fits(hdul, output_dir, name) for hdul, name in zip(hdulists, names)]
