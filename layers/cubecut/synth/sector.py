"""Facts about one TESS sector/camera/CCD that every synthetic FFI of it shares.

Times are BTJD (BJD_TDB - 2457000, days) unless a name says otherwise.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
from astropy.wcs import WCS

from ..errors import InputError
from .geometry import sector_wcs

#: Integer part of the BTJD reference (BJDREFI).
BJDREFI = 2457000

#: Seconds per 2-s spacecraft frame: photon accumulation + readout.
INT_TIME_S = 1.98
READTIME_S = 0.02
#: Onboard cosmic-ray mitigation drops the highest and lowest of every 10 frames.
CRM_BLOCK = 10
CRM_KEEP = 0.8
#: Deadtime correction: (INT_TIME / FRAMETIM) * CRM_KEEP.
DEADC = INT_TIME_S / (INT_TIME_S + READTIME_S) * CRM_KEEP
#: Independent random streams (see ``generator``).
STARS, SKY, NOISE = 0, 1, 2


@dataclass(frozen=True)
class Sector:
    """One sector/camera/CCD: pointing, WCS, cadence, span and configuration IDs.

    ``start``/``end`` (BTJD) are tesswcs' sector start/end dates (its pointings table, in
    whole JD days); the first synthetic frame starts at ``start``. ``cadence_s`` is the
    real FFI cadence: 1800 s for sectors 1-26, 600 s for 27-55, 200 s from 56 on.
    """

    sector: int
    camera: int
    ccd: int
    wcs: WCS
    ra: float
    dec: float
    roll: float
    start: float
    end: float

    @property
    def cadence_s(self) -> float:
        """FFI cadence (TSTOP - TSTART) in seconds."""
        if self.sector <= 26:
            return 1800.0
        if self.sector <= 55:
            return 600.0
        return 200.0

    @property
    def cadence_d(self) -> float:
        """FFI cadence in days."""
        return self.cadence_s / 86400.0

    @property
    def num_frames(self) -> int:
        """2-s spacecraft frames co-added into one FFI (NUM_FRM)."""
        return int(round(self.cadence_s / (INT_TIME_S + READTIME_S)))

    @property
    def exposure_s(self) -> float:
        """Effective photon-collecting time per FFI in seconds (after CRM rejection)."""
        return self.num_frames * INT_TIME_S * CRM_KEEP

    @property
    def scconfig(self) -> int:
        """Spacecraft configuration ID as used in SPOC file names (``...-0120-s_ffic.fits``).

        Approximation: 120 for sector 1 rising ~2.65 per sector, which matches the real IDs
        of sectors 1 (0120) and 27 (0189) and is merely plausible elsewhere.
        """
        return 120 + int(round((self.sector - 1) * 69 / 26))

    @property
    def processing_date(self) -> str:
        """Deterministic SPOC processing date (``DATE``): two weeks after the sector ends."""
        jd = BJDREFI + self.end + 14
        return (dt.date(2000, 1, 1) + dt.timedelta(days=int(jd - 2451544.5))).isoformat()

    def orbit(self, btjd: float) -> int:
        """1 or 2: which of the sector's two spacecraft orbits a time falls in."""
        return 1 if btjd < 0.5 * (self.start + self.end) else 2

    def orbit_id(self, btjd: float) -> int:
        """TICA ORBIT_ID: mission orbit number (sector 1 = orbits 9 and 10; sector 27 o1 = 61)."""
        return 2 * self.sector + 6 + self.orbit(btjd)


def generator(seed: int, sector: Sector, stream: int, *extra: int) -> np.random.Generator:
    """Random generator for one use (``stream``: STARS, SKY or NOISE) of one sector/camera/CCD."""
    return np.random.default_rng([int(seed), sector.sector, sector.camera, sector.ccd, stream, *map(int, extra)])


def load_sector(sector: int, camera: int, ccd: int) -> Sector:
    """Collect the pointing (tesswcs pointings table) and WCS of one sector/camera/CCD."""
    from tesswcs import pointings  # here, not at module level: importing tesswcs takes seconds

    rows = pointings[np.asarray(pointings["Sector"]) == int(sector)]
    if len(rows) == 0:
        raise InputError(f"no TESS pointing known for sector {sector}")
    row = rows[0]
    return Sector(
        sector=int(sector),
        camera=int(camera),
        ccd=int(ccd),
        wcs=sector_wcs(sector, camera, ccd),
        ra=float(row["RA"]),
        dec=float(row["Dec"]),
        roll=float(row["Roll"]),
        start=float(row["Start"]) - BJDREFI,
        end=float(row["End"]) - BJDREFI,
    )
