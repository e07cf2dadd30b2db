"""The TESScut web protocol: request parameters in, TESScut-shaped answers out (pure).

Clients (``astroquery.mast.Tesscut``, ``lightkurve``, plain ``requests``) send the
parameters as a query string (GET) or a form (POST); keys may repeat. The routes' models
(:mod:`.models`) validate them with the notations below and build the requests defined
here; a :class:`TesscutRequestError` message becomes TESScut's ``400 {"msg": ...}``.

Accepted forms, matching what the clients send:

* ``ra``, ``dec``: decimal degrees (ICRS), ``0 <= ra <= 360``, ``-90 <= dec <= 90``.
* ``radius``: a number in degrees, or a number with a unit (``0m``, ``30s``, ``1d``,
  ``3px`` at 21 arcsec per pixel, ``5 arcmin``); default 0.
* ``x``, ``y``: cutout size (columns, rows); ``y`` defaults to ``x``; ``units`` is ``px``
  (default), ``arcsec``/``s``, ``arcmin``/``m`` or ``deg``/``d`` (:data:`cubecut.cutout.size.UNITS`;
  :func:`cubecut.cutout.size.parse_size` checks them).
* ``sector``: absent (all), repeated (``sector=1&sector=2``), comma-separated, or a
  list literal (``sector=[28, 68]``, what ``Tesscut.download_cutouts`` sends).
* ``product``: ``SPOC`` (default) or ``TICA``.
"""
from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable, Sequence


from ..cube.index import CubeIndex
from ..cutout.size import Size, normalised_size
from ..errors import InputError

if TYPE_CHECKING:  # astropy's coordinates and WCS load on first use, not at a handler's import
    from astropy.coordinates import SkyCoord

API_PREFIX = "/tesscut/api/v0.1"
#: Largest cone radius for a sector query (TESS's whole field is 24 x 96 deg).
MAX_RADIUS_DEG = 30.0
_ANGLE_SUFFIX = re.compile(r"^\s*([-+0-9.eE]+)\s*(d|m|s|px)\s*$")
#: TESScut converts a radius in pixels with TESS's nominal 21 arcsec per pixel.
TESS_PIXEL_DEG = 21.0 / 3600
_PRODUCTS = ("SPOC", "TICA")
#: Part of every result-cache key: bump it when the zip or TPF layout changes, so that
#: results made by older code are never served again.
RESULT_FORMAT = 2  # 2: TPFs carry CHECKSUM/DATASUM


class TesscutRequestError(InputError):
    """A request TESScut would answer with ``400 {"msg": ...}``."""


def parse_radius(text: str | None) -> float:
    """A cone radius in degrees from TESScut's notations."""
    import astropy.units as u

    if text is None or text.strip() == "":
        return 0.0
    match = _ANGLE_SUFFIX.match(text)
    try:
        if match:
            value = float(match.group(1)) * {"d": 1.0, "m": 1 / 60, "s": 1 / 3600, "px": TESS_PIXEL_DEG}[match.group(2)]
        else:
            try:
                value = float(text)
            except ValueError:
                from astropy.coordinates import Angle

                value = Angle(text).deg
    except (ValueError, TypeError, ArithmeticError, u.UnitsError):
        raise TesscutRequestError(f"radius {text!r} is not an angle") from None
    if not math.isfinite(value) or value < 0 or value > MAX_RADIUS_DEG:
        raise TesscutRequestError(f"radius must be between 0 and {MAX_RADIUS_DEG} degrees, got {text!r}")
    return float(value)


def parse_sectors(values: Sequence[str]) -> frozenset[int] | None:
    """The sectors named by the values of the ``sector`` key, or None for all."""
    values = [v for v in values if v.strip() != ""]
    if not values:
        return None
    sectors: set[int] = set()
    for value in values:
        for token in re.split(r"[,\s]+", value.strip().strip("[]()")):
            if not token:
                continue
            if len(token) > 4 or not token.isdigit():
                raise TesscutRequestError(f"sector must be a whole number (1-9999) or a list of them, got {value!r}")
            sector = int(token)
            if not 1 <= sector <= 9999:
                raise TesscutRequestError(f"sector {sector} is out of range")
            sectors.add(sector)
    if not sectors:
        raise TesscutRequestError(f"no sector in {values!r}")
    return frozenset(sectors)


@dataclass(frozen=True)
class SectorRequest:
    """``sector``: the cubes of ``product`` whose image the cone of ``radius_deg`` (degrees)
    around ``coord`` touches."""

    coord: SkyCoord
    radius_deg: float
    product: str


@dataclass(frozen=True)
class CutoutRequest:
    """``astrocut``: a cutout of ``size`` (columns, rows) around ``coord`` from the cubes of
    ``product`` in ``sectors`` (sector numbers; None: all)."""

    coord: SkyCoord
    size: Size
    sectors: frozenset[int] | None
    product: str

    def cache_key(self, cube_versions: Sequence[str]) -> str:
        """The result-cache key (:func:`result_key`) of the request's canonical form: equal
        for requests that must give the same zip (``sector=1,2`` and ``sector=2&sector=1``;
        ``units=arcmin`` and the same angle in ``units=d``), positions at full precision."""
        return result_key({"request": {"ra": self.coord.ra.deg, "dec": self.coord.dec.deg,
                                       "size": normalised_size(self.size),
                                       "sectors": sorted(self.sectors) if self.sectors else None,
                                       "product": self.product}}, cube_versions)


def result_key(request: dict, cube_versions: Sequence[str]) -> str:
    """The result-cache key of ``request`` (its canonical form, JSON-ready) read from the
    cubes ``cube_versions``: changes whenever the request, any cube it reads, or the TPF
    format (:data:`RESULT_FORMAT`) changes."""
    text = json.dumps({**request, "cubes": sorted(cube_versions), "format": RESULT_FORMAT}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def sector_results(cubes: Iterable[CubeIndex]) -> dict:
    """The ``sector`` routes' JSON: ``{"results": [...]}``, one element per cube."""
    return {"results": [{"sectorName": cube.sector_name, "sector": f"{cube.sector:04d}", "camera": str(cube.camera),
                         "ccd": str(cube.ccd)} for cube in cubes]}


def member_name(sector_name: str, ra: float, dec: float, nx: int, ny: int) -> str:
    """TESScut's zip member name, e.g. ``tess-s0001-4-2_84.291188_-80.469120_35x45_astrocut.fits``."""
    return f"{sector_name}_{ra:.6f}_{dec:.6f}_{nx}x{ny}_astrocut.fits"
