"""TESScut's moving-target routes (``moving_target/sector``, ``moving_target/astrocut``),
with the target's path carried by the request.

TESScut takes ``obj_id`` (and ``obj_type``) and asks JPL Horizons for the path. The API
has no network beyond its bucket, so a request sends the path itself: ``ephemeris``, a JSON
document of times and ICRS positions in degrees, either columns
``{"time": [...], "ra": [...], "dec": [...]}`` or rows ``[{"time": t, "ra": a, "dec": d}, ...]``.
``time_format`` says how times are written: ``btjd`` (default: numbers, BTJD, matched to
the frames' mid-times), or ``jd``/``mjd``/``isot``/``iso`` instants in ``time_scale``
(``tdb`` default, ``utc``, ``tt``, ``tai``) at the spacecraft. ``obj_id`` only names the
target; a request with ``obj_id`` and no ephemeris is answered 400 with a message saying
why. Looking a path up in Horizons is left to machines with network: the library's
:func:`cubecut.moving.horizons_ephemeris` and ``cubecut moving --horizons``.

Size (``x``, ``y``, ``units``), ``sector`` and ``product`` are as for ``astrocut``. Cubes
are chosen from the catalog by time first, then by where the path falls on their images
(indexes only, no pixel reads); the cutout reads, per frame, only that frame's box.
"""
from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import numpy as np

from ..cutout.size import Size, normalised_size
from ..storage import ReadStats
from ..cube.catalog import CubeCatalog, CubeEntry
from ..cube.index import sector_name
from .jsontext import load_json
from .service import CubeWork, CutoutService, Delivery, Member, hdul_bytes, no_data_message
from .protocol import TesscutRequestError, result_key, sector_results

if TYPE_CHECKING:  # the moving-target engine (astropy time, coordinates, WCS) loads on first use
    from ..moving import Ephemeris
    from ..moving.path import PathOnCube

#: Most rows an ephemeris may have, and most characters of its JSON text.
MAX_EPHEMERIS_ROWS = 50_000
MAX_EPHEMERIS_CHARS = 4_000_000
#: Longest ``obj_id`` (it is written into the TPFs' OBJECT keyword).
MAX_NAME_CHARS = 100
#: Slack (days) when choosing cubes by time span: more than BARYCORR (< 0.006 d), the gap
#: between barycentric frame times and spacecraft times.
_TIME_SLACK_DAYS = 0.01
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._+-]+")


class MovingRequestError(TesscutRequestError):
    """A moving-target request TESScut would answer with ``400 {"msg": ...}``."""


class EphemerisNeededError(MovingRequestError):
    """A moving-target request without an ephemeris (Horizons is not reachable from here)."""


@dataclass(frozen=True, eq=False)
class MovingRequest:
    """A parsed moving-target request: the path, the target's name, size, filters."""

    ephemeris: Ephemeris
    target: str | None
    size: Size
    sectors: frozenset[int] | None
    product: str

    def cache_key(self, cube_versions: Sequence[str]) -> str:
        """Changes whenever the path, the request, any cube it reads, or the TPF format does."""
        path = hashlib.sha256()
        for values in (self.ephemeris.time, self.ephemeris.ra, self.ephemeris.dec):
            path.update(np.ascontiguousarray(values, dtype="<f8").tobytes())
        return result_key({"moving": {"path": path.hexdigest(), "barycentric": self.ephemeris.barycentric,
                                      "target": self.target, "size": normalised_size(self.size),
                                      "sectors": sorted(self.sectors) if self.sectors else None,
                                      "product": self.product}}, cube_versions)


def _values(values: Any, what: str, strings: bool) -> list[float | str]:
    """A column as floats (and, if ``strings``, time strings), type-checked."""
    if not isinstance(values, list):
        raise MovingRequestError(f"ephemeris {what} must be a list")
    kinds = (int, float, str) if strings else (int, float)
    if not all(isinstance(v, kinds) and not isinstance(v, bool) for v in values):
        expected = "numbers or time strings" if strings else "numbers (degrees)"
        raise MovingRequestError(f"ephemeris {what} must be a list of {expected}")
    try:
        return [v if isinstance(v, str) else float(v) for v in values]
    except OverflowError:
        raise MovingRequestError(f"ephemeris {what} holds a number too large for a float") from None


def _columns(document: Any) -> dict[str, list[float | str]]:
    """The ``time``/``ra``/``dec`` columns of an ephemeris document, shape- and type-checked."""
    if isinstance(document, list):
        if not all(isinstance(row, dict) for row in document):
            raise MovingRequestError("ephemeris rows must be objects with time, ra and dec")
        missing = [i for i, row in enumerate(document) if not {"time", "ra", "dec"} <= set(row)]
        if missing:
            raise MovingRequestError(f"ephemeris row {missing[0]} lacks time, ra or dec")
        document = {key: [row[key] for row in document] for key in ("time", "ra", "dec")}
    if not isinstance(document, dict) or not {"time", "ra", "dec"} <= set(document):
        raise MovingRequestError('ephemeris must be {"time": [...], "ra": [...], "dec": [...]} '
                                 'or a list of {"time", "ra", "dec"} rows')
    columns = {key: _values(document[key], key, strings=key == "time") for key in ("time", "ra", "dec")}
    lengths = {len(values) for values in columns.values()}
    if len(lengths) > 1:
        raise MovingRequestError(f"ephemeris time, ra and dec have different lengths "
                                 f"({', '.join(str(len(v)) for v in columns.values())})")
    if len(columns["time"]) > MAX_EPHEMERIS_ROWS:
        raise MovingRequestError(f"an ephemeris may have at most {MAX_EPHEMERIS_ROWS:,} rows")
    return columns


def parse_ephemeris(text: str, *, name: str | None, time_format: str, time_scale: str) -> Ephemeris:
    """An :class:`Ephemeris` from the ``ephemeris`` parameter's JSON text.

    Only the two JSON shapes are read (never a file name or URL: a path in a request must
    not make the service read anything of its choosing)."""
    if len(text) > MAX_EPHEMERIS_CHARS:
        raise MovingRequestError(f"the ephemeris is longer than {MAX_EPHEMERIS_CHARS:,} characters")
    from ..moving import EphemerisError, load_ephemeris

    document = load_json(text, "the ephemeris", MovingRequestError)
    columns = _columns(document)
    if time_format == "btjd" and not all(isinstance(t, float) for t in columns["time"]):
        raise MovingRequestError("ephemeris times must be numbers (BTJD) unless time_format says otherwise")
    try:
        return load_ephemeris(columns, name=name, time_format=time_format, time_scale=time_scale)
    except EphemerisError as exc:
        raise MovingRequestError(str(exc)) from None


def member_name(cube_name: str, target: str | None, nx: int, ny: int) -> str:
    """A moving cutout's zip member name, TESScut-style with the target's name in place of
    the position: ``tess-s0006-1-1_Eleonora_15x15_astrocut.fits`` (``path`` if unnamed)."""
    name = _UNSAFE_NAME.sub("_", target or "path").strip("._")[:64] or "path"
    return f"{cube_name}_{name}_{nx}x{ny}_astrocut.fits"


def crossings(catalog: CubeCatalog, request: MovingRequest) -> list[tuple[CubeEntry, PathOnCube]]:
    """The catalog's cubes that the path crosses (with the path on each), in sector,
    camera, CCD order; from the catalog's indexes, with no reads."""
    from ..moving.path import path_on_cube

    path = request.ephemeris
    found = []
    for entry in catalog.entries():
        if entry.index.product != request.product or (request.sectors and entry.index.sector not in request.sectors):
            continue
        start, stop = np.nanmin(entry.index.tstart), np.nanmax(entry.index.tstop)
        if stop < path.start - _TIME_SLACK_DAYS or start > path.stop + _TIME_SLACK_DAYS:
            continue
        on_cube = path_on_cube(path, entry.index, entry.url)
        if on_cube.nframes:
            found.append((entry, on_cube))
    return found


def moving_sectors(catalog: CubeCatalog, request: MovingRequest) -> dict:
    """``moving_target/sector``: ``{"results": [...]}``, one entry per cube crossed."""
    return sector_results(e.index for e, _ in crossings(catalog, request))


def moving_astrocut(service: CutoutService, request: MovingRequest) -> Delivery:
    """``moving_target/astrocut``: a zip with one TPF per sector the path crosses (frames
    of several cubes of one sector merged), cached like static cutouts."""
    from ..moving import PathOffCubesError, moving_cutout
    from ..moving.path import pixel_size

    started = time.monotonic()
    crossed = crossings(service.catalog, request)
    if not crossed:
        return Delivery([], message=no_data_message(request))
    nx, ny = pixel_size(request.size, crossed[0][0].wcs)
    nbytes = service.check_budget([nx * ny * p.nframes for _, p in crossed], in_memory=True)

    def compute(work: list[CubeWork]) -> Iterator[Member]:
        stats = ReadStats()
        t0 = time.monotonic() - started
        try:
            tpfs = moving_cutout([e.url for e, _ in crossed], request.ephemeris, request.size,
                                 target=request.target, stats=stats)
        except PathOffCubesError:  # the cubes changed since the catalog was read
            tpfs = []
        work.append(CubeWork("path", t0, time.monotonic() - started, stats.requests, stats.bytes))
        for tpf in tpfs:
            header = tpf[0].header
            flux_shape = tpf["PIXELS"].data["FLUX"].shape
            name = sector_name(header["SECTOR"], header["CAMERA"], header["CCD"], request.product)
            yield member_name(name, request.target, flux_shape[2], flux_shape[1]), hdul_bytes(tpf)

    return service.deliver(service.result_url(request, [e for e, _ in crossed], "zip"), compute, started=started,
                           nbytes=nbytes, empty_message=no_data_message(request))
