"""Sky background (e-/s per pixel): zodiacal light plus Earth/Moon scattered light.

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

from .sector import SKY, Sector, generator

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
