"""The synthetic star population of one sector/camera/CCD, and its public catalog.

Stars are drawn once for the whole FFI from a generator seeded by
``(seed, sector, camera, ccd)``, uniformly over the science pixels, so any crop sees exactly
the stars the full FFI has there. TESS magnitudes follow dN/dT ~ 10**(0.3 T) between
T_MIN and T_MAX (many faint, few bright) with a surface density that rises toward the
Galactic plane; flux = 15,000 e-/s * 10**(-0.4 (T - 10)) (the TESS zero point).
About a tenth of the stars brighter than T = 13.5 vary: half sinusoidally, half with
box-shaped transits (:meth:`Stars.relative_flux`).
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
from astropy.coordinates import SkyCoord
from astropy.table import Table

from .geometry import SCIENCE_COLS, SCIENCE_ROWS, crop_shape
from .sector import STARS, Sector, generator, load_sector

T_MIN, T_MAX = 6.0, 15.5
#: Slope of log10 dN/dT (per magnitude).
LF_SLOPE = 0.3
#: e-/s of a T = 10 star.
FLUX_T10 = 15000.0
#: Plate scale, arcsec per pixel.
PIXEL_ARCSEC = 21.0
#: Fraction of stars brighter than VARIABLE_TMAX that vary.
VARIABLE_TMAX = 13.5
VARIABLE_FRACTION = 0.1
#: Variability kinds (``Stars.kind``) and their catalog names.
NONE, SINE, TRANSIT = 0, 1, 2
KIND_NAMES = {NONE: "none", SINE: "sine", TRANSIT: "transit"}


@dataclass(frozen=True)
class Stars:
    """Star arrays (one entry per star). x = col, y = row: 0-based FFI pixel coordinates.

    flux in e-/s; period, epoch (BTJD) and duration in days; amplitude is the fractional
    semi-amplitude (sine) or the fractional transit depth (transit); kind is a
    variability code (NONE, SINE or TRANSIT).
    """

    x: np.ndarray
    y: np.ndarray
    tmag: np.ndarray
    flux: np.ndarray
    kind: np.ndarray
    period: np.ndarray
    amplitude: np.ndarray
    epoch: np.ndarray
    duration: np.ndarray

    def __len__(self) -> int:
        return len(self.x)

    def select(self, keep: np.ndarray) -> "Stars":
        """The stars where ``keep`` (bool mask or index array) selects, in the same order."""
        return Stars(**{f.name: getattr(self, f.name)[keep] for f in fields(self)})

    def within(self, shape: tuple[int, int], margin: float = 0.0) -> "Stars":
        """Stars whose nearest pixel lies in the crop rows [0, rows), cols [0, cols),
        widened by ``margin`` pixels on every side."""
        rows, cols = shape
        keep = (
            (self.x >= -0.5 - margin)
            & (self.x < cols - 0.5 + margin)
            & (self.y >= -0.5 - margin)
            & (self.y < rows - 0.5 + margin)
        )
        return self.select(keep)

    def relative_flux(self, t: float) -> np.ndarray:
        """Flux at BTJD ``t`` relative to the mean (1.0 = constant), one value per star.

        SINE: ``1 + amplitude * sin(2 pi (t - epoch) / period)``.
        TRANSIT: ``1 - amplitude`` while ``t`` is within ``duration / 2`` of a mid-transit
        ``epoch + k * period``, else 1 (a box-shaped dip; the exposure is sampled at ``t``).
        """
        out = np.ones(len(self))
        sine = self.kind == SINE
        out[sine] += self.amplitude[sine] * np.sin(2 * np.pi * (t - self.epoch[sine]) / self.period[sine])
        transit = self.kind == TRANSIT
        phase = (t - self.epoch[transit]) / self.period[transit]
        offset = (phase - np.round(phase)) * self.period[transit]
        out[transit] -= np.where(np.abs(offset) < 0.5 * self.duration[transit], self.amplitude[transit], 0.0)
        return out


def surface_density(galactic_latitude: float) -> float:
    """Stars per square degree brighter than T_MAX at a Galactic latitude (degrees)."""
    return 500.0 + 3000.0 * np.exp(-abs(galactic_latitude) / 10.0)


def draw_stars(sector: Sector, seed: int) -> Stars:
    """All stars on the science pixels of the full FFI, deterministic for (seed, sector, camera, ccd)."""
    rng = generator(seed, sector, STARS)
    ra0, dec0 = sector.wcs.wcs.crval
    b = SkyCoord(ra0, dec0, unit="deg").galactic.b.deg
    area_deg2 = (
        (SCIENCE_ROWS[1] - SCIENCE_ROWS[0]) * (SCIENCE_COLS[1] - SCIENCE_COLS[0]) * (PIXEL_ARCSEC / 3600.0) ** 2
    )
    n = int(round(surface_density(b) * area_deg2))

    x = rng.uniform(SCIENCE_COLS[0] - 0.5, SCIENCE_COLS[1] - 0.5, n)
    y = rng.uniform(SCIENCE_ROWS[0] - 0.5, SCIENCE_ROWS[1] - 0.5, n)
    # Inverse CDF of dN/dT ~ 10**(LF_SLOPE T) on [T_MIN, T_MAX].
    span = 10 ** (LF_SLOPE * (T_MAX - T_MIN)) - 1.0
    tmag = T_MIN + np.log10(1.0 + rng.uniform(0.0, 1.0, n) * span) / LF_SLOPE
    flux = FLUX_T10 * 10 ** (-0.4 * (tmag - 10.0))

    u_var, u_kind, u_period, u_amp, u_phase, u_dur = rng.uniform(0.0, 1.0, (6, n))
    variable = (tmag < VARIABLE_TMAX) & (u_var < VARIABLE_FRACTION)
    kind = np.where(variable, np.where(u_kind < 0.5, SINE, TRANSIT), NONE).astype(np.int8)
    is_sine = kind == SINE
    is_transit = kind == TRANSIT
    # Sines: P in 0.3-12 d (log-uniform), 0.2-5 % semi-amplitude.
    # Transits: P in 1-10 d (log-uniform), 0.3-3 % depth, 1.5-5 h long.
    period = np.where(is_sine, 0.3 * 40 ** u_period, 10 ** u_period)
    amplitude = np.where(is_sine, 0.002 * 25 ** u_amp, 0.003 * 10 ** u_amp)
    duration = np.where(is_transit, (1.5 + 3.5 * u_dur) / 24.0, 0.0)
    epoch = sector.start + u_phase * period
    constant = kind == NONE
    period[constant] = amplitude[constant] = epoch[constant] = 0.0
    return Stars(x, y, tmag, flux, kind, period, amplitude, epoch, duration)


def catalog_table(stars: Stars, sector: Sector, seed: int, shape: tuple[int, int]) -> Table:
    """The public catalog of ``stars`` (already restricted to the crop)."""
    ra, dec = sector.wcs.all_pix2world(stars.x, stars.y, 0)
    table = Table(
        {
            "ra": ra,
            "dec": dec,
            "col": stars.x,
            "row": stars.y,
            "flux": stars.flux,
            "variable": stars.kind != NONE,
            "tmag": stars.tmag,
            "var_type": np.array([KIND_NAMES[k] for k in sorted(KIND_NAMES)])[stars.kind],
            "period": stars.period,
            "amplitude": stars.amplitude,
            "epoch": stars.epoch,
            "duration": stars.duration,
        }
    )
    for name, unit in [("ra", "deg"), ("dec", "deg"), ("col", "pix"), ("row", "pix"),
                       ("flux", "electron / s"), ("tmag", "mag"), ("period", "d"),
                       ("epoch", "d"), ("duration", "d")]:
        table[name].unit = unit
    table["col"].description = "0-based FFI column of the star centre (pixel centres at integers)"
    table["row"].description = "0-based FFI row of the star centre (pixel centres at integers)"
    table["amplitude"].description = "fractional semi-amplitude (sine) or transit depth (transit)"
    table["epoch"].description = "BTJD of zero phase (sine) or mid-transit (transit)"
    table.meta.update(
        {"sector": sector.sector, "camera": sector.camera, "ccd": sector.ccd, "seed": int(seed),
         "shape": list(shape), "time_reference": "BTJD = BJD_TDB - 2457000"}
    )
    return table


def write_catalog(table: Table, path: Path) -> None:
    """Write a ``catalog_table`` as ECSV, fast: astropy writes the header (units, meta, types)
    and the rows are formatted here (astropy's ECSV writer needs seconds per 100k rows).
    Floats keep 17 significant digits, so reading the file back gives the same numbers;
    strings must be non-empty words (an empty string would read back as masked)."""
    with open(path, "w", encoding="utf-8") as out:
        table[:0].write(out, format="ascii.ecsv")
        row_format = " ".join("%.17g" if table[name].dtype.kind == "f" else "%s" for name in table.colnames) + "\n"
        columns = [
            np.where(table[name], "True", "False") if table[name].dtype.kind == "b" else np.asarray(table[name])
            for name in table.colnames
        ]
        out.writelines(row_format % row for row in zip(*columns))


def star_catalog(*, sector: int, camera: int, ccd: int, shape: tuple[int, int] | None = None,
                 seed: int = 0) -> Table:
    """The stars injected into the FFIs of ``make_sector`` with the same arguments.

    Columns: ra, dec (deg, ICRS, through the header WCS); col, row (0-based FFI pixel
    coordinates of the PSF centre); flux (e-/s); variable (bool); tmag; var_type ('none', 'sine',
    'transit'); period (d); amplitude (fraction); epoch (BTJD); duration (d, transits).
    Only stars whose nearest pixel lies inside the crop rows [0, rows) x cols [0, cols) are
    listed. Deterministic for the arguments.
    """
    info = load_sector(sector, camera, ccd)
    rows_cols = crop_shape(shape)
    return catalog_table(draw_stars(info, seed).within(rows_cols), info, seed, rows_cols)
