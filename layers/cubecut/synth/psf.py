"""Point-spread function: pixel-integrated Gaussian stamps and their rendering into an image.

A star at 0-based pixel coordinates (x, y) puts on pixel (col, row) the fraction
``Px(col) * Py(row)`` of its flux, where ``Px(col)`` is the integral of a unit Gaussian
centred on x with width sigma over [col - 0.5, col + 0.5) (likewise for rows). Stamps are
(2 * HALF_WIDTH + 1) pixels square (> 99.9 % of the flux for sigma <= 1.2 px). Light that
would fall on collateral pixels, or outside the crop, is dropped.
"""
from __future__ import annotations

import numpy as np

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
