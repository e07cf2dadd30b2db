"""Cutouts straight from FFIs, for data not yet cubed (astrocut's ``fits_cut``), and
combining cutouts (astrocut's ``CutoutsCombiner``).

Only what a cutout needs is read: the HDU headers (one read each), then per image HDU
the one byte range from the box's first needed pixel to its last, i.e. the box's rows
(clipped to the image) and nothing else. Sources are local paths or ``s3://`` URLs
(:func:`cubecut.storage.open_source`).

The box is computed exactly as a cube cutout's (:func:`cubecut.cutout.cutout_box`,
astrocut 1.3 rounding), from each image's own WCS: for FFIs sharing a WCS the values
equal those of the cube cutout. Pixel coordinates are 0-based; CRPIX and the
``CRVAL1P``/``CRVAL2P`` keywords are 1-based (FITS). Sizes are ``(x, y)`` = (columns,
rows) as in :func:`cubecut.cutout.parse_size`.

Deliberate differences from astrocut: the header reads and pixel reads are byte ranges
(astrocut opens whole files through fsspec), ``combine_cutouts`` checks that the inputs
line up (same shape, same sky to ``max_offset`` pixels) instead of silently combining
misaligned images, keeps only the header cards all inputs share (astrocut adds three
``Fnn_Kmm`` cards per varying keyword and input), supports a median and weights, and
propagates an uncertainty extension properly for the weighted mean.
"""
from __future__ import annotations

import datetime as dt
import io
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Literal, Sequence, Union

import numpy as np
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.wcs import WCS, FITSFixedWarning

from .cutout.geometry import (Box, CoordInput, SizeInput, cutout_box, cutout_wcs, parse_coordinates, parse_size,
                              size_label)
from .cutout.tpf import CUBECUT_VERSION, physical_wcs_cards, tpf_filename
from .errors import FFIError, InputError
from .ffi import PixelRef
from .fitsio import HDUSpan, data_bytes, open_fits, read_header
from .storage import ByteSource, Location, ReadStats, open_source, put_bytes

#: Concurrent FFI reads for ``threads="auto"``.
MAX_THREADS = 16
#: Largest pixel offset between inputs that ``combine_cutouts`` accepts as "aligned".
MAX_ALIGN_OFFSET = 0.5

#: CD matrix keywords: an image WCS given as CD is rewritten by astropy as PC + CDELT.
_CD_KEYS = ("CD1_1", "CD1_2", "CD2_1", "CD2_2")

Extension = Union[None, int, Sequence[int], Literal["all"]]
Weights = Callable[[fits.HDUList], Union[np.ndarray, float]]


class CombineError(InputError):
    """Cutouts given to :func:`combine_cutouts` cannot be combined (shape, WCS, method)."""


@dataclass(frozen=True)
class ImageHDU:
    """One 2-D image HDU of a FITS file, known from its header alone.

    ``number`` is the 0-based HDU index; ``shape`` is ``(rows, cols)``.
    """

    number: int
    header: fits.Header
    shape: tuple[int, int]
    pixels: PixelRef


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


def image_hdus(source: ByteSource) -> list[ImageHDU]:
    """All 2-D image HDUs with data in ``source``, reading headers only (one read each).

    Raises FFIError for a truncated or malformed file, or one without any 2-D image.
    """
    found: list[ImageHDU] = []
    offset, number = 0, 0
    while offset < source.size:
        header, header_bytes = read_header(source, offset)
        span = HDUSpan(header, offset, offset + header_bytes, data_bytes(header))
        if span.data_offset + span.data_bytes > source.size:
            raise FFIError(f"{source.location.name}: truncated: HDU {number} needs "
                           f"{span.data_offset + span.data_bytes} bytes, object has {source.size}")
        is_image = number == 0 or header.get("XTENSION", "").strip() == "IMAGE"
        if is_image and len(span.shape) == 2 and 0 not in span.shape:
            pixels = PixelRef(span.data_offset, span.dtype.str, float(header.get("BSCALE", 1.0)),
                              float(header.get("BZERO", 0.0)))
            found.append(ImageHDU(number, header, span.shape, pixels))
        offset, number = span.end, number + 1
    if not found:
        raise FFIError(f"{source.location.name}: no 2-D image HDU with data")
    return found


def read_pixels(source: ByteSource, pixels: PixelRef, ncols: int, rows: tuple[int, int],
                cols: tuple[int, int] | None = None) -> np.ndarray:
    """Pixels ``[row0, row1) x [col0, col1)`` (0-based, on the image) of one image HDU.

    One read: from pixel ``(row0, col0)`` to pixel ``(row1 - 1, col1 - 1)`` inclusive, so
    whole rows cost exactly their bytes. BSCALE/BZERO are applied (integer images become
    float32); the result is in native byte order, shaped ``(row1 - row0, col1 - col0)``.
    """
    (row0, row1), (col0, col1) = rows, cols or (0, ncols)
    dtype = np.dtype(pixels.dtype)
    start = pixels.offset + (row0 * ncols + col0) * dtype.itemsize
    stop = pixels.offset + ((row1 - 1) * ncols + col1) * dtype.itemsize
    data = source.read(start, stop)
    if len(data) != stop - start:
        raise FFIError(f"{source.location.url}: short read of rows {row0}-{row1} "
                       f"({len(data)} of {stop - start} bytes)")
    flat = np.frombuffer(data, dtype=dtype)
    if (col0, col1) != (0, ncols):  # pad the partial first and last rows to whole rows
        flat = np.concatenate([np.zeros(col0, dtype=dtype), flat, np.zeros(ncols - col1, dtype=dtype)])
    values = flat.reshape(row1 - row0, ncols)[:, col0:col1]
    if pixels.bscale != 1.0 or pixels.bzero != 0.0 or dtype.kind in "iu":
        return (values * pixels.bscale + pixels.bzero).astype(np.float32)
    return values.astype(dtype.newbyteorder("="))


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


def cut_image(source: ByteSource, hdu: ImageHDU, coord: SkyCoord, size: SizeInput) -> ImageCutout:
    """The ``size`` cutout around ``coord`` of one image HDU (one pixel read).

    Raises OutsideCubeError when the box misses the image, CutoutSizeError for bad sizes.
    """
    wcs = image_wcs(hdu.header, f"{source.location.name} HDU {hdu.number}")
    nrows, ncols = hdu.shape
    box = cutout_box(wcs, coord, size, image_shape=hdu.shape, cube_name=source.location.name)
    part = box.overlap(ncols, nrows)
    values = read_pixels(source, hdu.pixels, ncols, (part.y0, part.y1), (part.x0, part.x1))
    data = np.full((box.ny, box.nx), np.nan, dtype=values.dtype)
    data[part.y0 - box.y0:part.y1 - box.y0, part.x0 - box.x0:part.x1 - box.x0] = values
    return ImageCutout(source.location.name, hdu, box, data, cutout_wcs(wcs, box))


def _selected(hdus: list[ImageHDU], extension: Extension, name: str) -> list[ImageHDU]:
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


def cutout_images(files: Sequence[str], coordinates: CoordInput, size: SizeInput, *,
                  extension: Extension = None, threads: int | Literal["auto"] = "auto",
                  stats: ReadStats | None = None) -> list[list[ImageCutout]]:
    """Per file (in order), the cutouts of its selected image HDUs around one position.

    Args:
        files: FITS files (local paths or ``s3://`` URLs), e.g. TESS FFIs.
        coordinates: one sky position (SkyCoord or ``"ra dec"`` in degrees).
        size: pixels, ``(x, y)`` or an angle Quantity, as for cube cutouts.
        extension: None (the first image HDU: an FFI's flux), ``"all"`` (SPOC: flux and
            uncertainty), an HDU number or a list of them (0-based HDU indices).
        threads: files read concurrently (``"auto"``: up to MAX_THREADS).
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
            hdus = _selected(image_hdus(source), extension, source.location.name)
            return [cut_image(source, hdu, coords[0], size) for hdu in hdus]
        finally:
            getattr(source, "close", lambda: None)()

    workers = min(MAX_THREADS, len(files)) if threads == "auto" else max(1, int(threads))
    if workers == 1:
        return [one(url) for url in files]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cubecut-fficut") as pool:
        return list(pool.map(one, files))


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
    header["ORIG_FLE"] = (cutout.file, _fitting("ORIG_FLE", cutout.file, "Original image filename."))
    header["ORIG_EXT"] = (cutout.hdu.number, "Extension in original file.")
    if not np.isfinite(cutout.data).any():
        header["EMPTY"] = (True, "Indicates no data in cutout image.")
    return fits.ImageHDU(data=cutout.data, header=header)


def _fitting(keyword: str, value: str, comment: str) -> str:
    """``comment`` cut to what fits on one 80-byte card after ``keyword = 'value'``."""
    used = len(str(fits.Card(keyword, value)).rstrip())
    return comment[:max(0, 80 - used - 3)]


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
        primary.header["RA_OBJ"] = (coord.ra.deg, "[deg] right ascension")
        primary.header["DEC_OBJ"] = (coord.dec.deg, "[deg] declination")
    return primary


def fits_cut(files: Sequence[str], coordinates: CoordInput, size: SizeInput, *, extension: Extension = None,
             single_outfile: bool = True, output_dir: str | os.PathLike[str] | None = None,
             cutout_prefix: str = "cutout", threads: int | Literal["auto"] = "auto",
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


def output_location(output_dir: str | os.PathLike[str], name: str) -> Location:
    """Where a file called ``name`` goes in a local folder or under an ``s3://`` prefix."""
    folder = Location.parse(output_dir)
    key = f"{folder.key.rstrip('/')}/{name}"
    return Location("s3", folder.bucket, key.lstrip("/")) if folder.is_s3 else Location.parse(key)


def write_fits(hdulist: fits.HDUList, output_dir: str | os.PathLike[str], name: str) -> str:
    """Write ``hdulist`` (with checksums) as ``name`` in a local folder or under an
    ``s3://`` prefix; returns the path/URL."""
    target = output_location(output_dir, name)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fits.verify.VerifyWarning)
        hdulist.writeto(buffer, checksum=True)
    put_bytes(target, buffer.getvalue(), content_type="application/fits")
    return target.url


def inverse_variance(error_extension: int) -> Weights:
    """A weight function for :func:`combine_cutouts`: ``1 / sigma**2`` per pixel, with
    sigma taken from the cutout file's extension ``error_extension`` (an HDUList index,
    e.g. 2 for ``fits_cut(..., extension="all")`` of a SPOC FFI)."""
    def weights(hdulist: fits.HDUList) -> np.ndarray:
        if not 0 < error_extension < len(hdulist) or hdulist[error_extension].data is None:
            name = hdulist.filename() or "a cutout"
            raise CombineError(f"inverse variance from extension {error_extension}: {name} has image extensions "
                               f"1..{len(hdulist) - 1}; give the one holding the uncertainties "
                               "(2 for ffi-cutout --extension all of a SPOC FFI)")
        sigma = np.asarray(hdulist[error_extension].data, dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(sigma > 0, 1.0 / sigma ** 2, 0.0)
    return weights


def combine_cutouts(cutouts: Sequence[fits.HDUList | str], *, method: Literal["mean", "median"] = "mean",
                    weights: Weights | None = None, error_extension: int | None = None,
                    max_offset: float = MAX_ALIGN_OFFSET) -> fits.HDUList:
    """Combine cutout files (as from :func:`fits_cut`) extension by extension.

    Extension ``i`` (1-based HDUList index) of the result combines extension ``i`` of
    every input. Pixels that are NaN in an input (off its image) are left out; a pixel
    with no data in any input is NaN.

    Args:
        cutouts: HDULists or paths, all with the same number of image extensions.
        method: ``"mean"`` (weighted by ``weights``; astrocut's default combiner when
            ``weights`` is None) or ``"median"`` (unweighted).
        weights: a function of one input HDUList giving a weight (scalar or per-pixel
            array); see :func:`inverse_variance`. Non-finite or negative weights count as 0.
        error_extension: for the mean, the extension holding uncertainties: it is
            combined as ``sqrt(sum(w**2 sigma**2)) / sum(w)`` instead of averaged.
        max_offset: largest pixel misalignment accepted between inputs (sky position of
            the cutout corners, through each input's WCS).

    Raises:
        CombineError: no inputs, differing extension counts/shapes, misaligned WCSs, an
            unknown method, or weights with the median.
    """
    hdulists = [open_fits(c) if isinstance(c, (str, os.PathLike)) else c for c in cutouts]
    if not hdulists:
        raise CombineError("no cutouts to combine")
    if method not in ("mean", "median"):
        raise CombineError(f"unknown combine method {method!r}; expected 'mean' or 'median'")
    if method == "median" and weights is not None:
        raise CombineError("the median combine takes no weights")
    counts = {len(h) for h in hdulists}
    if len(counts) != 1:
        raise CombineError(f"the cutouts have different numbers of extensions: {sorted(counts)}")
    if weights is None:
        w = [np.ones(1)] * len(hdulists)
    else:
        w = [np.nan_to_num(np.asarray(weights(h), dtype=np.float64), nan=0.0, posinf=0.0).clip(min=0)
             for h in hdulists]
    out = [cutout_primary(_centre(hdulists[0]))]
    for ext in range(1, len(hdulists[0])):
        hdus = [h[ext] for h in hdulists]
        _check_aligned(hdus, ext, max_offset)
        stack = np.stack([np.asarray(h.data, dtype=np.float64) for h in hdus])
        if method == "median":
            image = _nanmedian(stack)
        elif ext == error_extension:
            image = _propagated_error(stack, w)
        else:
            image = _weighted_mean(stack, w)
        header = _shared_header([h.header for h in hdus])
        header["NCOMBINE"] = (len(hdus), "number of cutouts combined")
        header["COMBMETH"] = ("error" if method == "mean" and ext == error_extension else method,
                              "how the cutouts were combined")
        out.append(fits.ImageHDU(data=image.astype(hdus[0].data.dtype.newbyteorder("=")), header=header))
    return fits.HDUList(out)


def _centre(hdulist: fits.HDUList) -> SkyCoord | None:
    header = hdulist[0].header
    if "RA_OBJ" in header and "DEC_OBJ" in header:
        return SkyCoord(header["RA_OBJ"], header["DEC_OBJ"], unit="deg")
    return None


def _check_aligned(hdus: list, ext: int, max_offset: float) -> None:
    shapes = {np.shape(h.data) for h in hdus}
    if len(shapes) != 1:
        raise CombineError(f"extension {ext}: the cutouts have different shapes {sorted(shapes)}")
    ny, nx = shapes.pop()
    corners = np.array([[0.0, 0.0], [nx - 1.0, ny - 1.0]])
    try:
        reference = image_wcs(hdus[0].header)
    except FFIError:
        return  # images without a WCS can only be checked for shape
    sky = reference.all_pix2world(corners, 0)
    for number, hdu in enumerate(hdus[1:], start=2):
        offset = np.abs(image_wcs(hdu.header).all_world2pix(sky, 0) - corners).max()
        if not offset <= max_offset:
            raise CombineError(f"extension {ext}: cutout {number} is misaligned with cutout 1 by "
                               f"{offset:.2f} pixels (limit {max_offset})")


def _weighted_mean(stack: np.ndarray, weights: list[np.ndarray]) -> np.ndarray:
    good = np.isfinite(stack)
    w = np.stack([np.broadcast_to(wi, stack.shape[1:]) for wi in weights]) * good
    total = w.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, (w * np.where(good, stack, 0.0)).sum(axis=0) / total, np.nan)


def _propagated_error(stack: np.ndarray, weights: list[np.ndarray]) -> np.ndarray:
    good = np.isfinite(stack)
    w = np.stack([np.broadcast_to(wi, stack.shape[1:]) for wi in weights]) * good
    total = w.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, np.sqrt((w ** 2 * np.where(good, stack, 0.0) ** 2).sum(axis=0)) / total,
                        np.nan)


def _nanmedian(stack: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="All-NaN slice encountered")
        return np.nanmedian(stack, axis=0)


def _shared_header(headers: list[fits.Header]) -> fits.Header:
    """The cards whose value is the same in every header (astrocut's constant cards),
    without the structural and checksum cards that astropy writes itself."""
    skip = {"XTENSION", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "PCOUNT", "GCOUNT", "CHECKSUM", "DATASUM",
            "EMPTY", "ORIG_FLE"}
    first = headers[0]
    shared = fits.Header()
    for card in first.cards:
        key = card.keyword
        if key in skip or key in ("COMMENT", "HISTORY", "") or key in shared:
            continue
        if all(key in h and h[key] == card.value for h in headers[1:]):
            shared.append(card)
    return shared
