"""Combining FFI cutouts extension by extension (astrocut's ``CutoutsCombiner``), checking
that they line up."""
from __future__ import annotations

import os
import warnings
from typing import Callable, Literal, Sequence, Union

import numpy as np
from astropy.coordinates import SkyCoord
from astropy.io import fits

from ..errors import FFIError, InputError
from ..fitsio import open_fits
from .cut import cutout_primary, image_wcs

#: Largest pixel offset between inputs that ``combine_cutouts`` accepts as "aligned".
MAX_ALIGN_OFFSET = 0.5

Weights = Callable[[fits.HDUList], Union[np.ndarray, float]]


class CombineError(InputError):
    """Cutouts given to :func:`combine_cutouts` cannot be combined (shape, WCS, method)."""


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
    first = hdulists[0][0].header
    out = [cutout_primary(SkyCoord(first["RA_OBJ"], first["DEC_OBJ"], unit="deg")
                          if "RA_OBJ" in first and "DEC_OBJ" in first else None)]
    for ext in range(1, len(hdulists[0])):
        hdus = [h[ext] for h in hdulists]
        _check_aligned(hdus, ext, max_offset)
        stack = np.stack([np.asarray(h.data, dtype=np.float64) for h in hdus])
        if method == "median":
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="All-NaN slice encountered")
                image = np.nanmedian(stack, axis=0)
        elif ext == error_extension:
            image = _weighted_mean(stack, w, errors=True)
        else:
            image = _weighted_mean(stack, w)
        header = _shared_header([h.header for h in hdus])
        header["NCOMBINE"] = (len(hdus), "number of cutouts combined")
        header["COMBMETH"] = ("error" if method == "mean" and ext == error_extension else method,
                              "how the cutouts were combined")
        out.append(fits.ImageHDU(data=image.astype(hdus[0].data.dtype.newbyteorder("=")), header=header))
    return fits.HDUList(out)


def _check_aligned(hdus: list, ext: int, max_offset: float) -> None:
    for number, hdu in enumerate(hdus, start=1):
        if not isinstance(hdu, fits.ImageHDU) or np.ndim(hdu.data) != 2:
            raise CombineError(f"extension {ext} of cutout {number} is not a 2-D image ({type(hdu).__name__}): "
                               "combine takes image cutouts as `cubecut ffi-cutout` writes them, not target "
                               "pixel files")
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


def _weighted_mean(stack: np.ndarray, weights: list[np.ndarray], *, errors: bool = False) -> np.ndarray:
    """The weighted mean of ``stack`` over its inputs (NaN left out), or for ``errors``
    (uncertainties) ``sqrt(sum(w**2 sigma**2)) / sum(w)``; NaN where no input has data."""
    good = np.isfinite(stack)
    w = np.stack([np.broadcast_to(wi, stack.shape[1:]) for wi in weights]) * good
    values = np.where(good, stack, 0.0)
    total = w.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        summed = np.sqrt((w ** 2 * values ** 2).sum(axis=0)) if errors else (w * values).sum(axis=0)
        return np.where(total > 0, summed / total, np.nan)


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
