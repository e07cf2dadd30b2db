"""When each synthetic FFI was taken, and what happened to the spacecraft meanwhile.

Frame ``i`` (0-based within the sector) spans ``TSTART = start + i * cadence`` to
``TSTOP = TSTART + cadence`` in BTJD (days); frames are contiguous, like real FFIs within
an orbit (the mid-sector downlink gap is not modelled). Everything here is a pure function
of the sector and the frame index, so frames ``N..N+k`` come out the same whichever call
makes them.
"""
from __future__ import annotations

from dataclasses import dataclass

import astropy.units as u
import numpy as np
from astropy.constants import c
from astropy.coordinates import get_body_barycentric
from astropy.time import Time

from .sector import BJDREFI, Sector

#: DQUALITY / QUAL_BIT of a frame that contains a momentum dump:
#: 32 (reaction wheel desaturation) | 128 (manual exclude).
MOMENTUM_DUMP_FLAGS = 32 | 128
#: Momentum dumps happen every MOMENTUM_DUMP_INTERVAL days, the first one
#: MOMENTUM_DUMP_OFFSET days after the sector starts (a typical, not a real, schedule).
MOMENTUM_DUMP_INTERVAL = 3.125
MOMENTUM_DUMP_OFFSET = 1.3
#: GPS epoch (1980-01-06) as a JD: TICA's TIME keyword counts spacecraft seconds from it.
GPS_EPOCH_JD = 2444244.5


@dataclass(frozen=True)
class FrameTimes:
    """Times and flags of consecutive frames (arrays indexed like ``index``).

    tstart/tstop/mid: BTJD days; barycorr: days (BTJD minus spacecraft TDB time);
    date_obs/date_end: UTC ISO strings with millisecond precision and a trailing ``Z``;
    stamp: UTC of the exposure end as ``YYYYDDDHHMMSS`` (SPOC file-name timestamp);
    quality: DQUALITY bits; cadenceno: FFI cadence counter (round(TSTART / cadence)).
    """

    index: np.ndarray
    tstart: np.ndarray
    tstop: np.ndarray
    barycorr: np.ndarray
    date_obs: list[str]
    date_end: list[str]
    stamp: list[str]
    quality: np.ndarray
    cadenceno: np.ndarray

    @property
    def mid(self) -> np.ndarray:
        """Mid-exposure time, BTJD days."""
        return 0.5 * (self.tstart + self.tstop)


def barycentric_correction(btjd: np.ndarray, ra: float, dec: float) -> np.ndarray:
    """Light-travel time (days) from the spacecraft to the solar-system barycentre along
    the line of sight (ra, dec in degrees); TESS is taken to be at the Earth (< 0.002 AU off).
    """
    earth = get_body_barycentric("earth", Time(BJDREFI + np.asarray(btjd), format="jd", scale="tdb"))
    xyz = earth.get_xyz().to_value(u.m)
    ra_r, dec_r = np.radians(ra), np.radians(dec)
    direction = np.array([np.cos(dec_r) * np.cos(ra_r), np.cos(dec_r) * np.sin(ra_r), np.sin(dec_r)])
    return direction @ xyz / c.to_value(u.m / u.s) / 86400.0


def quality_flags(sector: Sector, tstart: np.ndarray, tstop: np.ndarray) -> np.ndarray:
    """DQUALITY per frame: MOMENTUM_DUMP_FLAGS where a momentum dump falls in [TSTART, TSTOP)."""
    first_dump = sector.start + MOMENTUM_DUMP_OFFSET
    # Index of the last dump at or before TSTOP; the frame holds it if that dump is >= TSTART.
    k = np.floor((tstop - first_dump) / MOMENTUM_DUMP_INTERVAL)
    dump = first_dump + k * MOMENTUM_DUMP_INTERVAL
    hit = (k >= 0) & (dump >= tstart) & (dump < tstop)
    return np.where(hit, MOMENTUM_DUMP_FLAGS, 0).astype(np.int32)


def _utc_strings(jd_tdb: np.ndarray) -> tuple[list[str], list[str]]:
    """ISO UTC strings (``...T19:00:27.850Z``) and ``YYYYDDDHHMMSS`` stamps of TDB JDs."""
    utc = Time(jd_tdb, format="jd", scale="tdb").utc
    utc.precision = 3
    iso = [s + "Z" for s in utc.isot]
    stamps = [s[:4] + s[5:8] + s[9:11] + s[12:14] + s[15:17] for s in utc.yday]
    return iso, stamps


def frame_times(sector: Sector, first: int, count: int) -> FrameTimes:
    """Times, barycentric corrections and flags of frames ``first .. first + count - 1``.

    DATE-OBS/DATE-END are the UTC calendar dates of TSTART/TSTOP as seen at the spacecraft
    (BTJD minus BARYCORR, converted TDB -> UTC), as in SPOC headers.
    """
    index = np.arange(first, first + count)
    tstart = sector.start + index * sector.cadence_d
    tstop = tstart + sector.cadence_d
    ra, dec = (float(v) for v in sector.wcs.wcs.crval)
    barycorr = barycentric_correction(0.5 * (tstart + tstop), ra, dec)
    date_obs, _ = _utc_strings(BJDREFI + tstart - barycorr)
    date_end, stamp = _utc_strings(BJDREFI + tstop - barycorr)
    return FrameTimes(
        index=index,
        tstart=tstart,
        tstop=tstop,
        barycorr=barycorr,
        date_obs=date_obs,
        date_end=date_end,
        stamp=stamp,
        quality=quality_flags(sector, tstart, tstop),
        cadenceno=np.rint(tstart * 86400.0 / sector.cadence_s).astype(np.int64),
    )
