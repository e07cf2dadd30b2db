"""Where a moving target's path falls on cubes.

For each frame of a cube: the target's position at that frame's time (see
:mod:`.ephemeris` for which time), its 0-based pixel position through the cube's FFI WCS
(the frame astrocut takes the cutout WCS from, ``index.wcs_row``), and the box of a
fixed size centred on it. Also which cubes (sector/camera/CCD) a path crosses, with
rectangles covering it for static cutouts (astrocut's ``path_to_footprints``).

A frame counts as on a cube when the target's centre is on the cube's image,
``-0.5 <= x < ncols - 0.5`` and the same for y (pixel ``i`` spans ``[i - 0.5, i + 0.5)``).
TESS CCDs do not overlap on the sky, so at any time at most one cube of a sector holds
the target.
"""
from __future__ import annotations

import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Sequence

import astropy.units as u
import numpy as np
from astropy.coordinates import SkyCoord
from astropy.wcs import WCS, NoConvergence
from astropy.wcs.utils import proj_plane_pixel_scales

from ..cube.index import CubeIndex, sector_name
from ..cutout.geometry import MAX_CUTOUT_PIXELS, Box, ffi_wcs
from ..cube.index_cache import load_index
from ..cutout.size import SizeInput, parse_size
from ..errors import CutoutSizeError
from ..storage import ReadStats, carrying_deadlines
from .ephemeris import Ephemeris

#: A position farther than this from a CCD's centre cannot be on it (TESS CCDs are ~12°
#: across) and is not projected (far from the tangent point TAN/SIP stop being meaningful).
MAX_CENTRE_SEPARATION_DEG = 15.0
#: Largest sky error (arcsec) of a pixel position found by inverting the SIP WCS.
INVERSION_TOLERANCE_ARCSEC = 1.0
#: astrocut's default largest footprint, in pixels.
MAX_FOOTPRINT_PIXELS = 10000


def frame_times(index: CubeIndex, barycentric: bool) -> np.ndarray:
    """Per frame, the time an ephemeris is evaluated at (TJD days): the mid-time
    ``(TSTART + TSTOP) / 2`` (BTJD), or, for ephemerides of instants, that minus
    BARYCORR (the spacecraft's TDB time)."""
    times = index.time_arrays()
    mid = 0.5 * (times["tstart"] + times["tstop"])
    return mid if barycentric else mid - times["barycorr"]


def pixel_positions(wcs: WCS, ra: np.ndarray, dec: np.ndarray, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """0-based pixel positions ``(x, y)`` of sky positions (degrees) on an image of
    ``shape`` = (rows, cols); NaN where a position is not on the image."""
    ra, dec = np.atleast_1d(ra).astype(np.float64), np.atleast_1d(dec).astype(np.float64)
    x, y = np.full(ra.shape, np.nan), np.full(ra.shape, np.nan)
    nrows, ncols = shape
    centre = SkyCoord(*wcs.all_pix2world([[(ncols - 1) / 2, (nrows - 1) / 2]], 0)[0], unit="deg")
    near = SkyCoord(ra, dec, unit="deg").separation(centre).deg <= MAX_CENTRE_SEPARATION_DEG
    if not near.any():
        return x, y
    world = np.column_stack([ra[near], dec[near]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            pixels = wcs.all_world2pix(world, 0, quiet=True)
        except NoConvergence as exc:
            pixels = exc.best_solution
        back = SkyCoord(*wcs.all_pix2world(pixels, 0).T, unit="deg")
    exact = back.separation(SkyCoord(*world.T, unit="deg")).arcsec <= INVERSION_TOLERANCE_ARCSEC
    px, py = pixels[:, 0], pixels[:, 1]
    on = exact & (px >= -0.5) & (px < ncols - 0.5) & (py >= -0.5) & (py < nrows - 0.5)
    where = np.flatnonzero(near)[on]
    x[where], y[where] = px[on], py[on]
    return x, y


def pixel_size(size: SizeInput, wcs: WCS) -> tuple[int, int]:
    """A moving cutout's ``(nx, ny)`` in whole pixels: numbers are pixels, angles are
    converted with the WCS pixel scale; each rounded to the nearest integer >= 1.

    Raises CutoutSizeError for bad sizes or a side above MAX_CUTOUT_PIXELS.
    """
    result = []
    for axis, extent in enumerate(parse_size(size)):
        if isinstance(extent, u.Quantity):
            scale = u.Quantity(proj_plane_pixel_scales(wcs)[axis], wcs.wcs.cunit[axis])
            value = extent.value if extent.unit == u.pixel else (extent / scale).decompose().value
        else:
            value = float(extent)
        pixels = max(1, int(round(value)))
        if pixels > MAX_CUTOUT_PIXELS:
            raise CutoutSizeError(f"a moving cutout of {pixels} pixels is above the limit of {MAX_CUTOUT_PIXELS}")
        result.append(pixels)
    return result[0], result[1]


def box_corners(x: np.ndarray, y: np.ndarray, nx: int, ny: int) -> tuple[np.ndarray, np.ndarray]:
    """0-based first column/row of ``nx`` x ``ny`` boxes centred on positions ``(x, y)``.

    ``round(c - (n - 1) / 2)`` (half to even): the target then lies within half a pixel
    of the box's middle pixel coordinate ``(n - 1) / 2`` on each axis. (astrocut's
    ``center_on_path`` uses a static cutout's ``round(c - n/2)``, which puts the target
    half a pixel past the middle on average and up to a whole pixel off on each axis.)
    """
    return (np.rint(np.asarray(x) - (nx - 1) / 2).astype(np.int64),
            np.rint(np.asarray(y) - (ny - 1) / 2).astype(np.int64))


@dataclass(frozen=True, eq=False)
class PathOnCube:
    """The frames of one cube on which the target is, with its positions.

    ``frames`` are 0-based cube frame indices (increasing); ``ra``/``dec`` degrees;
    ``x``/``y`` 0-based FFI pixel positions through the cube's WCS; ``times`` the TJD
    each position was evaluated at.
    """

    cube: str
    index: CubeIndex
    frames: np.ndarray
    times: np.ndarray
    ra: np.ndarray
    dec: np.ndarray
    x: np.ndarray
    y: np.ndarray

    @property
    def nframes(self) -> int:
        return len(self.frames)


def path_on_cube(ephemeris: Ephemeris, index: CubeIndex, cube: str = "") -> PathOnCube:
    """The frames of a cube (given by its index; ``cube`` names it) that show the target."""
    times = frame_times(index, ephemeris.barycentric)
    frames = np.flatnonzero(ephemeris.covers(times))
    ra, dec = ephemeris.at(times[frames])
    x, y = pixel_positions(ffi_wcs(index), ra, dec, (index.nrows, index.ncols))
    on = np.isfinite(x)
    return PathOnCube(cube, index, frames[on], times[frames][on], ra[on], dec[on], x[on], y[on])


@dataclass(frozen=True)
class Footprint:
    """A rectangle covering part of a path: ``box`` in 0-based FFI pixels, and the
    ``coordinates`` and ``size`` (nx, ny) that re-create exactly this box with a static
    cutout (the sky position of pixel ``(x0 + nx/2, y0 + ny/2)``, as astrocut's)."""

    box: Box
    coordinates: SkyCoord

    @property
    def size(self) -> tuple[int, int]:
        return self.box.nx, self.box.ny


def path_to_footprints(x: np.ndarray, y: np.ndarray, size: tuple[int, int], wcs: WCS, *,
                       max_pixels: int = MAX_FOOTPRINT_PIXELS) -> list[Footprint]:
    """Rectangles of at most ``max_pixels`` that together contain the ``size`` = (nx, ny)
    moving box (:func:`box_corners`) at every path position ``(x, y)`` (0-based pixels,
    in path order).

    As astrocut's ``path_to_footprints``: consecutive boxes are merged while the merged
    rectangle stays within ``max_pixels`` (a single box larger than that is kept whole).
    """
    nx, ny = size
    x0s, y0s = box_corners(x, y, nx, ny)
    bounds: list[list[int]] = []
    for x0, y0 in zip(x0s.tolist(), y0s.tolist()):
        current = [x0, y0, x0 + nx, y0 + ny]
        if bounds:
            last = bounds[-1]
            merged = [min(last[0], x0), min(last[1], y0), max(last[2], x0 + nx), max(last[3], y0 + ny)]
            if (merged[2] - merged[0]) * (merged[3] - merged[1]) <= max_pixels:
                bounds[-1] = merged
                continue
        bounds.append(current)
    footprints = []
    for x0, y0, x1, y1 in bounds:
        world = wcs.pixel_to_world(x0 + (x1 - x0) / 2, y0 + (y1 - y0) / 2)
        footprints.append(Footprint(Box(x0, y0, x1 - x0, y1 - y0), SkyCoord(world.ra, world.dec, frame="icrs")))
    return footprints


@dataclass(frozen=True)
class PathCrossing:
    """One cube that a path crosses: which cube, how many frames show the target, the
    first and last of their times (TJD, as evaluated), and footprints covering the path
    there (empty unless a size was given)."""

    cube: str
    product: str
    sector: int
    camera: int
    ccd: int
    frames: int
    start: float
    stop: float
    footprints: list[Footprint] = field(default_factory=list)

    @property
    def sector_name(self) -> str:
        """TESScut's name, e.g. ``tess-s0001-1-3`` (``tica-...`` for TICA)."""
        return sector_name(self.sector, self.camera, self.ccd, self.product)


def paths_on_cubes(ephemeris: Ephemeris, cubes: Sequence[str], *, threads: int = 8,
                   stats: ReadStats | None = None) -> list[PathOnCube]:
    """:func:`path_on_cube` for each cube URL (indexes loaded concurrently), in input order,
    including cubes the path misses (``nframes == 0``)."""
    def one(url: str) -> PathOnCube:
        return path_on_cube(ephemeris, load_index(url, stats), url)

    with ThreadPoolExecutor(max_workers=max(1, min(threads, len(cubes)))) as pool:
        return list(pool.map(carrying_deadlines(one), cubes))


def path_crossings(ephemeris: Ephemeris, cubes: Sequence[str], *, size: SizeInput | None = None,
                   max_pixels: int = MAX_FOOTPRINT_PIXELS, threads: int = 8,
                   stats: ReadStats | None = None) -> list[PathCrossing]:
    """The cubes (of ``cubes``: URLs) that the path crosses, sorted by sector, camera, CCD.

    With ``size`` (as for a moving cutout), each crossing carries footprints of at most
    ``max_pixels`` covering the ``size`` box around every position on that cube.
    Only cube indexes are read (sidecars, or the cube headers and table).
    """
    crossings = []
    for path in paths_on_cubes(ephemeris, cubes, threads=threads, stats=stats):
        if not path.nframes:
            continue
        index = path.index
        footprints = []
        if size is not None:
            wcs = ffi_wcs(index)
            footprints = path_to_footprints(path.x, path.y, pixel_size(size, wcs), wcs, max_pixels=max_pixels)
        crossings.append(PathCrossing(path.cube, index.product, index.sector, index.camera, index.ccd,
                                      path.nframes, float(path.times[0]), float(path.times[-1]), footprints))
    return sorted(crossings, key=lambda c: (c.sector, c.camera, c.ccd, c.cube))
