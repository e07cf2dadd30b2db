"""FFI cutouts: the image HDUs of a FITS file, known from its headers alone (one read per
HDU); the box of one sky position in each selected image HDU, one pixel read each
(:func:`cubecut.ffi_rows.read_pixels`, the reader ingest uses); astrocut's ``fits_cut`` and
the files it writes (``CUTOUT`` image HDUs, the primary HDU)."""
from __future__ import annotations

import datetime as dt
import io
import os
import warnings
from dataclasses import dataclass
from typing import Literal, Sequence, Union

import numpy as np
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.wcs import WCS, FITSFixedWarning

from ..cutout.geometry import Box, CoordInput, cutout_box, cutout_wcs, parse_coordinates
from ..cutout.size import SizeInput, parse_size, size_label
from ..cutout.tpf import tpf_filename
from ..cutout.tpf_reference import CUBECUT_VERSION, fitting_comment, object_cards, physical_wcs_cards
from ..errors import FFIError, InputError
from ..ffi import PixelRef, pixel_ref
from ..ffi_rows import read_pixels
from ..fitsio import scan_hdus
from ..reads import Threads, concurrently
from ..storage import ByteSource, Location, ReadStats, open_source, put_bytes

#: Which image HDUs to cut: None = the first, ``"all"``, or 0-based HDU numbers.
Extension = Union[None, int, Sequence[int], Literal["all"]]


@dataclass(frozen=True)
class ImageHDU:
    """One 2-D image HDU of a FITS file, known from its header alone.

    ``number`` is the 0-based HDU index; ``shape`` is ``(rows, cols)``.
    """

    number: int
    header: fits.Header
    shape: tuple[int, int]
    pixels: PixelRef


def image_hdus(source: ByteSource) -> list[ImageHDU]:
    """All 2-D image HDUs with data in ``source``, reading headers only (one read each).

    Raises FFIError for a truncated or malformed file, or one without any 2-D image.
    """
    found: list[ImageHDU] = []
    for number, span in enumerate(scan_hdus(source)):
        is_image = number == 0 or span.header.get("XTENSION", "").strip() == "IMAGE"
        if is_image and len(span.shape) == 2 and 0 not in span.shape:
            pixels = pixel_ref(span, f"HDU {number}", source.location.name)
            found.append(ImageHDU(number, span.header, span.shape, pixels))
    if not found:
        raise FFIError(f"{source.location.name}: no 2-D image HDU with data")
    return found


def image_wcs(header: fits.Header, name: str = "the image") -> WCS:
    """The celestial WCS of an image header (SIP kept when the CTYPEs say so).

    Raises FFIError naming ``name`` if the header has none.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        wcs = WCS(header, relax=True, naxis=2)
    if not wcs.has_celestial:
        raise FFIError(f"{name} has no celestial WCS")
    return wcs


def selected(hdus: list[ImageHDU], extension: Extension, name: str) -> list[ImageHDU]:
    """The HDUs ``extension`` asks for: None = the first image, ``"all"``, or HDU numbers."""
    if extension is None:
        return hdus[:1]
    if extension == "all":
        return hdus
    wanted = [extension] if isinstance(extension, int) else list(extension)
    by_number = {h.number: h for h in hdus}
    missing = [n for n in wanted if n not in by_number]
    if missing:
        raise FFIError(f"{name}: HDU(s) {missing} are not 2-D images with data "
                       f"(images are HDUs {sorted(by_number)})")
    return [by_number[n] for n in wanted]


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


#: CD matrix keywords: an image WCS given as CD is rewritten by astropy as PC + CDELT.
_CD_KEYS = ("CD1_1", "CD1_2", "CD2_1", "CD2_2")


def cutout_hdu(cutout: ImageCutout) -> fits.ImageHDU:
    """An ``EXTNAME = 'CUTOUT'`` image HDU as astrocut's fits_cut writes it.

    The original header is kept with its WCS replaced by the cutout's (CRPIX moved), the
    physical alternate WCS ``P`` giving the 1-based FFI column/row of the first pixel,
    ``O_EXT_NM`` (original EXTNAME), ``ORIG_FLE`` (file name) and ``ORIG_EXT`` (HDU number).
    """
    header = cutout.hdu.header.copy()
    wcs_cards = cutout.wcs.to_header(relax=True)
    for key in {*wcs_cards, *_CD_KEYS, "CHECKSUM", "DATASUM", "BSCALE", "BZERO", "BLANK"}:
        header.remove(key, ignore_missing=True, remove_all=True)
    header.update(wcs_cards)
    header.update(physical_wcs_cards(cutout.box))
    header["O_EXT_NM"] = (cutout.hdu.header.get("EXTNAME"), "Original extension name.")
    header["EXTNAME"] = "CUTOUT"
    header["ORIG_FLE"] = (cutout.file, fitting_comment("ORIG_FLE", cutout.file, "Original image filename."))
    header["ORIG_EXT"] = (cutout.hdu.number, "Extension in original file.")
    if not np.isfinite(cutout.data).any():
        header["EMPTY"] = (True, "Indicates no data in cutout image.")
    return fits.ImageHDU(data=cutout.data, header=header)


def cutout_primary(coord: SkyCoord | None) -> fits.PrimaryHDU:
    """The data-less primary HDU of a cutout file (astrocut's keywords)."""
    primary = fits.PrimaryHDU()
    primary.header.extend([
        ("ORIGIN", "STScI/MAST", "institution responsible for creating this file"),
        ("DATE", str(dt.date.today()), "file creation date"),
        ("CREATOR", "cubecut", "software used to produce this file"),
        ("PROCVER", CUBECUT_VERSION, "software version"),
    ])
    if coord is not None:
        primary.header.update(object_cards(coord))
    return primary


def write_fits(hdulist: fits.HDUList, output_dir: str | os.PathLike[str], name: str) -> str:
    """Write ``hdulist`` (with checksums) as ``name`` in a local folder or under an
    ``s3://`` prefix; returns the path/URL."""
    target = Location.parse(output_dir).child(name)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fits.verify.VerifyWarning)
        hdulist.writeto(buffer, checksum=True)
    put_bytes(target, buffer.getvalue(), content_type="application/fits")
    return target.url
