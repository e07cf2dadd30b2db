"""The image HDUs of a FITS file, known from its headers alone (one read per HDU)."""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Literal, Sequence, Union

from astropy.io import fits
from astropy.wcs import WCS, FITSFixedWarning

from ..errors import FFIError
from ..ffi import PixelRef
from ..fitsio import HDUSpan, data_bytes, read_header
from ..storage import ByteSource

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
