"""What the camera sees in one crop of one sector/camera/CCD, frame after frame.

The constant star field is rendered once; each frame adds the variable stars' changes
and the background of its time. Noise is added by the caller (``ffi``).

Point-spread function: a star at 0-based pixel coordinates (x, y) puts on pixel
(col, row) the fraction ``Px(col) * Py(row)`` of its flux, where ``Px(col)`` is the
integral of a unit Gaussian centred on x with width sigma over [col - 0.5, col + 0.5)
(likewise for rows). Stamps are (2 * HALF_WIDTH + 1) pixels square (> 99.9 % of the flux
for sigma <= 1.2 px). Light that would fall on collateral pixels, or outside the crop, is
dropped.

Sky background (e-/s per pixel): zodiacal light plus Earth/Moon scattered light.

- Zodiacal light: a per-camera level (camera 1 looks closest to the ecliptic) with a 15 %
  planar gradient across the CCD, drifting by +-3 % over the sector.
- Scattered light: a glow from one CCD edge that grows as each ~13.7-day orbit nears
  perigee, ``exp(-(orbit_end - t) / SCATTER_TIMESCALE)``.
Directions are drawn per (seed, sector, camera, ccd). Collateral pixels get no sky. Maps
are functions of absolute FFI pixel position, so a crop's background is the crop of the
full background.
"""
from __future__ import annotations

import numpy as np

from .geometry import science_mask
from .sector import SKY, Sector, generator
from .stars import NONE, Stars, draw_stars

HALF_WIDTH = 4
WIDTH = 2 * HALF_WIDTH + 1
#: PSF sigma (pixels) on the camera's optical axis and its growth toward the field edge.
SIGMA_AXIS = 0.85
SIGMA_GROWTH = 0.35
#: Distance (pixels) from the optical axis at which sigma reaches SIGMA_AXIS + SIGMA_GROWTH
#: (about the far corner of a CCD).
FIELD_RADIUS = 2900.0
#: Stars rendered per batch (bounds memory to ~50 MB).
BATCH = 32768


def psf_sigma(x: np.ndarray, y: np.ndarray, axis_xy: tuple[float, float]) -> np.ndarray:
    """Gaussian sigma (pixels) at 0-based pixel (x, y) given the optical axis' pixel position:
    SIGMA_AXIS on the axis, growing quadratically to SIGMA_AXIS + SIGMA_GROWTH at FIELD_RADIUS."""
    r2 = ((x - axis_xy[0]) ** 2 + (y - axis_xy[1]) ** 2) / FIELD_RADIUS**2
    return SIGMA_AXIS + SIGMA_GROWTH * np.minimum(r2, 1.0)


def erf(z: np.ndarray) -> np.ndarray:
    """Error function, Abramowitz & Stegun 7.1.26 (absolute error < 1.5e-7)."""
    a = np.abs(z)
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    return np.copysign(1.0 - poly * np.exp(-a * a), z)


def _profile(centre: np.ndarray, sigma: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First pixel index of each star's stamp and the (n, WIDTH) pixel-integrated 1-D profile."""
    first = np.rint(centre).astype(np.int64) - HALF_WIDTH
    edges = first[:, None] + np.arange(WIDTH + 1) - 0.5 - centre[:, None]
    cdf = erf(edges / (np.sqrt(2.0) * sigma[:, None]))
    return first, 0.5 * np.diff(cdf, axis=1)


def footprints(x: np.ndarray, y: np.ndarray, sigma: np.ndarray,
               sky: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where each star's light lands in an image whose sky pixels are ``sky`` (bool, rows x cols).

    Returns ``(star, pixel, weight)``: the star's index into x/y, the flat (row-major) pixel
    index, and the fraction of the star's flux on that pixel. Entries are grouped by star,
    in star order.
    """
    rows, cols = sky.shape
    x0, wx = _profile(x, sigma)
    y0, wy = _profile(y, sigma)
    px = (x0[:, None] + np.arange(WIDTH))[:, None, :]
    py = (y0[:, None] + np.arange(WIDTH))[:, :, None]
    inside = (px >= 0) & (px < cols) & (py >= 0) & (py < rows)
    flat = py * cols + px
    keep = inside & sky.ravel()[np.where(inside, flat, 0)]
    star = np.broadcast_to(np.arange(len(x))[:, None, None], keep.shape)
    weight = wy[:, :, None] * wx[:, None, :]
    return star[keep], flat[keep], weight[keep]


def render(x: np.ndarray, y: np.ndarray, flux: np.ndarray, sigma: np.ndarray,
           sky: np.ndarray) -> np.ndarray:
    """Image (float64, e-/s per pixel) of stars with ``flux`` (e-/s) on the ``sky`` pixels.

    Each pixel sums its stars' contributions in star order, so an image of a crop equals
    the same crop of the full image whenever it is given the same stars (in the same order)
    that touch it.
    """
    image = np.zeros(sky.size)
    for lo in range(0, len(x), BATCH):
        part = slice(lo, lo + BATCH)
        star, pixel, weight = footprints(x[part], y[part], sigma[part], sky)
        np.add.at(image, pixel, weight * flux[part][star])
    return image.reshape(sky.shape)


#: Zodiacal level (e-/s/pixel) per camera.
ZODI = {1: 140.0, 2: 80.0, 3: 55.0, 4: 45.0}
#: Peak scattered light (e-/s/pixel at the bright edge, end of orbit) per camera.
SCATTER = {1: 400.0, 2: 180.0, 3: 80.0, 4: 50.0}
SCATTER_TIMESCALE = 1.2
ZODI_GRADIENT = 0.15
ZODI_DRIFT = 0.03
#: Centre and half-size (pixels) of the science area, for normalised coordinates.
CENTRE_X, CENTRE_Y, HALF_SIZE = 1067.5, 1023.5, 1024.0


class Background:
    """Background images of the crop ``sky.shape`` (rows x cols from FFI pixel (0, 0))."""

    def __init__(self, sector: Sector, sky: np.ndarray, seed: int):
        rng = generator(seed, sector, SKY)
        zodi_angle, glow_angle = rng.uniform(0.0, 2 * np.pi, 2)
        rows, cols = sky.shape
        u = ((np.arange(cols) - CENTRE_X) / HALF_SIZE)[None, :]
        v = ((np.arange(rows) - CENTRE_Y) / HALF_SIZE)[:, None]
        tilt = np.cos(zodi_angle) * u + np.sin(zodi_angle) * v
        self._zodi = (ZODI[sector.camera] * (1.0 + ZODI_GRADIENT * tilt) * sky).astype(np.float32)
        # 1 at the bright edge, 0 at the opposite one, falling off quadratically.
        glow = np.clip(0.5 * (1.0 + np.cos(glow_angle) * u + np.sin(glow_angle) * v), 0.0, 1.0) ** 2
        self._glow = (SCATTER[sector.camera] * glow * sky).astype(np.float32)
        self._sector = sector

    def __call__(self, t: float) -> np.ndarray:
        """Background (float32, e-/s per pixel) at BTJD ``t``."""
        s = self._sector
        middle = 0.5 * (s.start + s.end)
        orbit_end = middle if t < middle else s.end
        drift = 1.0 + ZODI_DRIFT * (2.0 * (t - s.start) / (s.end - s.start) - 1.0)
        scatter = np.exp(-max(orbit_end - t, 0.0) / SCATTER_TIMESCALE)
        return self._zodi * np.float32(drift) + self._glow * np.float32(scatter)


class Scene:
    """Expected signal (e-/s per pixel) of the crop rows [0, rows) x cols [0, cols).

    Attributes: ``sky`` (bool, pixels that see the sky), ``stars`` (the stars whose nearest
    pixel is in the crop: the catalog), ``static`` (float32 image of all stars at their mean
    flux, including the PSF wings of stars just outside the crop).
    """

    def __init__(self, sector: Sector, shape: tuple[int, int], seed: int):
        self.sky = science_mask(shape)
        everything = draw_stars(sector, seed)
        self.stars = everything.within(shape)
        near = everything.within(shape, margin=HALF_WIDTH + 1)
        axis_xy = tuple(sector.wcs.wcs_world2pix([[sector.ra, sector.dec]], 0)[0])
        sigma = psf_sigma(near.x, near.y, axis_xy)
        self.static = render(near.x, near.y, near.flux, sigma, self.sky).astype(np.float32)

        varies = near.kind != NONE
        self._variables: Stars = near.select(varies)
        star, pixel, weight = footprints(self._variables.x, self._variables.y, sigma[varies], self.sky)
        self._var_star, self._var_weight = star, weight
        self._var_pixels, self._var_slot = np.unique(pixel, return_inverse=True)
        self._background = Background(sector, self.sky, seed)

    def star_image(self, t: float) -> np.ndarray:
        """Stars only (float32, e-/s per pixel) at BTJD ``t``: the static field plus the
        variable stars' departures from their mean flux."""
        image = self.static.copy()
        v = self._variables
        if len(v):
            change = v.flux * (v.relative_flux(t) - 1.0)
            delta = np.bincount(self._var_slot, self._var_weight * change[self._var_star],
                                minlength=len(self._var_pixels))
            image.ravel()[self._var_pixels] += delta.astype(np.float32)
        return image

    def signal(self, t: float) -> np.ndarray:
        """Expected image (float32, e-/s per pixel) at BTJD ``t``: stars + sky background."""
        return self.star_image(t) + self._background(t)
