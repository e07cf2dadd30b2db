"""What ingest needs to know about one FFI, read from its headers alone.

Two products are understood:

* SPOC calibrated FFIs: HDU0 primary header, HDU1 flux image (its header carries the
  times, quality and WCS), HDU2 uncertainty image of the same shape.
* TICA FFIs: one primary HDU holding image and header (STARTTJD/ENDTJD, CAMNUM/CCDNUM,
  QUAL_BIT); no uncertainty image.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

from astropy.io import fits

from .errors import FFIError, InputError
from .fitsio import HDUSpan, scan_hdus
from .reads import Threads, concurrently
from .storage import ByteSource, Location, ReadStats, open_source

SPOC = "SPOC"
TICA = "TICA"
PRODUCTS = (SPOC, TICA)

#: Header keywords per product: (start time, stop time, quality, camera, ccd).
TIME_KEYS = {SPOC: ("TSTART", "TSTOP"), TICA: ("STARTTJD", "ENDTJD")}
CAMERA_KEYS = {SPOC: ("CAMERA", "CCD"), TICA: ("CAMNUM", "CCDNUM")}
_SECTOR_IN_NAME = re.compile(r"[-_]s(\d{4})-")


@dataclass(frozen=True)
class PixelRef:
    """Where an FFI's image pixels are: absolute byte offset, on-disk dtype, scaling."""

    offset: int
    dtype: str
    bscale: float = 1.0
    bzero: float = 0.0


@dataclass(frozen=True)
class FFIInfo:
    """One FFI as ingest sees it. ``image_header`` is the header that becomes a table row."""

    url: str
    name: str
    size: int
    etag: str | None
    product: str
    primary_header: fits.Header
    image_header: fits.Header
    shape: tuple[int, int]
    flux: PixelRef
    error: PixelRef | None

    @property
    def start(self) -> float:
        return float(self.image_header[TIME_KEYS[self.product][0]])

    @property
    def camera_ccd(self) -> tuple[int, int]:
        camera, ccd = CAMERA_KEYS[self.product]
        return int(self.image_header[camera]), int(self.image_header[ccd])

    @property
    def sector(self) -> int | None:
        """From a SECTOR keyword, else from a ``-sNNNN-`` part of the file name."""
        for header in (self.primary_header, self.image_header):
            if isinstance(header.get("SECTOR"), int):
                return int(header["SECTOR"])
        match = _SECTOR_IN_NAME.search(self.name)
        return int(match.group(1)) if match else None


def pixel_ref(span: HDUSpan, what: str, name: str) -> PixelRef:
    """Where the 2-D image of ``span`` (``what`` of the file ``name``, for errors) is;
    FFIError if it is not a 2-D image or its BSCALE/BZERO are not finite numbers."""
    if len(span.shape) != 2:
        raise FFIError(f"{name}: {what} is not a 2-D image (NAXIS={span.header.get('NAXIS')})")
    scaling = []
    for key, default in (("BSCALE", 1.0), ("BZERO", 0.0)):
        value = span.header.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise FFIError(f"{name}: {what} has {key} = {value!r}, not a finite number")
        scaling.append(float(value))
    return PixelRef(span.data_offset, span.dtype.str, *scaling)


def inspect_ffi(source: ByteSource, product: str | None = None) -> FFIInfo:
    """Read the headers of one FFI and check that it is a complete, usable image.

    ``product`` (``"spoc"``/``"tica"`` in any case) forces SPOC or TICA; by default a primary
    HDU with a 2-D image means TICA.
    Raises :class:`FFIError` for truncated or malformed files, a SPOC file without its
    uncertainty extension, or missing time/camera keywords.
    """
    name = source.location.name
    (primary,) = scan_hdus(source, 1)
    detected = TICA if primary.header.get("NAXIS", 0) == 2 else SPOC
    asked = product
    product = detected if asked is None else asked.strip().upper()
    if product not in PRODUCTS:
        raise InputError(f"unknown product {asked!r}; expected one of {', '.join(PRODUCTS)}")
    if product != detected:
        raise FFIError(f"{name}: looks like a {detected} FFI, not {product}")
    if product == TICA:
        image, error = primary, None
    else:
        try:
            _, image, error = scan_hdus(source, 3)
        except FFIError as exc:
            if "expected at least 3" in str(exc):
                raise FFIError(f"{name}: SPOC FFI without its uncertainty extension (HDU 2)") from None
            raise
    flux = pixel_ref(image, "flux image", name)
    err = pixel_ref(error, "uncertainty image", name) if error is not None else None
    if error is not None and error.shape != image.shape:
        raise FFIError(f"{name}: uncertainty image shape {error.shape} differs from flux {image.shape}")
    for key in (*TIME_KEYS[product], *CAMERA_KEYS[product]):
        if key not in image.header:
            raise FFIError(f"{name}: header lacks {key}, required for a {product} FFI")
    for key in TIME_KEYS[product]:
        value = image.header[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise FFIError(f"{name}: {key} is not a number ({value!r})")
        if not math.isfinite(value):
            raise FFIError(f"{name}: {key} is {value}")
    for key in CAMERA_KEYS[product]:
        value = image.header[key]
        if isinstance(value, bool) or not isinstance(value, int):
            raise FFIError(f"{name}: {key} is not a whole number ({value!r})")
    nrows, ncols = image.shape  # a 2-D image: checked by _pixels
    return FFIInfo(source.location.url, name, source.size, source.etag, product, primary.header,
                   image.header, (nrows, ncols), flux, err)


def inspect_ffis(urls: list[str], product: str | None = None, threads: Threads = "auto",
                 stats: ReadStats | None = None) -> list[FFIInfo]:
    """Inspect many FFIs concurrently (headers only; ``threads`` as :mod:`cubecut.reads`), in
    input order; ``stats`` counts the header reads."""
    def one(url: str) -> FFIInfo:
        return inspect_ffi(open_source(Location.parse(url), stats), product)

    return concurrently(one, urls, threads)
