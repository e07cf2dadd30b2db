"""What the camera sees in one crop of one sector/camera/CCD, frame after frame.

The constant star field is rendered once; each frame adds the variable stars' changes
and the background of its time. Noise is added by the caller (``ffi``).
"""
from __future__ import annotations

import numpy as np

from .geometry import science_mask
from .psf import HALF_WIDTH, footprints, psf_sigma, render
from .sector import Sector
from .sky import Background
from .stars import Stars, draw_stars
from .variability import NONE, relative_flux


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
            change = v.flux * (relative_flux(v.kind, v.period, v.amplitude, v.epoch, v.duration, t) - 1.0)
            delta = np.bincount(self._var_slot, self._var_weight * change[self._var_star],
                                minlength=len(self._var_pixels))
            image.ravel()[self._var_pixels] += delta.astype(np.float32)
        return image

    def signal(self, t: float) -> np.ndarray:
        """Expected image (float32, e-/s per pixel) at BTJD ``t``: stars + sky background."""
        return self.star_image(t) + self._background(t)
