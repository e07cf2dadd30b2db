"""Where a cutout falls on the cube: the FFI WCS, sizes in pixels, the cutout box.

Pixel coordinates here are 0-based (numpy indices; pixel ``i`` covers ``[i - 0.5, i + 0.5)``,
as ``world_to_pixel`` returns them). Sizes are :mod:`.size`'s (angles are converted with the
FFI WCS's pixel scale).
"""
from __future__ import annotations

import functools
import math
import re
import threading
import warnings
import weakref
from dataclasses import dataclass
from typing import Callable, Sequence, Union

import astropy.units as u
import astropy.wcs.wcs
import numpy as np
from astropy.coordinates import ICRS, SkyCoord, UnitSphericalRepresentation, angular_separation
from astropy.io import fits
from astropy.wcs import WCS, WCSHDO_P14, NoConvergence, Sip, WCSHDO_safe, Wcsprm
from astropy.wcs.utils import proj_plane_pixel_scales, wcs_to_celestial_frame

from .. import fitswrite
from ..cube.index import CubeIndex
from ..errors import CoordinateError, CutoutSizeError, NotACubeError, OutsideCubeError
from ..fitsio import CARD
from .size import SizeElement, SizeInput, parse_size

#: Largest cutout side in pixels (the box after rounding, per axis).
MAX_CUTOUT_PIXELS = 1000

CoordInput = Union[SkyCoord, str, Sequence[Union[SkyCoord, str]]]


@dataclass(frozen=True)
class Box:
    """A cutout box in 0-based FFI pixel indices: columns ``[x0, x0+nx)``, rows ``[y0, y0+ny)``.

    ``x0``/``y0`` may be negative and the box may extend past the image; ``center`` is the
    target's 0-based pixel position ``(x, y)``.
    """

    x0: int
    y0: int
    nx: int
    ny: int
    center: tuple[float, float] = (math.nan, math.nan)

    @property
    def x1(self) -> int:
        return self.x0 + self.nx

    @property
    def y1(self) -> int:
        return self.y0 + self.ny

    def overlap(self, ncols: int, nrows: int) -> Box | None:
        """The part of the box on an ``ncols`` x ``nrows`` image, or None if there is none."""
        x0, x1 = max(self.x0, 0), min(self.x1, ncols)
        y0, y1 = max(self.y0, 0), min(self.y1, nrows)
        if x0 >= x1 or y0 >= y1:
            return None
        return Box(x0, y0, x1 - x0, y1 - y0, self.center)


def ffi_wcs(index: CubeIndex) -> WCS:
    """The cube's FFI WCS (with SIP), from the table row astrocut uses (``index.wcs_row``).

    Parsing a SIP header costs 20-45 ms (astropy's header handling), so it is parsed once
    per header text and each thread gets its own copy of that WCS (astropy WCS objects are
    not safe to share between threads; a copy costs ~0.1 ms), cached per thread. Callers
    must not modify the returned object. Raises NotACubeError if that WCS is unusable
    (malformed or missing keywords, a singular matrix, not celestial, or the image centre
    maps to no sky position).
    """
    parsed = _checked_wcs(index.wcs_header, index.ncols, index.nrows, index.wcs_row)
    copies = getattr(_thread, "copies", None)
    if copies is None:
        copies = _thread.copies = weakref.WeakKeyDictionary()
    wcs = copies.get(parsed)
    if wcs is None:
        with _copy_lock:  # the parsed WCS is only ever read, and by one copy at a time
            wcs = copies[parsed] = parsed.deepcopy()
    return wcs


#: Per thread: ``copies``, the thread's copy of each parsed WCS (an entry goes when its
#: parsed WCS leaves the parse cache and is collected).
_thread = threading.local()
_copy_lock = threading.Lock()


@functools.lru_cache(maxsize=64)
def _checked_wcs(header_text: str, ncols: int, nrows: int, row: int) -> WCS:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            wcs = _sip_wcs(header_text) or WCS(fits.Header.fromstring(header_text), relax=True)
            sky = wcs.all_pix2world([[ncols / 2, nrows / 2]], 0)
            if wcs.naxis != 2 or not wcs.has_celestial or not np.all(np.isfinite(sky)):
                raise ValueError("not a 2-D celestial WCS")
            det = np.linalg.det(wcs.pixel_scale_matrix)
            if not np.isfinite(det) or det == 0:
                raise ValueError("its pixel scale matrix is singular")
            wcs_to_celestial_frame(wcs)
    except Exception as exc:  # noqa: BLE001 - astropy raises many types for a malformed WCS
        raise NotACubeError(f"the cube's FFI WCS (frame {row}) is unusable: "
                            f"{type(exc).__name__}: {exc}") from None
    return wcs


#: astropy's SIP coefficient keywords (``astropy.wcs.wcs.SIP_KW``) and the SIP orders,
#: which it never passes to wcslib.
_SIP_KEYWORD = re.compile(r"^[AB]P?_(ORDER|1?[0-9]_1?[0-9][A-Z]?)$")
#: Keywords for which astropy's ``WCS(header)`` does more than SIP + wcslib (distortion
#: tables, SCAMP/TPV fixes): such a header takes astropy's own path.
_OTHER_DISTORTION = re.compile(r"^(CPDIS|CPERR|D2IM|DP[0-9]|DQ[0-9]|PV[0-9])")


def _sip_wcs(header_text: str) -> WCS | None:
    """``WCS(fits.Header.fromstring(header_text), relax=True)`` for a TAN-SIP FFI header,
    built as astropy builds it (the SIP matrices from the ``A/B/AP/BP`` cards, every other
    card to wcslib, then ``fix`` and ``set``) without its card-by-card header editing:
    ~0.5 ms instead of 10-45 ms. None when the header is not the plain case (orders missing
    or < 2, other distortions, a card that is not 80 characters), so the caller uses astropy.
    ``tests/library/test_cutout.py`` checks the result equals astropy's, value for value.

    It calls two private parts of astropy (``WCSBase.__init__``, ``WCS._naxis``): when they
    are missing or no longer do what they did (an error, or a WCS whose public
    ``pixel_shape``/``sip`` are not what was set), it returns None and astropy's public
    path is taken (``tests/library/test_cutout.py`` simulates both).
    """
    if len(header_text) % 80:
        return None
    sip: dict[str, float] = {}
    kept: list[str] = []
    for start in range(0, len(header_text), 80):
        card = header_text[start:start + 80]
        keyword = card[:8].strip()
        if _OTHER_DISTORTION.match(keyword):
            return None
        if _SIP_KEYWORD.match(keyword):
            if card[8:10] != "= ":
                return None
            try:
                sip[keyword] = float(card[10:].split("/", 1)[0].strip().replace("D", "E"))
            except ValueError:
                return None
        elif keyword != "END":
            kept.append(card)
    matrices = []
    for name in ("A", "B", "AP", "BP"):
        order = sip.get(f"{name}_ORDER")
        if order is None or order != int(order) or order < 2:
            return None
        m = int(order)
        matrix = np.zeros((m + 1, m + 1), np.double)
        for i in range(m + 1):
            for j in range(m - i + 1):
                matrix[i, j] = sip.get(f"{name}_{i}_{j}", 0.0)
        matrices.append(matrix)
    wcsprm = Wcsprm(header="".join(kept).encode("ascii"), relax=True)
    if wcsprm.naxis != 2 or not all(ctype.endswith("-SIP") for ctype in wcsprm.ctype):
        return None
    axes = {card[:8].strip(): card[10:].split("/", 1)[0] for card in kept if card.startswith("NAXIS")}
    naxis = [int(axes["NAXIS1"]), int(axes["NAXIS2"])] if {"NAXIS1", "NAXIS2"} <= axes.keys() else [0, 0]
    polynomials = Sip(*matrices, tuple(wcsprm.crpix))
    try:  # astropy's private parts (see above)
        wcs = WCS(naxis=2)
        _private_init()(wcs, polynomials, (None, None), wcsprm, (None, None))
        wcs.fix()
        wcs.wcs.set()
        wcs._naxis = naxis
        if wcs.sip is not polynomials or list(wcs.pixel_shape or (0, 0)) != naxis:
            return None
    except (AttributeError, TypeError, ValueError):
        return None
    return wcs


def _private_init() -> Callable[..., None]:
    """astropy's private WCS initialiser, ``WCSBase.__init__`` (AttributeError when gone)."""
    return astropy.wcs.wcs.WCSBase.__init__


def forget_wcs() -> None:
    """Drop every parsed FFI WCS (and so its per-thread copies)."""
    _checked_wcs.cache_clear()


def cutout_wcs(wcs: WCS, box: Box) -> WCS:
    """The FFI WCS (SIP kept) moved so that pixel (0, 0) is the box's first pixel (as astrocut).

    A copy with shifted reference pixels (the SIP polynomials are relative to CRPIX), which
    is what a header round trip gives, at a fraction of the cost.
    """
    moved = wcs.deepcopy()
    moved.wcs.crpix = wcs.wcs.crpix - np.array([box.x0, box.y0], dtype=float)
    if wcs.sip is not None:
        moved.sip = Sip(wcs.sip.a, wcs.sip.b, wcs.sip.ap, wcs.sip.bp, moved.wcs.crpix)
    return moved


#: Sample points per axis (at most) for the linear WCS fit; they span the pixel edges.
FIT_GRID = 11


def fit_linear_wcs(wcs: WCS, nx: int, ny: int) -> tuple[WCS, float, float]:
    """The linear TAN WCS that best matches ``wcs`` (e.g. TAN-SIP) on an ``nx`` x ``ny`` image.

    CRVAL is the sky position of the image centre. Sample points on a grid spanning the
    pixel edges (``-0.5 .. n-0.5``, 0-based, so 1-pixel-wide images are well posed) are
    projected onto the tangent plane at CRVAL, and the CD matrix and CRPIX are the linear
    least-squares solution there (residuals in degrees on the sky, no iteration).

    Returns:
        ``(linear_wcs, msep, sig)``: over all pixel centres, the maximum and the
        root-sum-square of the separation between the two WCSs, in degrees.
    """
    gx, gy, px, py = _fit_points(nx, ny)
    # One projection call for the fit grid, the centre and the pixel centres (elementwise,
    # so the same numbers as three calls).
    ra_all, dec_all = wcs.all_pix2world(np.concatenate([gx, [(nx - 1) / 2], px]),
                                        np.concatenate([gy, [(ny - 1) / 2], py]), 0)
    ngrid = gx.size
    ra, dec = ra_all[:ngrid], dec_all[:ngrid]
    crval = np.array([ra_all[ngrid], dec_all[ngrid]])
    true_ra, true_dec = ra_all[ngrid + 1:], dec_all[ngrid + 1:]

    linear = WCS(naxis=2)
    linear.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    linear.wcs.cunit = ["deg", "deg"]
    linear.wcs.radesys = wcs.wcs.radesys or "ICRS"
    linear.wcs.crval = crval
    linear.wcs.crpix = [0.0, 0.0]
    linear.wcs.cd = np.eye(2)
    # With CRPIX 0, CD = I and origin 1, "pixel" coordinates are the tangent-plane ones (deg).
    plane = np.column_stack(linear.wcs_world2pix(ra, dec, 1))
    design = np.column_stack([gx, gy, np.ones(ngrid)])
    solution = np.linalg.lstsq(design, plane, rcond=None)[0]
    cd, offset = solution[:2].T, solution[2]
    # plane = cd @ p0 + offset with p0 0-based; FITS: plane = cd @ (p0 + 1 - crpix).
    linear.wcs.cd = cd
    linear.wcs.crpix = 1.0 - np.linalg.solve(cd, offset)

    fit_ra, fit_dec = linear.wcs_pix2world(px, py, 0)
    seps = np.degrees(angular_separation(*np.radians([true_ra, true_dec, fit_ra, fit_dec])))
    return linear, float(seps.max()), float(np.sqrt(np.sum(seps ** 2)))


@functools.lru_cache(maxsize=64)
def _fit_points(nx: int, ny: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The fit's sample grid (spanning the pixel edges) and the pixel centres of an ``nx`` x
    ``ny`` image, flattened (0-based pixels). Read-only: shared by every fit of that size."""
    gx, gy = np.meshgrid(np.linspace(-0.5, nx - 0.5, min(nx + 1, FIT_GRID)),
                         np.linspace(-0.5, ny - 0.5, min(ny + 1, FIT_GRID)))
    px, py = np.meshgrid(np.arange(nx), np.arange(ny))
    points = tuple(np.ascontiguousarray(a.ravel(), dtype=float) for a in (gx, gy, px, py))
    for array in points:
        array.flags.writeable = False
    return points  # type: ignore[return-value]  # four arrays, as the signature says


def wcs_header_values(linear: WCS) -> dict[str, object]:
    """``{card.keyword: card.value for card in linear.to_header().cards}``, without astropy's
    Header: wcslib's header text (the same flags ``WCS.to_header()`` passes: 14 significant
    digits, the "safe" keywords) with each value read as astropy reads it (integers as int,
    other numbers as float, quoted strings unquoted, T/F as bool). For a WCS without SIP.
    """
    text = linear.wcs.to_header(WCSHDO_P14 | WCSHDO_safe)
    images = (text[start:start + CARD] for start in range(0, len(text), CARD))
    return {image[:8].rstrip(): fitswrite.card_value(image[10:]) for image in images
            if image[:8].rstrip() not in ("", "COMMENT") and image[8:10] == "= "}


#: What marks a position string as sexagesimal: colons, or h/d/m/s between digits
#: ("20:56:12 -47:07:12", "20h56m12s -47d07m12s"). The web page's resolver uses the same rule.
_SEXAGESIMAL = re.compile(r":|\d\s*[hdms]\s*\d|\d\s*s\b")


def _decimal_degrees(text: str) -> tuple[float, float] | None:
    """``(ra, dec)`` of ``"ra dec"``/``"ra, dec"`` in decimal degrees (ra in [0, 360),
    360 read as 0), None if ``text`` is not two numbers. Raises CoordinateError for values
    out of range or not finite."""
    parts = text.replace(",", " ").split()
    if len(parts) != 2:
        return None
    try:
        ra, dec = map(float, parts)
    except ValueError:
        return None
    if not (math.isfinite(ra) and math.isfinite(dec)):
        raise CoordinateError(f"coordinates must be finite, got ra={ra}, dec={dec}")
    if not 0.0 <= ra <= 360.0:
        raise CoordinateError(f"ra must be within [0, 360] degrees, got {ra:g}")
    if not -90.0 <= dec <= 90.0:
        raise CoordinateError(f"dec must be within [-90, 90] degrees, got {dec:g}")
    return ra % 360.0, dec


def parse_position(text: str) -> SkyCoord:
    """One ICRS position from text: ``"ra dec"`` (or ``"ra, dec"``) in decimal degrees, or
    sexagesimal with the RA in *hours* (``"20:56:12 -47:07:12"``, ``"20h56m12s -47d07m12s"``),
    as ``SkyCoord(text, unit=(hourangle, deg))`` reads it.

    Decimal degrees must lie in ``0 <= ra <= 360`` and ``-90 <= dec <= 90`` (no silent
    wrapping of ``ra = 400``). Raises CoordinateError.
    """
    degrees = _decimal_degrees(text)
    if degrees is not None:
        return SkyCoord(*degrees, unit="deg", frame="icrs")
    cleaned = " ".join(text.replace(",", " ").split())
    unit = (u.hourangle, u.deg) if _SEXAGESIMAL.search(cleaned) else u.deg
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)  # e.g. 'inf' inside a sexagesimal string
            coord = SkyCoord(cleaned, unit=unit, frame="icrs")
    except (ValueError, TypeError, AttributeError, ArithmeticError, RuntimeWarning, u.UnitsError) as exc:
        raise CoordinateError(f"cannot read {text!r} as a position: give 'RA Dec' in degrees (314.05 -47.12) "
                              f"or sexagesimal with RA in hours (20:56:12 -47:07:12): {exc}") from None
    if not coord.isscalar:
        raise CoordinateError(f"{text!r} is not one position")
    return coord


def parse_coordinates(coordinates: CoordInput) -> list[SkyCoord]:
    """Scalar ICRS SkyCoords from a SkyCoord (scalar or array), a list of SkyCoords, or
    position string(s) as :func:`parse_position` reads them (decimal degrees, or sexagesimal
    with RA in hours).

    Raises CoordinateError for unparseable, non-finite or out-of-range positions.
    """
    items = [coordinates] if isinstance(coordinates, (str, SkyCoord)) else coordinates
    if not isinstance(items, (list, tuple)) or not items:
        raise CoordinateError(f"coordinates must be SkyCoords or 'ra dec' strings, got {coordinates!r}")
    try:
        if all(isinstance(item, SkyCoord) for item in items):
            coords = items[0] if len(items) == 1 else SkyCoord(items)
        elif all(isinstance(item, str) for item in items):
            degrees = [_decimal_degrees(item) for item in items]
            if all(d is not None for d in degrees):  # the common case, without a SkyCoord per item
                ra, dec = zip(*[d for d in degrees if d is not None])
                coords = SkyCoord(list(ra), list(dec), unit="deg", frame="icrs")
            else:
                coords = SkyCoord([parse_position(item) for item in items])
        else:
            raise CoordinateError(f"coordinates must be SkyCoords or 'ra dec' strings, got {coordinates!r}")
        coords = coords.icrs.reshape(-1)
    except CoordinateError:
        raise
    except (ValueError, TypeError, AttributeError, u.UnitsError) as exc:
        raise CoordinateError(f"cannot use coordinates {coordinates!r}: {exc}") from None
    if len(coords) == 0:
        raise CoordinateError("no coordinates given")
    ra, dec = coords.ra.deg, coords.dec.deg
    bad = ~(np.isfinite(ra) & np.isfinite(dec))
    if bad.any():
        raise CoordinateError(f"coordinates must be finite, got ra={ra[bad][0]}, dec={dec[bad][0]}")
    return [coords[i] for i in range(len(coords))]


def cutout_box(wcs: WCS, coord: SkyCoord, size: SizeInput, *,
               image_shape: tuple[int, int] | None = None, cube_name: str = "the cube") -> Box:
    """The cutout box around ``coord``, computed exactly as astrocut 1.3.0 does.

    The target's 0-based pixel position ``c`` comes from ``coord.to_pixel(wcs)`` (SIP
    included; the same numbers as ``wcs.world_to_pixel``, but a position where the SIP
    inversion does not converge raises instead of returning a guess). Per axis the box is
    ``[round(c - s/2), round(c + s/2))`` with numpy's round-half-even, where ``s`` is the
    extent in pixels (angles divided by the WCS pixel scale). Both ends are rounded, so when ``c - s/2`` is exactly a half-integer the width
    is ``s ± 1``; a box that rounds to zero width becomes the pixel containing ``c``.

    Args:
        image_shape: ``(nrows, ncols)``; when given, a box wholly off the image raises
            OutsideCubeError naming ``cube_name``.

    Raises:
        CutoutSizeError: bad size, or a side longer than MAX_CUTOUT_PIXELS.
        OutsideCubeError: the position is off the image plane (no pixel position, or the SIP
            inversion does not converge: far from the image), or (with ``image_shape``) the
            box does not overlap the image; the message gives the distance from the image centre.
    """
    extents = parse_size(size)

    def where() -> str:  # for messages only
        return "({:.6f}, {:.6f})".format(*radec_deg(coord))

    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="All-NaN slice encountered")
            center = [float(v) for v in _to_pixel(wcs, coord)]
    except NoConvergence:  # far from the image: no pixel position
        center = [math.nan, math.nan]
    except (ValueError, TypeError, ArithmeticError) as exc:  # a WCS that cannot invert at all
        raise OutsideCubeError(f"{where()} cannot be placed on {cube_name}: {type(exc).__name__}: {exc}") from None
    if not all(math.isfinite(c) for c in center):
        raise OutsideCubeError(f"{where()} is not on {cube_name}: it is off the cube's footprint"
                               f"{_distance(wcs, coord, image_shape)}")

    lims = []
    for axis, (c, extent, name) in enumerate(zip(center, extents, ("x (columns)", "y (rows)"))):
        half = _extent_pixels(extent, wcs, axis) / 2
        lo, hi = int(np.round(c - half)), int(np.round(c + half))
        if lo == hi:
            lo = int(np.floor(c))
            hi = lo + 1
        if hi - lo > MAX_CUTOUT_PIXELS:
            raise CutoutSizeError(f"cutout of {hi - lo} pixels along {name} is above the limit of "
                                  f"{MAX_CUTOUT_PIXELS}")
        lims.append((lo, hi))
    (x0, x1), (y0, y1) = lims
    box = Box(x0, y0, x1 - x0, y1 - y0, (center[0], center[1]))
    if image_shape is not None and box.overlap(image_shape[1], image_shape[0]) is None:
        nrows, ncols = image_shape
        raise OutsideCubeError(
            f"{where()} is not on {cube_name}: it is off the cube's footprint{_distance(wcs, coord, image_shape)} "
            f"and falls at pixel "
            f"x={center[0]:.1f}, y={center[1]:.1f} (0-based), so the {box.nx}x{box.ny} box x=[{x0}, {x1}), "
            f"y=[{y0}, {y1}) misses the {ncols}x{nrows} image")
    return box


def radec_deg(coord: SkyCoord) -> tuple[float, float]:
    """``(coord.ra.deg, coord.dec.deg)``: the same numbers (numpy floats), read from the
    stored values when ``coord`` is an ICRS position held in degrees (astropy converts its
    representation on every ``ra``/``dec`` read, which costs more than a cutout's box)."""
    data = coord.data
    if (type(coord.frame) is ICRS and type(data) is UnitSphericalRepresentation
            and data.lon.unit == u.deg and data.lat.unit == u.deg):
        return data.lon.to_value(u.deg), data.lat.to_value(u.deg)
    return coord.ra.deg, coord.dec.deg


def _to_pixel(wcs: WCS, coord: SkyCoord) -> tuple[float, float]:
    """``coord.to_pixel(wcs, origin=0, mode="all")``: the same numbers, and when both the
    WCS and ``coord`` are ICRS (TESS FFIs are), without astropy's frame transform and WCS
    copy (a fifth of the time: it is ``wcs.all_world2pix`` of the ICRS degrees then)."""
    if _is_icrs(wcs) and type(coord.frame) is ICRS and type(coord.data) is UnitSphericalRepresentation:
        x, y = wcs.all_world2pix(*radec_deg(coord), 0)
        return x, y
    return coord.to_pixel(wcs, origin=0, mode="all")


#: Per FFI WCS object (they are cached and never modified): whether :func:`_to_pixel`'s
#: shortcut applies to it.
_icrs_wcs: weakref.WeakKeyDictionary[WCS, bool] = weakref.WeakKeyDictionary()


def _is_icrs(wcs: WCS) -> bool:
    """True if ``wcs`` is a 2-D longitude/latitude WCS in degrees in the ICRS frame, so that
    astropy's ``skycoord_to_pixel`` of an ICRS position is ``all_world2pix`` of its degrees."""
    known = _icrs_wcs.get(wcs)
    if known is None:
        try:
            known = (wcs.naxis == 2 and (wcs.wcs.lng, wcs.wcs.lat) == (0, 1)
                     and [str(unit) for unit in wcs.wcs.cunit] == ["deg", "deg"]
                     and type(wcs_to_celestial_frame(wcs)) is ICRS)
        except ValueError:  # no celestial frame
            known = False
        _icrs_wcs[wcs] = known
    return known


def _distance(wcs: WCS, coord: SkyCoord, image_shape: tuple[int, int] | None) -> str:
    """`` (N deg from the centre of its image, which reaches about R deg from it)``, or ``""``."""
    if image_shape is None:
        return ""
    nrows, ncols = image_shape
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            centre = wcs.pixel_to_world((ncols - 1) / 2, (nrows - 1) / 2)
            corner = wcs.pixel_to_world(-0.5, -0.5)
            return (f" ({centre.separation(coord).deg:.2f} deg from the centre of its image, which reaches "
                    f"about {centre.separation(corner).deg:.2f} deg from it)")
    except (ValueError, TypeError, ArithmeticError):
        return ""


def _extent_pixels(extent: SizeElement, wcs: WCS, axis: int) -> float:
    """An extent in pixels along image axis ``axis`` (0 = x/columns), as astrocut converts it."""
    if not isinstance(extent, u.Quantity):
        return extent
    if extent.unit == u.pixel:
        return extent.value
    scale = u.Quantity(proj_plane_pixel_scales(wcs)[axis], wcs.wcs.cunit[axis])
    return (extent / scale).decompose().value
