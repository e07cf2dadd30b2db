"""Ingest step 1: read only the FFI headers, order them in time, lay the cube out.

The plan is what the block workers and the finalize step share. Its bulky parts (the
header bytes of part 1, the table HDU of the last part, the index, the FFI list, the
block list) are written to a staging area next to the cube; only a small summary
travels through Step Functions (its payload limit is 256 KiB).
"""
from __future__ import annotations

import datetime as dt
import json
import os
import warnings
from dataclasses import asdict, dataclass
from typing import Any

from astropy.io import fits

from ..cube import headers
from ..cube.index import CubeIndex, index_from_table, sector_name
from ..cube.layout import CubeLayout
from ..errors import (DuplicateTimeError, FFIError, InputError, MixedFFIError, NoInputError, NoSectorWarning,
                      ObjectNotFoundError)
from ..ffi import FFIInfo, PixelRef, inspect_ffis
from ..storage import (Location, ReadStats, delete, get_bytes, head, open_upload, put_bytes, staging_folder,
                       writable)
from .partition import DEFAULT_BLOCK_BYTES, S3_MIN_PART, Block, plan_blocks

PLAN_VERSION = 2
#: S3 user metadata (``x-amz-meta-...``) of every cube an ingest writes: its plan, so a
#: retried Finalize can prove the object is its own, and the version it replaced
#: (``none`` where there was no cube), so an audit can check that the versions form one line.
PLAN_KEY = "cubecut-plan"
REPLACES_KEY = "cubecut-replaces"
#: Tags on every staging object, so a bucket lifecycle rule can expire what a dead ingest
#: left behind (template.yaml: ExpireIngestStaging); ``cubecut janitor`` does it by hand.
STAGING_TAGS = {"cubecut-staging": "true"}


@dataclass(frozen=True)
class FFIRef:
    """What a block worker needs to read one FFI's rows (no headers)."""

    url: str
    size: int
    etag: str | None
    flux: PixelRef
    error: PixelRef | None


@dataclass(frozen=True)
class BaseCube:
    """The cube an update starts from (one version of it): its frames keep their pixels.

    ``positions[i]`` is the new (0-based) frame index of the base cube's frame ``i``.
    Rows are read from the base version only (``If-Match`` its ETag).
    """

    url: str
    etag: str | None
    size: int
    data_offset: int
    nt: int
    positions: list[int]


@dataclass
class IngestPlan:
    """A planned cube. ``ffis`` and the cube's time axis share one (time) order; for an
    update, ``ffis[t]`` is None where frame ``t`` comes from ``base``.

    ``replaces`` is the version (ETag) of the cube at the key when the plan was made, or
    None if there was none: the upload completes only if the key still holds it.
    """

    plan_id: str
    cube: str
    staging: str
    upload_id: str
    product: str
    sector: int | None  # None: the FFIs carry none (the cube's SECTOR is undefined)
    camera: int
    ccd: int
    layout: CubeLayout
    blocks: list[Block]
    ffis: list[FFIRef | None]
    replaces: str | None = None
    base: BaseCube | None = None
    version: int = PLAN_VERSION

    # Staging objects, all under ``staging`` (an S3 prefix or a hidden local folder).
    @property
    def plan_url(self) -> str:
        return self.staging + "plan.json"

    @property
    def head_url(self) -> str:
        return self.staging + "head.bin"

    @property
    def tail_url(self) -> str:
        return self.staging + "tail.bin"

    @property
    def index_url(self) -> str:
        return self.staging + "cube-index.json"

    @property
    def items_url(self) -> str:
        return self.staging + "blocks.json"

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @classmethod
    def load(cls, url: str) -> "IngestPlan":
        """The plan staged at ``url`` (its :attr:`plan_url`)."""
        return cls.from_json(get_bytes(url)[0])

    @classmethod
    def from_json(cls, data: bytes) -> "IngestPlan":
        """The plan that :meth:`to_json` wrote as ``data``."""
        raw = json.loads(data)
        if raw.get("version") != PLAN_VERSION:
            raise InputError(f"unsupported ingest plan version {raw.get('version')!r}")
        raw["layout"] = CubeLayout(**raw["layout"])
        raw["blocks"] = [Block(**b) for b in raw["blocks"]]
        raw["ffis"] = [None if f is None else FFIRef(f["url"], f["size"], f["etag"], PixelRef(**f["flux"]),
                                                     PixelRef(**f["error"]) if f["error"] else None)
                       for f in raw["ffis"]]
        raw["base"] = BaseCube(**raw["base"]) if raw.get("base") else None
        return cls(**raw)

    def summary(self) -> dict:
        """The small JSON document that travels between state machine steps."""
        items = Location.parse(self.items_url)
        return {"plan": self.plan_url, "plan_id": self.plan_id, "cube": self.cube, "upload_id": self.upload_id,
                "blocks": {"Bucket": items.bucket, "Key": items.key}, "nblocks": len(self.blocks)}


def cube_name(product: str, sector: int, camera: int, ccd: int) -> str:
    """TESScut's cube object name, e.g. ``tess-s0001-1-3-cube.fits`` (``tica-`` for TICA)."""
    return sector_name(sector, camera, ccd, product) + "-cube.fits"


def check_consistent(ffis: list[FFIInfo]) -> None:
    """Raise a named error unless all FFIs share product, shape, camera/CCD, sector and
    have distinct start times and names."""
    first = ffis[0]
    for ffi in ffis[1:]:
        for what, mine, theirs in (("product", ffi.product, first.product), ("shape", ffi.shape, first.shape),
                                   ("camera/CCD", ffi.camera_ccd, first.camera_ccd)):
            if mine != theirs:
                raise MixedFFIError(f"{ffi.name} has {what} {mine}, but {first.name} has {theirs}: "
                                    "one cube holds the FFIs of one sector/camera/CCD")
        if None not in (ffi.sector, first.sector) and ffi.sector != first.sector:
            raise MixedFFIError(f"{ffi.name} is from sector {ffi.sector}, {first.name} from sector {first.sector}")
    starts: dict[float, str] = {}
    names: set[str] = set()
    for ffi in ffis:
        if ffi.start in starts:
            raise DuplicateTimeError(f"{ffi.name} and {starts[ffi.start]} have the same start time {ffi.start}")
        if ffi.name in names:
            raise DuplicateTimeError(f"{ffi.name} is given twice")
        starts[ffi.start] = ffi.name
        names.add(ffi.name)


@dataclass
class PlanDraft:
    """A cube laid out from its frames' headers, before anything is written.

    ``frames`` in time order: FFIs and, for an update, the base cube's frames (which the
    block workers do not read). ``tail_bytes`` is the image padding + table HDU.
    """

    frames: list[Any]
    product: str
    sector: int | None
    camera: int
    ccd: int
    layout: CubeLayout
    blocks: list[Block]
    head_bytes: bytes
    tail_bytes: bytes
    index: CubeIndex

    def refs(self) -> list[FFIRef | None]:
        """What the block workers read of each frame, in time order (None: a base cube's frame)."""
        return [FFIRef(f.url, f.size, f.etag, f.flux, f.error) if isinstance(f, FFIInfo) else None
                for f in self.frames]


def lay_out(frames: list[Any], product: str, sector: int | None, camera_ccd: tuple[int, int],
            shape: tuple[int, int], nplanes: int, *, block_bytes: int, min_part: int = S3_MIN_PART,
            today: dt.date | None = None) -> PlanDraft:
    """The cube of ``frames`` (in time order) as ingest makes it: headers, table, layout,
    ``block_bytes`` blocks (parts of at least ``min_part`` bytes) and index.

    Raises FFIError if the frames' headers cannot be combined into the cube's headers and
    table, PlanError if the blocks cannot be valid S3 parts, NotACubeError if no frame has a WCS.
    """
    nrows, ncols = shape
    try:
        primary_bytes = headers.primary_bytes(headers.primary_header(frames, sector, today))
        head_bytes = primary_bytes + headers.image_header_bytes(nrows, ncols, len(frames), nplanes)
        table = headers.table_hdu(frames)
        table_bytes = headers.table_bytes(table)
    except (KeyError, ValueError, TypeError, OverflowError) as exc:
        # e.g. a keyword that is a number in one FFI and text in another, or out of range
        raise FFIError(f"the FFI headers cannot be combined into the cube's headers and table: "
                       f"{type(exc).__name__}: {exc}") from None
    layout = CubeLayout(nrows, ncols, len(frames), nplanes, len(head_bytes), len(table_bytes))
    blocks = plan_blocks(layout, block_bytes, min_part=min_part)
    index = index_from_table(fits.Header.fromstring(primary_bytes.decode("ascii")), table.data, nrows=nrows,
                             ncols=ncols, nt=len(frames), nplanes=nplanes, data_offset=layout.data_offset,
                             cube_size=layout.total_bytes)
    return PlanDraft(frames, product, sector, *camera_ccd, layout, blocks, head_bytes,
                     bytes(layout.data_padding) + table_bytes, index)


def draft_plan(ffi_urls: list[str], *, product: str | None = None, sector: int | None = None,
               block_bytes: int = DEFAULT_BLOCK_BYTES, threads: int = 64, today: dt.date | None = None,
               stats: ReadStats | None = None, named: bool = False) -> PlanDraft:
    """Read only the FFIs' headers (counted in ``stats``) and lay the cube out; write nothing.

    ``named``: the cube is to get TESScut's name, which needs a sector. Raises the named
    :class:`~cubecut.errors.InputError` s of :func:`make_plan`.
    """
    if not ffi_urls:
        raise NoInputError("no FFIs to ingest")
    ordered = headers.time_order(inspect_ffis(list(ffi_urls), product, threads, stats))
    check_consistent(ordered)
    first = ordered[0]
    if sector is not None and first.sector is not None and sector != first.sector:
        raise MixedFFIError(f"sector {sector} was asked for, but the FFIs are from sector {first.sector}")
    sector = sector if sector is not None else first.sector
    if sector is None:
        if named:
            raise InputError("the FFIs carry no sector (no SECTOR keyword, no -sNNNN- in their names), so the "
                             "cube has no TESScut name: give the sector, or a cube file name instead of a folder")
        warnings.warn("the FFIs carry no sector (no SECTOR keyword, no -sNNNN- in their names): the cube's "
                      "SECTOR is left undefined, as astrocut does; give the sector to set it", NoSectorWarning,
                      stacklevel=3)
    return lay_out(ordered, first.product, sector, first.camera_ccd, first.shape,
                   2 if first.error is not None else 1, block_bytes=block_bytes, today=today)


def make_plan(ffi_urls: list[str], cube_url: str, *, product: str | None = None, sector: int | None = None,
              block_bytes: int = DEFAULT_BLOCK_BYTES, threads: int = 64, today: dt.date | None = None) -> IngestPlan:
    """Plan a cube from FFIs (local paths, s3:// or other fsspec URLs), start its upload, stage the plan.

    ``cube_url`` ending in ``/`` is a folder/prefix: the cube gets TESScut's name there.
    FFIs without a sector (no SECTOR keyword, no ``-sNNNN-`` in their names) and no
    ``sector`` given make a cube whose SECTOR is undefined, with a :class:`NoSectorWarning`
    (astrocut writes them so too).

    Reads only headers. Raises a named :class:`~cubecut.errors.InputError` for bad input
    before anything is written; if staging fails after the upload began, it is aborted.
    """
    draft = draft_plan(ffi_urls, product=product, sector=sector, block_bytes=block_bytes, threads=threads,
                       today=today, named=cube_url.endswith("/"))
    if cube_url.endswith("/"):
        assert draft.sector is not None  # refused by draft_plan: a folder needs the sector for the cube's name
        cube_url += cube_name(draft.product, draft.sector, draft.camera, draft.ccd)
    cube = writable(Location.parse(cube_url))
    try:
        replaces = head(cube).etag  # the version this cube replaces
    except ObjectNotFoundError:
        replaces = None
    return stage_plan(cube, draft, replaces)


def stage_plan(cube: Location, draft: PlanDraft, replaces: str | None, base: BaseCube | None = None) -> IngestPlan:
    """Start the cube's upload and write the plan's staging objects; the shared last step
    of planning an ingest and an update.

    If staging fails after the upload began, the upload is aborted.
    """
    plan_id = os.urandom(8).hex()
    target = open_upload(cube)
    metadata = {PLAN_KEY: plan_id, REPLACES_KEY: (replaces or "none").strip('"')}
    upload_id = target.begin("application/fits", metadata, draft.layout.total_bytes)
    plan = IngestPlan(plan_id, cube.url, staging_folder(cube, plan_id), upload_id, draft.product, draft.sector,
                      draft.camera, draft.ccd, draft.layout, draft.blocks, draft.refs(), replaces, base)
    try:
        put_bytes(plan.head_url, draft.head_bytes, tags=STAGING_TAGS)
        put_bytes(plan.tail_url, draft.tail_bytes, tags=STAGING_TAGS)
        put_bytes(plan.index_url, draft.index.to_json(), "application/json", tags=STAGING_TAGS)
        put_bytes(plan.items_url, json.dumps([{"block": b.index} for b in draft.blocks]).encode(), "application/json",
                  tags=STAGING_TAGS)
        put_bytes(plan.plan_url, plan.to_json(), "application/json", tags=STAGING_TAGS)
    except BaseException as failure:
        try:
            target.abort(upload_id)
            discard_staging(plan)
        except Exception as exc:  # noqa: BLE001 - report the failure, not the clean-up's
            failure.add_note(f"cleaning up also failed ({type(exc).__name__}: {exc}); upload {upload_id} of "
                             f"{cube.url} is left for `cubecut janitor` or the bucket lifecycle rule")
        raise
    return plan


def discard_staging(plan: IngestPlan) -> None:
    """Delete the plan's staging objects (after completion or abort)."""
    for url in (plan.head_url, plan.tail_url, plan.index_url, plan.items_url, plan.plan_url, plan.staging):
        delete(url)


def load_index(plan: IngestPlan) -> CubeIndex:
    """The cube index staged by the plan (without the cube's ETag)."""
    return CubeIndex.from_json(get_bytes(plan.index_url)[0])
