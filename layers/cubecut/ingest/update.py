"""Append FFIs to an existing cube (astrocut's ``update_cube``, done right).

The result is the cube that ingesting all the FFIs at once would make, byte for byte
(apart from the primary header's DATE and the time in DATASUM's comment), and it replaces
the old cube atomically. astrocut 1.3 instead promotes the data to float64, leaves
TSTOP/DATE-END stale, appends new frames after the old ones whatever their times, and
rewrites the file in place (a failure leaves it broken).

How:

* **Plan** from headers only: the old cube's primary header and FFI table (each old
  frame is described by its table row) plus the new FFIs' headers, merged in time order
  (new FFIs may fall before, between or after the old frames). Headers, table and layout
  come from :func:`cubecut.ingest.plan.lay_out`, exactly as ingest makes them.
* **Blocks**: each part of the new cube holds rows ``[row0, row1)`` (0-based); it is the
  old cube's bytes of those rows (one range read) spread over the old frames' positions
  on the new time axis, plus the new FFIs' rows (one read per FFI and plane).
* **Atomic replacement**: the plan is staged and run exactly like an ingest plan
  (:func:`cubecut.ingest.plan.stage_plan`, :mod:`~cubecut.ingest.transpose`,
  :mod:`~cubecut.ingest.finalize`), so the state machine runs updates too. Old-cube reads
  carry its ETag (S3 ``If-Match``) and the commit is conditional on the key still holding
  that version; on any failure the upload is aborted and the old cube is untouched. Then
  the sidecar is published and this process's cached index of the cube is dropped.

Limits of the byte identity: the table's columns are the template FFI's keywords (the
first frame in time with a WCS); a keyword that an old FFI had but the old template
lacked is not in the old table, so it cannot come back if a new FFI becomes the template.
Header comments of old frames are those of the table header (the template's), which
equal every FFI's own for SPOC and TICA products.

FFIs whose file name is already in the cube are skipped (as astrocut does), with a
warning in the log and their names in :attr:`UpdateResult.skipped`.
"""
from __future__ import annotations

import datetime as dt
import logging
from dataclasses import asdict, dataclass, field
from typing import Callable, Literal

import numpy as np
from astropy.io import fits

from ..cube import headers
from ..cube.index import CubeIndex
from ..cube.sidecar import describes, publish_index, read_sidecar
from ..cube.index_cache import invalidate, load_index
from ..errors import DuplicateTimeError, MixedFFIError, NoInputError, NotACubeError, NothingToAddError
from ..ffi import TIME_KEYS, FFIInfo, inspect_ffis
from ..fitsio import padded
from ..storage import ByteSource, Location, ReadStats, open_source, part_minimum
from .partition import DEFAULT_BLOCK_BYTES
from .finalize import IngestResult
from .plan import BaseCube, IngestPlan, check_consistent, lay_out, stage_plan
from .run import run_plan

log = logging.getLogger(__name__)


class RowHeader(dict[str, object]):
    """One row of a cube's FFI table seen as the FFI image header it came from.

    It offers what :mod:`cubecut.cube.headers` reads from an FFI header: ``cards``
    (keyword, value, comment) in column order, ``get``, ``[]`` (the row's values by
    keyword) and ``comments``. Values have the column's type (str, int, float); a NaN
    float is ``None`` (an undefined value), so that it types and converts like the keyword
    ingest read.
    """

    def __init__(self, values: dict[str, object], comments: dict[str, str]) -> None:
        super().__init__(values)
        self.comments = comments

    @property
    def cards(self) -> list[tuple[str, object, str]]:
        return [(key, value, self.comments.get(key, "")) for key, value in self.items()]


@dataclass(frozen=True)
class CubeFrame:
    """A frame already in the cube.

    It duck-types the parts of :class:`~cubecut.ffi.FFIInfo` the cube headers use;
    ``primary_header`` is the old cube's (it matters only for the earliest frame).
    """

    name: str
    product: str
    primary_header: fits.Header
    image_header: RowHeader

    @property
    def start(self) -> float:
        return float(self.image_header[TIME_KEYS[self.product][0]])


@dataclass(frozen=True)
class UpdateResult(IngestResult):
    """An updated cube (see IngestResult), how many FFIs were added and which were
    skipped as already present."""

    added: int = 0
    skipped: list[str] = field(default_factory=list)


def read_cube_table(source: ByteSource, index: CubeIndex) -> fits.BinTableHDU:
    """The FFI table HDU of a cube (one read: from the table's offset to the end)."""
    offset = index.data_offset + padded(index.nrows * index.row_stride)
    data = source.read(offset, source.size)
    try:
        return fits.BinTableHDU.fromstring(data)
    except (ValueError, TypeError, KeyError) as exc:
        raise NotACubeError(f"{source.location.url}: unreadable FFI table: {exc}") from None


def cube_frames(index: CubeIndex, table: fits.BinTableHDU) -> list[CubeFrame]:
    """The old cube's frames, described by their table rows, in the cube's (time) order."""
    names = [n for n in table.columns.names if n != headers.FILE_COLUMN]
    comments = {k: str(table.header[k]) for k in names if k in table.header and k not in headers.STRUCTURAL}
    primary = fits.Header.fromstring(index.primary_header)
    frames = []
    for position, row in enumerate(table.data):
        values: dict[str, object] = {}
        for name in names:
            value = row[name]
            if isinstance(value, str):
                value = str(value)
            elif isinstance(value, (np.floating, float)):
                value = None if np.isnan(value) else float(value)
            elif isinstance(value, (np.integer, np.bool_)):
                value = int(value)
            values[name] = value
        frames.append(CubeFrame(index.ffi_files[position], index.product, primary, RowHeader(values, comments)))
    return frames


def check_additions(index: CubeIndex, old: list[CubeFrame], new: list[FFIInfo]) -> tuple[list[FFIInfo], list[str]]:
    """The new FFIs that are not yet in the cube, and the names of those that are.

    Raises MixedFFIError if an FFI does not belong to the cube (product, shape, planes,
    camera/CCD, sector), DuplicateTimeError for a new FFI with an old frame's start time
    or a name given twice.
    """
    present = {f.name for f in old}
    skipped = [f.name for f in new if f.name in present]
    for name in skipped:
        log.info("%s is already in the cube: skipped", name)  # counted in UpdateResult.skipped
    fresh = [f for f in new if f.name not in present]
    if not fresh:
        return fresh, skipped
    check_consistent(fresh)
    where = f"the cube {index.sector_name}"
    for ffi in fresh:
        nplanes = 2 if ffi.error is not None else 1
        for what, mine, theirs in (("product", ffi.product, index.product),
                                   ("shape", ffi.shape, (index.nrows, index.ncols)),
                                   ("planes", nplanes, index.nplanes),
                                   ("camera/CCD", ffi.camera_ccd, (index.camera, index.ccd))):
            if mine != theirs:
                raise MixedFFIError(f"{ffi.name} has {what} {mine}, but {where} has {theirs}")
        if ffi.sector is not None and index.sector and ffi.sector != index.sector:
            raise MixedFFIError(f"{ffi.name} is from sector {ffi.sector}, {where} is sector {index.sector}")
    starts = {f.start: f.name for f in old}
    for ffi in fresh:
        if ffi.start in starts:
            raise DuplicateTimeError(f"{ffi.name} has the start time {ffi.start} of {starts[ffi.start]}, "
                                     "already in the cube")
    return fresh, skipped


def plan_update(cube_url: str, ffi_urls: list[str], *, product: str | None = None,
                block_bytes: int = DEFAULT_BLOCK_BYTES, threads: int = 64, today: dt.date | None = None,
                stats: ReadStats | None = None) -> tuple[IngestPlan, list[str]]:
    """Plan the updated cube from headers only (the old cube's and the new FFIs') and stage
    it like an ingest plan; returns the plan and the names skipped as already present.

    The old cube's index is built from the cube itself (a stale sidecar cannot mislead
    the update); if its sidecar does not describe it, the sidecar is repaired on the way.
    Local cubes may use blocks below S3's 5 MiB part minimum (a file has no minimum).

    Raises NothingToAddError (every FFI is in the cube), NoInputError (no FFI), MixedFFIError, DuplicateTimeError,
    NotACubeError, FFIError, ObjectNotFoundError.
    """
    if not ffi_urls:
        raise NoInputError("no FFIs to add")
    cube = Location.parse(cube_url)
    old = load_index(cube, stats, refresh=True)
    repaired = _repair_sidecar(cube, old)
    source = open_source(cube, stats, size=old.cube_size, etag=old.cube_etag)
    old_frames = cube_frames(old, read_cube_table(source, old))
    fresh, skipped = check_additions(old, old_frames, inspect_ffis(list(ffi_urls), product or old.product, threads))
    if not fresh:
        note = "; its stale index sidecar was rebuilt from the cube" if repaired else ""
        raise NothingToAddError(f"all {len(skipped)} FFI(s) are already in {cube.url}{note}")
    frames: list[CubeFrame | FFIInfo] = sorted([*old_frames, *fresh], key=lambda f: f.start)
    min_part = part_minimum(cube)
    # A worker holds the base cube's rows of its block beside the part: half the budget each.
    # The index says sector 0 where the cube's SECTOR is undefined: keep it so.
    draft = lay_out(frames, old.product, old.sector or None, (old.camera, old.ccd), (old.nrows, old.ncols),
                    old.nplanes, block_bytes=max(block_bytes // 2, min_part), min_part=min_part, today=today)
    positions = [t for t, f in enumerate(frames) if isinstance(f, CubeFrame)]
    base = BaseCube(cube.url, old.cube_etag, old.cube_size, old.data_offset, old.nt, positions)
    plan = stage_plan(cube, draft, old.cube_etag, base)
    return plan, skipped


def _repair_sidecar(cube: Location, index: CubeIndex) -> bool:
    """Publish ``index`` (built from the cube) if the sidecar does not describe the cube;
    True if it did not."""
    current, _ = read_sidecar(cube)
    if describes(current, index.cube_etag, index.cube_size):
        return False
    log.warning("the index sidecar of %s does not describe the cube: rebuilt from the cube", cube.url)
    publish_index(cube, index)
    return True


def update_cube(cube_url: str, ffi_urls: list[str], *, product: str | None = None,
                block_bytes: int = DEFAULT_BLOCK_BYTES, workers: int = 2, threads: int | Literal["auto"] = "auto",
                today: dt.date | None = None, on_block: Callable[[int, int], None] | None = None,
                stats: ReadStats | None = None) -> UpdateResult:
    """Add ``ffi_urls`` (local paths or s3:// URLs) to the cube at ``cube_url``.

    The same plan -> blocks -> finalize steps as an ingest (and so the same commit rule):
    ``workers`` blocks are built at once, each with ``threads`` concurrent reads.
    ``on_block(done, total)`` reports progress. The old cube stays readable and unchanged
    until the new one replaces it in one step; any failure leaves it as it was, and if
    another writer replaced the cube meanwhile the update fails with StaleObjectError
    (while reading) or ConcurrentWriteError (at the commit) and writes nothing.
    """
    plan, skipped = plan_update(cube_url, ffi_urls, product=product, block_bytes=block_bytes, stats=stats,
                                today=today)
    result = run_plan(plan, workers=workers, threads=threads, on_block=on_block, stats=stats)
    invalidate(plan.cube)
    return UpdateResult(**asdict(result), added=sum(f is not None for f in plan.ffis), skipped=skipped)
