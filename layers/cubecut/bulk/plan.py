"""Plan a bulk job: targets -> cubes -> tiles of row-sorted targets whose boxes share rows.

Every catalog row ends up in exactly one of two places: a placement on a cube (to cut, or
already done by an earlier run of the same job), or a result row saying why not
(malformed, or on none of the cubes). A target on several cubes gets one placement per cube.

Placement uses the cube's FFI WCS on all targets at once (0-based pixels): a target is
placed on a cube when its box, widened by :data:`MARGIN_PIXELS`, touches the image. The
worker then computes the exact box with :func:`cubecut.cutout.cutout_box`, the same call
a single-target cutout makes, and records ``off_footprint`` for a target whose exact box
misses after all; so the plan never decides an edge case differently from ``cutout``.

Tiles: per cube, placements sorted by centre row then column, cut into runs of at most
``limits.tile_targets`` targets and ``limits.tile_pixel_frames`` pixel-frames (which bounds
a worker's memory). Consecutive tiles cover neighbouring rows, so a worker given several of them in
order (the Distributed Map's ItemBatcher) reads each row span they share once.

Output keys are deterministic: ``{out}/tpfs/{cube stem}/{astrocut file name}`` (the name
carries RA/Dec to 1e-7 deg and the size), so a re-run finds what is already written and
skips it. With ``shards``, the same ``{cube stem}/{astrocut file name}`` is a member of
the tile's tar shard (:mod:`.shards`), and a re-run skips the members of complete shards.
"""
from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import ClassVar, Sequence

import numpy as np
from astropy.coordinates import SkyCoord

from ..cube.catalog import MAX_CENTRE_SEPARATION_DEG, CubeCatalog, CubeEntry
from ..cutout.geometry import MAX_CUTOUT_PIXELS
from ..cutout.identity import Identity
from ..cube.index_cache import load_index
from ..cutout.tpf import tpf_filename
from ..errors import BulkCapError, CatalogError, InputError, NotACubeError
from ..storage import Location, list_objects
from .shards import shard_members, shard_url
from .stars import RowProblem, Target, TargetCatalog

#: Pixels added to each side of a box when deciding which cubes to try it on.
MARGIN_PIXELS = 2.0
#: Default caps of a job: usable catalog rows, and pixel-frames over all placements.
MAX_TARGETS = 250_000
MAX_PIXEL_FRAMES = 50_000_000_000
#: Default tile bounds: targets, and pixel-frames (x 8 bytes = a tile's flux + error in memory).
TILE_TARGETS = 100
TILE_PIXEL_FRAMES = 30_000_000

#: Result statuses.
WRITTEN, SKIPPED, OFF_FOOTPRINT, MALFORMED, FAILED = "written", "skipped", "off_footprint", "malformed", "failed"
RESULT_FIELDS = ("row", "id", "ra", "dec", "cube", "status", "key", "member", "error")


@dataclass(frozen=True)
class Limits:
    """What one job may ask for (``max_targets`` usable catalog rows, ``max_pixel_frames``
    over all placements: columns x rows x frames summed), what one of its cutouts may be
    (``max_side`` pixels per axis, ``max_cutout_pixel_frames`` = columns x rows x the cube's
    frames: the API's per-request budget for jobs the API starts) and how big its tiles are."""

    max_targets: int = MAX_TARGETS
    max_pixel_frames: int = MAX_PIXEL_FRAMES
    tile_targets: int = TILE_TARGETS
    tile_pixel_frames: int = TILE_PIXEL_FRAMES
    max_side: int = MAX_CUTOUT_PIXELS
    max_cutout_pixel_frames: int = MAX_PIXEL_FRAMES

    #: The settings' names (environment variables of the handlers and the CLI).
    SETTINGS: ClassVar[dict[str, str]] = {
        "max_targets": "CUBECUT_BULK_MAX_TARGETS", "max_pixel_frames": "CUBECUT_BULK_MAX_PIXEL_FRAMES",
        "tile_targets": "CUBECUT_BULK_TILE_TARGETS", "tile_pixel_frames": "CUBECUT_BULK_TILE_PIXEL_FRAMES",
        "max_side": "CUBECUT_BULK_MAX_SIDE", "max_cutout_pixel_frames": "CUBECUT_MAX_PIXEL_FRAMES"}
    #: The caps a job's request may tighten (:meth:`tightened`).
    CAPS: ClassVar[tuple[str, ...]] = ("max_targets", "max_pixel_frames", "max_side", "max_cutout_pixel_frames")

    def __post_init__(self) -> None:
        for item in fields(self):
            value = getattr(self, item.name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"bulk limit {item.name} must be a positive integer, got {value!r}")

    @classmethod
    def from_settings(cls, settings: Mapping[str, str]) -> "Limits":
        """The limits named in ``settings`` (e.g. the environment: :attr:`SETTINGS`'s
        names), defaults for the others. Raises InputError for a value that is not a
        positive integer."""
        values: dict[str, int] = {}
        for name, setting in cls.SETTINGS.items():
            text = settings.get(setting)
            if text is None or not text.strip():
                continue
            try:
                values[name] = int(text.replace("_", ""))
            except ValueError:
                raise InputError(f"{setting}={text!r} is not a whole number") from None
        return cls(**values)

    def caps(self) -> dict[str, int]:
        """The caps (:data:`CAPS`) as a JSON-ready dict, e.g. for a job's request."""
        return {name: getattr(self, name) for name in self.CAPS}

    def tightened(self, asked: Mapping[str, object] | None) -> "Limits":
        """These limits with each cap lowered to ``asked``'s where that is lower (a job's
        request may ask for tighter caps, e.g. the API's per-cutout budget, never looser)."""
        lower: dict[str, int] = {}
        for name in self.CAPS:
            value = (asked or {}).get(name)
            if value is not None:
                if isinstance(value, bool) or not isinstance(value, int):
                    raise InputError(f"the job's limit {name} must be a whole number, got {value!r}")
                lower[name] = min(getattr(self, name), value)
        return replace(self, **lower)


def check_cutouts(targets: Sequence[Target], nt: int, limits: Limits, where: str) -> None:
    """Raise BulkCapError, naming the first rows, if any target's cutout is above the
    per-cutout limits: a side above ``limits.max_side`` pixels, or columns x rows x ``nt``
    (the cube's frames) above ``limits.max_cutout_pixel_frames``."""
    over = [t for t in targets if max(t.size) > limits.max_side
            or t.size[0] * t.size[1] * nt > limits.max_cutout_pixel_frames]
    if over:
        first = "; ".join(f"row {t.row}: {t.size[0]}x{t.size[1]} pixels x {nt} frames = "
                          f"{t.size[0] * t.size[1] * nt:,} pixel-frames" for t in over[:3])
        raise BulkCapError(f"{where}: {len(over):,} cutout(s) above the per-cutout limits of {limits.max_side} "
                           f"pixels per side and {limits.max_cutout_pixel_frames:,} pixel-frames ({first})")


#: The limits of a job that names none.
DEFAULT_LIMITS = Limits()


@dataclass(frozen=True)
class Placement:
    """One target to cut on a tile's cube, and where its TPF goes: ``key`` is the TPF's
    URL, or with shards its member name in the tile's shard."""

    target: Target
    key: str

    def to_json(self) -> list:
        """``[row, id, ra, dec, nx, ny, key]``, and ``object, ticid, tmag`` when the catalog
        names the target: a list, not an object, so that a Map batch of tiles stays well
        inside Step Functions' 256 KB payload."""
        target = self.target
        item = [target.row, target.id, target.ra, target.dec, target.size[0], target.size[1], self.key]
        if target.identity:
            item += [target.identity.object, target.identity.ticid, target.identity.tmag]
        return item

    @classmethod
    def from_json(cls, item: Sequence) -> "Placement":
        row, name, ra, dec, nx, ny, key, *identity = item
        return cls(Target(row, name, ra, dec, (nx, ny), Identity(*identity)), key)


@dataclass(frozen=True)
class Tile:
    """A plan's work item: placements on one cube (``cube``, a URL) whose boxes share rows,
    in row order; ``shard`` is the URL of the tar its TPFs go into (None: one object each)."""

    tile: str
    cube: str
    placements: tuple[Placement, ...]
    shard: str | None = None

    def to_json(self) -> dict:
        """The tile as the JSON a worker is given (``{"tile", "cube", "targets", "shard"?}``)."""
        item: dict = {"tile": self.tile, "cube": self.cube, "targets": [p.to_json() for p in self.placements]}
        if self.shard:
            item["shard"] = self.shard
        return item

    @classmethod
    def from_json(cls, item: Mapping) -> "Tile":
        return cls(item["tile"], item["cube"], tuple(Placement.from_json(t) for t in item["targets"]),
                   item.get("shard") or None)


@dataclass
class Plan:
    """A planned job. ``tiles`` are its work items as JSON (:meth:`Tile.to_json`); ``rows`` are the result rows
    already known (malformed, off every cube, skipped because done)."""

    out: str
    catalog_rows: int
    tiles: list[dict] = field(default_factory=list)
    rows: list[dict] = field(default_factory=list)

    @property
    def todo(self) -> int:
        """Placements the tiles will cut."""
        return sum(len(tile["targets"]) for tile in self.tiles)


def result_row(target: Target | RowProblem, status: str, *, cube: str = "", key: str = "",
               member: str = "", error: str = "") -> dict:
    """One row of the results manifest (see RESULT_FIELDS): ``key`` is the TPF's URL, or
    its shard's with ``member`` the TPF's name in it."""
    return {"row": target.row, "id": target.id, "ra": getattr(target, "ra", None), "dec": getattr(target, "dec", None),
            "cube": cube, "status": status, "key": key, "member": member, "error": error}


def cube_entries(cubes: Sequence[str] | None, catalog_prefix: str | None) -> list[CubeEntry]:
    """The cubes of a job: the ones named, or every cube under ``catalog_prefix``.

    Raises ObjectNotFoundError/NotACubeError for a named cube that cannot be used, and
    InputError when neither is given or the catalog prefix holds no cube.
    """
    if cubes:
        return [CubeEntry(Location.parse(cube).url, None, load_index(cube)) for cube in cubes]
    if not catalog_prefix:
        raise InputError("a bulk job needs cubes, or a cube catalog prefix to find them in")
    entries = CubeCatalog(catalog_prefix, ttl=0).entries()
    if not entries:
        raise InputError(f"no cubes under {catalog_prefix}")
    return entries


def plan_job(catalog: TargetCatalog, cubes: Sequence[CubeEntry], out: str, *, limits: Limits = DEFAULT_LIMITS,
             resume: bool = True, shards: bool = False) -> Plan:
    """Assign ``catalog``'s targets to ``cubes`` and cut the placements into tiles.

    Args:
        out: the job's output prefix (``s3://bucket/prefix`` or a local folder).
        resume: skip placements whose TPF already exists under ``out`` (as an object, or
            as a member of a complete shard).
        shards: write each tile's TPFs as one tar shard (:mod:`.shards`); the tiles'
            targets then carry member names, and each tile its shard's URL.

    Raises:
        BulkCapError: above ``limits``' caps, per cutout (with each cube's frame count) or
            for the job (checked before anything is written).
        CatalogError: the catalog has no usable row at all.
    """
    if len(catalog.targets) > limits.max_targets:
        raise BulkCapError(f"{catalog.source} has {len(catalog.targets):,} targets, above the cap of "
                           f"{limits.max_targets:,} targets per job")
    plan = Plan(out=Location.parse(out).url, catalog_rows=catalog.nrows)
    plan.rows = [result_row(problem, MALFORMED, error=problem.reason) for problem in catalog.problems]
    if not catalog.targets:
        if catalog.problems:
            return plan
        raise CatalogError(f"{catalog.source} has no data rows")
    targets = catalog.targets
    coords = SkyCoord([t.ra for t in targets], [t.dec for t in targets], unit="deg")
    ra, dec = coords.ra.deg, coords.dec.deg
    half = np.array([t.size for t in targets], dtype=float) / 2 + MARGIN_PIXELS
    placed = np.zeros(len(targets), dtype=bool)
    nearest: list[str] = ["" for _ in targets]
    by_cube: list[tuple[CubeEntry, np.ndarray, np.ndarray, np.ndarray]] = []
    for entry in cubes:
        x, y = _pixels(entry, ra, dec)
        try:
            near = coords.separation(entry.centre).deg <= MAX_CENTRE_SEPARATION_DEG + 1.0
        except NotACubeError:
            continue
        ncols, nrows = entry.index.ncols, entry.index.nrows
        on = (near & np.isfinite(x) & np.isfinite(y)
              & (x + half[:, 0] >= -0.5) & (x - half[:, 0] <= ncols - 0.5)
              & (y + half[:, 1] >= -0.5) & (y - half[:, 1] <= nrows - 0.5))
        placed |= on
        for i in np.flatnonzero(~on & near & np.isfinite(x) & np.isfinite(y)):
            if not nearest[i]:
                nearest[i] = (f"falls at pixel x={x[i]:.1f}, y={y[i]:.1f} (0-based) of {entry.sector_name}, "
                              f"off its {ncols}x{nrows} image")
        check_cutouts([targets[i] for i in np.flatnonzero(on)], entry.index.nt, limits,
                      f"{catalog.source} on {entry.sector_name}")
        by_cube.append((entry, on, x, y))
    for i in np.flatnonzero(~placed):
        where = nearest[i] or f"is not within {MAX_CENTRE_SEPARATION_DEG:.0f} deg of any cube's centre"
        plan.rows.append(result_row(targets[i], OFF_FOOTPRINT,
                                    error=f"on none of the {len(cubes)} cube(s): it {where}"))
    pixel_frames = int(sum(
        sum(targets[i].size[0] * targets[i].size[1] for i in np.flatnonzero(on)) * entry.index.nt
        for entry, on, _, _ in by_cube))
    if pixel_frames > limits.max_pixel_frames:
        placements = sum(int(on.sum()) for _, on, _, _ in by_cube)
        raise BulkCapError(f"{catalog.source}: {placements:,} cutouts of {len(targets):,} targets come to "
                           f"{pixel_frames:,} pixel-frames, above the cap of {limits.max_pixel_frames:,}")
    done = existing_tpfs(plan.out) if resume else {}
    for entry, on, x, y in by_cube:
        stem = Location.parse(entry.url).name.removesuffix(".fits").removesuffix("-cube")
        todo = []
        for i in np.flatnonzero(on):
            target = targets[i]
            name = f"{stem}/" + tpf_filename(entry.url, ra[i], dec[i], *target.size)
            if name in done:
                key, member = done[name]
                plan.rows.append(result_row(target, SKIPPED, cube=entry.url, key=key, member=member))
            else:
                todo.append((y[i], x[i], target, name if shards else f"{plan.out.rstrip('/')}/tpfs/{name}"))
        todo.sort(key=lambda item: (item[0], item[1], item[2].row))
        for tile in _tiles(entry, stem, todo, limits.tile_targets, limits.tile_pixel_frames):
            if shards:
                tile = replace(tile, shard=shard_url(plan.out, stem, tile.tile, [p.key for p in tile.placements]))
            plan.tiles.append(tile.to_json())
    return plan


def _pixels(entry: CubeEntry, ra: np.ndarray, dec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """0-based pixel positions of all targets on the cube (NaN where they do not project)."""
    try:
        wcs = entry.wcs
    except NotACubeError:
        nan = np.full(len(ra), np.nan)
        return nan, nan
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        try:
            x, y = wcs.all_world2pix(ra, dec, 0, quiet=True)
        except Exception:  # noqa: BLE001 - astropy/wcslib raise many types; such targets go to the worker
            x, y = wcs.wcs_world2pix(ra, dec, 0)
    return np.asarray(x, dtype=float), np.asarray(y, dtype=float)


def _tiles(entry: CubeEntry, stem: str, todo: list, tile_targets: int, tile_pixel_frames: int) -> list[Tile]:
    runs: list[list[Placement]] = []
    frames = 0
    for _, _, target, key in todo:
        cost = target.size[0] * target.size[1] * entry.index.nt
        if not runs or len(runs[-1]) >= tile_targets or frames + cost > tile_pixel_frames:
            runs.append([])
            frames = 0
        runs[-1].append(Placement(target, key))
        frames += cost
    return [Tile(f"{stem}-{number:05d}", entry.url, tuple(run)) for number, run in enumerate(runs)]


def existing_tpfs(out: str) -> dict[str, tuple[str, str]]:
    """``{cube stem}/{astrocut name}`` -> (key, member) of every TPF already under ``out``."""
    done = {name: (shard, name) for name, shard in shard_members(out).items()}
    tpfs = Location.parse(out.rstrip("/") + "/tpfs/")
    for location, _ in list_objects(tpfs):
        if location.url.endswith(".fits"):
            done["/".join(location.url.rsplit("/", 2)[-2:])] = (location.url, "")
    return done
