"""Which sector/camera/CCD's FFIs cover a sky position, from MAST's public footprint tables.

MAST publishes one JSON table per FFI product (:data:`FOOTPRINT_URLS`). A table is one JSON
object of columns, each a list with one element per FFI; two are read here:

* ``obs_id``: the FFI's observation, e.g. ``tess-s0001-1-1`` (sector 1, camera 1, CCD 1);
* ``s_region``: its footprint, ``POLYGON ra1 dec1 ra2 dec2 ...`` in ICRS degrees (a
  negative RA means RA + 360).

A table is read through :mod:`cubecut.storage` (so ``s3://`` honours the AWS environment,
unsigned by default: MAST's bucket is public) and parsed once per process and URL. A
table elsewhere in the same format (a mirror, a test's) is read the same way; the CLI takes
its URL from ``--footprints`` or ``CUBECUT_FOOTPRINT_URL`` / ``CUBECUT_TICA_FOOTPRINT_URL``.

The tests of a polygon are made on the plane tangent to the sky at the target
(gnomonic projection: great circles are straight lines there, so the test is exact for
the polygon's edges), for polygons whose corners lie within 60 degrees of the target (a
TESS CCD spans about 12 degrees).
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass

from .cube.index import sector_name
from .errors import FootprintTableError
from .storage import Location, get_bytes

#: MAST's footprint tables per product.
FOOTPRINT_URLS = {"SPOC": "s3://stpubdata/tess/public/footprints/tess_ffi_footprint_cache.json",
                  "TICA": "s3://stpubdata/tess/public/footprints/tica_ffi_footprint_cache.json"}
#: Where MAST keeps its cubes (SPOC at the top, TICA under ``tica/``).
MAST_CUBES = "s3://stpubdata/tess/public/mast/"
#: The TESS pixel scale (arcsec per pixel) that turns a cutout size in pixels into an angle.
TESS_ARCSEC_PER_PIXEL = 21.0
#: Polygons with a corner farther than this (degrees) from the target are not tested.
_MAX_CORNER_DEG = 60.0

_SECTOR_CAMERA_CCD = re.compile(r"s(\d{4})-(\d)-(\d)")


@dataclass(frozen=True)
class Footprint:
    """One FFI's footprint: its sector, camera, CCD (1-based) and polygon corners
    ``((ra, dec), ...)`` in ICRS degrees, RA in [0, 360)."""

    sector: int
    camera: int
    ccd: int
    corners: tuple[tuple[float, float], ...]

    def touches(self, ra: float, dec: float, radius_deg: float = 0.0) -> bool:
        """Whether the circle of ``radius_deg`` around (``ra``, ``dec``) (degrees) meets
        the polygon: the centre is inside it, or an edge passes within the radius."""
        plane = _project(self.corners, ra, dec)
        if plane is None:
            return False
        if _inside(plane):
            return True
        if radius_deg <= 0:
            return False
        limit = math.tan(math.radians(radius_deg))
        return any(_distance_to_origin(plane[i - 1], plane[i]) <= limit for i in range(len(plane)))


def footprint_url(product: str = "SPOC") -> str:
    """MAST's footprint table of ``product`` (``SPOC``/``TICA``)."""
    product = product.upper()
    if product not in FOOTPRINT_URLS:
        raise FootprintTableError(f"no footprint table for product {product!r}: SPOC or TICA")
    return FOOTPRINT_URLS[product]


def mast_cube_url(sector: int, camera: int, ccd: int, product: str = "SPOC", prefix: str = MAST_CUBES) -> str:
    """MAST's cube of one sector/camera/CCD: ``{prefix}tess-s0001-1-1-cube.fits`` (SPOC) or
    ``{prefix}tica/tica-s0001-1-1-cube.fits`` (TICA); ``prefix`` defaults to MAST's."""
    prefix = prefix if prefix.endswith("/") else prefix + "/"
    name = f"{sector_name(sector, camera, ccd, product.upper())}-cube.fits"
    return f"{prefix}tica/{name}" if product.upper() == "TICA" else f"{prefix}{name}"


_tables: dict[str, tuple[Footprint, ...]] = {}


def load_footprints(url: str, *, anon: bool | None = True) -> tuple[Footprint, ...]:
    """The footprints of a table (cached per process and URL; one GET the first time).

    Raises:
        ObjectNotFoundError, AccessDeniedError, StorageError: the table cannot be read.
        FootprintTableError: it is not a footprint table.
    """
    table = _tables.get(url)
    if table is None:  # threads asking at once each read it; one table is kept
        table = _tables[url] = parse_footprints(get_bytes(Location.parse(url, anon=anon))[0], url)
    return table


def clear_footprints() -> None:
    """Forget the tables read so far (the next call reads them again)."""
    _tables.clear()


def parse_footprints(data: bytes, what: str = "the footprint table") -> tuple[Footprint, ...]:
    """The footprints of a table's bytes; rows whose ``obs_id`` names no sector/camera/CCD
    (``sNNNN-C-D``) are left out."""
    try:
        columns = json.loads(data)
        obs_ids, regions = columns["obs_id"], columns["s_region"]
    except (ValueError, TypeError, KeyError) as exc:
        raise FootprintTableError(f"{what}: not a footprint table (a JSON object with the columns obs_id and "
                                  f"s_region): {type(exc).__name__}: {exc}") from None
    if not isinstance(obs_ids, list) or not isinstance(regions, list) or len(obs_ids) != len(regions):
        raise FootprintTableError(f"{what}: the columns obs_id and s_region are not lists of one length")
    found = []
    for row, (obs_id, region) in enumerate(zip(obs_ids, regions)):
        match = _SECTOR_CAMERA_CCD.search(str(obs_id))
        if match is None:
            continue
        sector, camera, ccd = (int(g) for g in match.groups())
        found.append(Footprint(sector, camera, ccd, _polygon(region, f"{what} row {row}")))
    return tuple(found)


def _polygon(region: object, what: str) -> tuple[tuple[float, float], ...]:
    parts = str(region).split()
    if not parts or parts[0].upper() != "POLYGON":
        raise FootprintTableError(f"{what}: s_region is not a POLYGON: {str(region)[:60]!r}")
    try:
        values = [float(v) for v in parts[1:]]
    except ValueError:
        raise FootprintTableError(f"{what}: s_region has a value that is not a number") from None
    if len(values) < 6 or len(values) % 2:
        raise FootprintTableError(f"{what}: s_region needs at least 3 (ra, dec) corners")
    return tuple((ra % 360.0, dec) for ra, dec in zip(values[::2], values[1::2]))


def _unit(ra: float, dec: float) -> tuple[float, float, float]:
    a, d = math.radians(ra), math.radians(dec)
    return math.cos(d) * math.cos(a), math.cos(d) * math.sin(a), math.sin(d)


def _project(corners: tuple[tuple[float, float], ...], ra: float, dec: float) -> list[tuple[float, float]] | None:
    """The corners on the plane tangent at (ra, dec) (radians of arc there); None if one
    is farther than :data:`_MAX_CORNER_DEG` from it."""
    centre = _unit(ra, dec)
    a, d = math.radians(ra), math.radians(dec)
    east = (-math.sin(a), math.cos(a), 0.0)
    north = (-math.sin(d) * math.cos(a), -math.sin(d) * math.sin(a), math.cos(d))
    floor = math.cos(math.radians(_MAX_CORNER_DEG))
    plane = []
    for corner in corners:
        v = _unit(*corner)
        depth = sum(p * q for p, q in zip(v, centre))
        if depth < floor:
            return None
        plane.append((sum(p * q for p, q in zip(v, east)) / depth, sum(p * q for p, q in zip(v, north)) / depth))
    return plane


def _inside(plane: list[tuple[float, float]]) -> bool:
    """Whether the origin is inside the polygon (even-odd rule)."""
    inside = False
    for (x0, y0), (x1, y1) in zip(plane, plane[1:] + plane[:1]):
        if (y0 > 0) != (y1 > 0) and 0 < x0 + (0 - y0) * (x1 - x0) / (y1 - y0):
            inside = not inside
    return inside


def _distance_to_origin(p: tuple[float, float], q: tuple[float, float]) -> float:
    """The distance from the origin to the segment pq."""
    dx, dy = q[0] - p[0], q[1] - p[1]
    length = dx * dx + dy * dy
    t = 0.0 if length == 0 else max(0.0, min(1.0, -(p[0] * dx + p[1] * dy) / length))
    return math.hypot(p[0] + t * dx, p[1] + t * dy)
