"""A moving target's path: an ephemeris table, and its position at any time it covers.

Times are TJD floats (Julian date − 2457000, days), with one of two meanings chosen when
the ephemeris is made (``barycentric``):

* ``True`` — BTJD, the system of the FFI TSTART/TSTOP keywords and of the TPF ``TIME``
  column; frames are matched at their mid-time ``(TSTART + TSTOP) / 2``. Plain numbers in
  a table mean this.
* ``False`` — instants at the observer (TDB), e.g. from astropy ``Time`` values or JPL
  Horizons; frames are matched at their spacecraft time ``TIME − TIMECORR`` (mid-time
  minus BARYCORR), the moment the photons reached TESS.

Positions are ICRS degrees as seen from TESS (astrometric). Between table rows they are
interpolated by a cubic Hermite curve on the unit sphere (slopes from second-order finite
differences; exact for paths quadratic in time, no RA wrap-around problem); outside the
table's time span there is no position (no extrapolation).

No network is needed: the table comes from the caller. :func:`horizons_ephemeris` is an
optional convenience that asks JPL Horizons (through ``astroquery.jplhorizons``, only if
it is installed and the service is reachable) and is never used implicitly.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any, Mapping, Sequence

import astropy.units as u
import numpy as np
from astropy.coordinates import SkyCoord
from astropy.table import Table
from astropy.time import Time

from ..errors import InputError
from ..storage import Location, get_bytes

#: JD of TJD 0 (BJDREFI of TESS products).
TJD_ZERO = 2457000.0
#: Horizons observer location of TESS: the centre (500) of body -95, the spacecraft.
TESS_LOCATION = "500@-95"


class EphemerisError(InputError):
    """An ephemeris is unusable: too few rows, unsorted or repeated times, bad positions."""


class HorizonsError(EphemerisError):
    """The optional JPL Horizons lookup is not possible (astroquery missing, no network)."""


@dataclass(frozen=True, eq=False)
class Ephemeris:
    """Positions of one target at increasing times.

    Attributes:
        time: TJD days (see the module docstring for ``barycentric``), strictly increasing.
        ra, dec: ICRS degrees at those times.
        barycentric: True if ``time`` is BTJD, False if instants (TDB) at the observer.
        name: the target's name or designation, if known (used in file names).
    """

    time: np.ndarray
    ra: np.ndarray
    dec: np.ndarray
    barycentric: bool = True
    name: str | None = None
    _unit: np.ndarray = field(init=False, repr=False, compare=False)
    _slope: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        time, ra, dec = (np.asarray(v, dtype=np.float64).ravel() for v in (self.time, self.ra, self.dec))
        if not len(time) == len(ra) == len(dec):
            raise EphemerisError(f"time, ra and dec have different lengths ({len(time)}, {len(ra)}, {len(dec)})")
        if len(time) < 2:
            raise EphemerisError(f"an ephemeris needs at least 2 rows, got {len(time)}")
        if not (np.isfinite(time).all() and np.isfinite(ra).all() and np.isfinite(dec).all()):
            raise EphemerisError("ephemeris times and positions must be finite numbers")
        if (np.abs(dec) > 90).any():
            raise EphemerisError(f"declinations must lie in [-90, 90] degrees, got {dec[np.abs(dec) > 90][0]}")
        if (np.diff(time) <= 0).any():
            raise EphemerisError("ephemeris times must be strictly increasing (sorted, no repeats)")
        unit = _unit_vectors(ra, dec)
        slope = np.gradient(unit, time, axis=0, edge_order=2 if len(time) > 2 else 1)
        for name, value in (("time", time), ("ra", ra % 360.0), ("dec", dec), ("_unit", unit), ("_slope", slope)):
            object.__setattr__(self, name, value)

    @property
    def start(self) -> float:
        return float(self.time[0])

    @property
    def stop(self) -> float:
        return float(self.time[-1])

    def covers(self, times: np.ndarray) -> np.ndarray:
        """True where a time (TJD) lies within the table's span (no extrapolation)."""
        times = np.asarray(times, dtype=np.float64)
        return (times >= self.start) & (times <= self.stop)

    def at(self, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(ra, dec)`` in degrees at ``times`` (TJD); NaN outside the table's span."""
        times = np.atleast_1d(np.asarray(times, dtype=np.float64))
        k = np.clip(np.searchsorted(self.time, times, side="right") - 1, 0, len(self.time) - 2)
        h = self.time[k + 1] - self.time[k]
        s = ((times - self.time[k]) / h)[:, None]
        s2, s3 = s * s, s * s * s
        p = ((2 * s3 - 3 * s2 + 1) * self._unit[k] + (s3 - 2 * s2 + s) * h[:, None] * self._slope[k]
             + (-2 * s3 + 3 * s2) * self._unit[k + 1] + (s3 - s2) * h[:, None] * self._slope[k + 1])
        p /= np.linalg.norm(p, axis=1, keepdims=True)
        ra = np.degrees(np.arctan2(p[:, 1], p[:, 0])) % 360.0
        dec = np.degrees(np.arcsin(np.clip(p[:, 2], -1.0, 1.0)))
        outside = ~self.covers(times)
        ra[outside], dec[outside] = np.nan, np.nan
        return ra, dec


def _unit_vectors(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    r, d = np.radians(ra), np.radians(dec)
    return np.column_stack([np.cos(d) * np.cos(r), np.cos(d) * np.sin(r), np.sin(d)])


def _degrees(values: Any, what: str) -> np.ndarray:
    if getattr(values, "unit", None) is not None:  # a Quantity or a table column with a unit
        values = u.Quantity(values)
    if isinstance(values, u.Quantity):
        return values.to_value(u.deg)
    try:
        return np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise EphemerisError(f"ephemeris {what} must be numbers (degrees)") from None


def _times(values: Any, time_format: str, time_scale: str) -> tuple[np.ndarray, bool]:
    """TJD floats and whether they are barycentric (BTJD) from a column or list."""
    if isinstance(values, Time):
        return values.tdb.jd - TJD_ZERO, False
    if time_format == "btjd":
        try:
            return np.asarray(values, dtype=np.float64), True
        except (TypeError, ValueError):
            raise EphemerisError("ephemeris times must be numbers (BTJD) unless a time format is given") from None
    try:
        instants = Time(list(values) if not isinstance(values, np.ndarray) else values, format=time_format,
                        scale=time_scale)
    except (ValueError, TypeError) as exc:
        raise EphemerisError(f"cannot read ephemeris times as {time_format!r} ({time_scale}): {exc}") from None
    return instants.tdb.jd - TJD_ZERO, False


def _column(columns: Mapping[str, Any], *names: str) -> Any:
    lowered = {str(k).lower(): k for k in columns}
    for name in names:
        if name in lowered:
            return columns[lowered[name]]
    return None


def ephemeris_from_columns(columns: Mapping[str, Any], *, name: str | None = None, time_format: str = "btjd",
                           time_scale: str = "tdb") -> Ephemeris:
    """An ephemeris from named columns (a Table, a dict of lists, ...).

    Columns (names case-insensitive): ``time`` (astropy Time → instants; numbers → per
    ``time_format``), and either ``ra`` + ``dec`` (degrees or angle Quantities) or
    ``position`` (a SkyCoord, as in astrocut's path tables).

    Args:
        time_format: ``"btjd"`` (numbers are BTJD, barycentric) or any astropy Time format
            (``"jd"``, ``"mjd"``, ``"isot"``, ...), read as instants in ``time_scale``.
        time_scale: astropy time scale of non-BTJD numbers/strings (``"tdb"``, ``"utc"``, ...).
    """
    times = _column(columns, "time", "btjd")
    position = _column(columns, "position")
    if times is None or (position is None and (_column(columns, "ra") is None or _column(columns, "dec") is None)):
        raise EphemerisError(f"an ephemeris needs columns time and ra/dec (or position); got {list(columns)}")
    if position is not None:
        coords = SkyCoord(position).icrs
        ra, dec = coords.ra.deg, coords.dec.deg
    else:
        ra, dec = _degrees(_column(columns, "ra"), "ra"), _degrees(_column(columns, "dec"), "dec")
    tjd, barycentric = _times(times, time_format, time_scale)
    order = np.argsort(tjd, kind="stable")
    return Ephemeris(np.asarray(tjd)[order], np.asarray(ra)[order], np.asarray(dec)[order], barycentric, name)


def load_ephemeris(source: Ephemeris | Table | Mapping[str, Any] | Sequence[Mapping[str, Any]] | str, *,
                   name: str | None = None, time_format: str = "btjd", time_scale: str = "tdb") -> Ephemeris:
    """An ephemeris from whatever a caller holds.

    ``source`` may be an :class:`Ephemeris` (returned as is), an astropy Table, a mapping
    of columns, a list of row mappings (a JSON request body), or the path/``s3://`` URL
    of a file: ``.json`` (either of the two JSON shapes), ``.ecsv``, ``.csv`` or anything
    else astropy's ``Table.read`` understands. ``name``, ``time_format`` and
    ``time_scale`` are as for :func:`ephemeris_from_columns`; a table's ``meta['name']``
    is used when ``name`` is None.
    """
    if isinstance(source, Ephemeris):
        return source
    data = _read_file(source) if isinstance(source, (str, Location)) else source
    if isinstance(data, Table):
        name = name or data.meta.get("name")
        columns: Mapping[str, Any] = data.columns
    elif isinstance(data, Mapping):
        columns = data
    elif isinstance(data, Sequence) and data and all(isinstance(row, Mapping) for row in data):
        try:
            columns = {k: [row[k] for row in data] for k in data[0]}
        except KeyError as exc:
            raise EphemerisError(f"ephemeris row without {exc.args[0]!r}") from None
    else:
        raise EphemerisError(f"cannot read an ephemeris from {type(data).__name__}")
    return ephemeris_from_columns(columns, name=name, time_format=time_format, time_scale=time_scale)


def _read_file(url: str | Location) -> Table | Mapping | list:
    location = Location.of(url)
    data = get_bytes(location)[0]
    suffix = PurePosixPath(location.name.lower()).suffix
    try:
        if suffix == ".json":
            return json.loads(data)
        return Table.read(data.decode(), format={".ecsv": "ascii.ecsv", ".csv": "ascii.csv"}.get(suffix, "ascii"))
    except (ValueError, TypeError, UnicodeDecodeError) as exc:
        raise EphemerisError(f"{location.url}: not a readable ephemeris table: {exc}") from None


def horizons_ephemeris(target: str, start: float, stop: float, *, step: str = "30m", id_type: str | None = None,
                       location: str = TESS_LOCATION) -> Ephemeris:
    """The path of ``target`` as seen from TESS, from JPL Horizons (optional, needs network).

    Args:
        target: a Horizons designation (e.g. ``"Ceres"``, ``"2003 GZ"``, ``"90377"``).
        start, stop: BTJD of the span wanted; it is widened by one ``step`` on each side.
        step: Horizons step size (``"30m"``, ``"1h"``, ``"1d"``).
        id_type: Horizons ``id_type`` (``"smallbody"``, ``"designation"``, ... or None).
        location: observer; TESS by default.

    Returns an ephemeris of instants (``barycentric=False``): astrometric RA/Dec at the
    Horizons epochs (UTC, converted to TDB).

    Raises:
        HorizonsError: astroquery is not installed, Horizons cannot be reached, or it
            does not know the target. Nothing else in cubecut calls this.
    """
    try:
        from astroquery.jplhorizons import Horizons
    except ImportError:
        raise HorizonsError("JPL Horizons lookups need astroquery (pip install astroquery); "
                            "otherwise give the ephemeris as a table of time, ra, dec") from None
    if not (math.isfinite(start) and math.isfinite(stop) and stop > start):
        raise EphemerisError(f"need a finite time span with stop > start, got {start}, {stop}")
    pad = 1.0 / 24.0 if step.endswith(("m", "h")) else 1.0
    span = Time(np.array([start - pad, stop + pad]) + TJD_ZERO, format="jd", scale="tdb").utc
    epochs = {"start": span[0].iso[:16], "stop": span[1].iso[:16], "step": step}
    try:
        table = Horizons(id=target, id_type=id_type, location=location, epochs=epochs).ephemerides()
    except Exception as exc:  # noqa: BLE001 - network, parse and lookup errors all mean "not available"
        raise HorizonsError(f"JPL Horizons lookup of {target!r} failed: {exc}") from None
    instants = Time(np.asarray(table["datetime_jd"], dtype=np.float64), format="jd", scale="utc")
    return ephemeris_from_columns({"time": instants, "ra": np.asarray(table["RA"], dtype=np.float64),
                                   "dec": np.asarray(table["DEC"], dtype=np.float64)}, name=target)
