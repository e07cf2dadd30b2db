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
  come from :mod:`cubecut.cube.headers`, exactly as ingest makes them.
* **Blocks**: each part of the new cube holds rows ``[row0, row1)`` (0-based); it is the
  old cube's bytes of those rows (one range read) spread over the old frames' positions
  on the new time axis, plus the new FFIs' rows (one read per FFI and plane).
* **Atomic replacement**: a new S3 multipart upload of the same key (readers see the old
  object until CompleteMultipartUpload) or a hidden temporary file renamed over the old
  one (local). Old-cube reads carry its ETag (S3 ``If-Match``), and the ETag is checked
  once more before completing; on any failure the upload is aborted and the old cube is
  untouched. Then the ``.index.json`` sidecar is rewritten and this process's cached
  index of the cube is dropped.

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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Literal

import numpy as np
from astropy.io import fits

from ..cube import headers
from ..cube.index import INDEX_SUFFIX, CubeIndex, index_from_table
from ..cube.layout import CubeLayout
from ..cutout.metadata import invalidate, load_index
from ..errors import DuplicateTimeError, MixedFFIError, NoInputError, NotACubeError
from ..ffi import TIME_KEYS, FFIInfo, inspect_ffis
from ..fficut import read_pixels
from ..fitsio import padded
from ..storage import ByteSource, Location, ReadStats, StaleObjectError, open_source, put_bytes
from .blocks import DEFAULT_BLOCK_BYTES, S3_MIN_PART, Block, plan_blocks
from .plan import check_consistent
from .target import PartReceipt, make_target

log = logging.getLogger(__name__)

#: Table-header keywords that are table structure, not FFI keyword comments.
_STRUCTURAL = {"XTENSION", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "PCOUNT", "GCOUNT", "TFIELDS"}


class RowHeader:
    """One row of a cube's FFI table seen as the FFI image header it came from.

    It offers what :mod:`cubecut.cube.headers` reads from an FFI header: ``cards``
    (keyword, value, comment) in column order, ``get``, ``[]`` and ``comments``. Values
    have the column's type (str, int, float); a NaN float is ``None`` (an undefined
    value), so that it types and converts like the keyword ingest read.
    """

    def __init__(self, values: dict[str, object], comments: dict[str, str]) -> None:
        self._values = values
        self.comments = comments

    @property
    def cards(self) -> list[tuple[str, object, str]]:
        return [(key, value, self.comments.get(key, "")) for key, value in self._values.items()]

    def get(self, key: str, default: object = None) -> object:
        return self._values.get(key, default)

    def __getitem__(self, key: str) -> object:
        return self._values[key]

    def __contains__(self, key: str) -> bool:
        return key in self._values


@dataclass(frozen=True)
class CubeFrame:
    """A frame already in the cube: ``position`` is its 0-based index on the old time axis.

    It duck-types the parts of :class:`~cubecut.ffi.FFIInfo` the cube headers use;
    ``primary_header`` is the old cube's (it matters only for the earliest frame).
    """

    name: str
    product: str
    primary_header: fits.Header
    image_header: RowHeader
    position: int

    @property
    def start(self) -> float:
        return float(self.image_header[TIME_KEYS[self.product][0]])


Frame = CubeFrame | FFIInfo


@dataclass
class UpdatePlan:
    """The new cube: its frames in time order, layout, blocks and header/table bytes.

    ``old`` is the old cube's index (with its ETag); ``index`` the new one (no ETag yet).
    ``head`` is part 1's header bytes, ``tail`` the image padding plus the table HDU.
    """

    cube: Location
    old: CubeIndex
    frames: list[Frame]
    layout: CubeLayout
    blocks: list[Block]
    head: bytes
    tail: bytes
    index: CubeIndex
    skipped: list[str]

    @property
    def old_positions(self) -> np.ndarray:
        """New (0-based) frame index of each old frame, in old order."""
        return np.array([t for t, f in enumerate(self.frames) if isinstance(f, CubeFrame)], dtype=np.intp)


@dataclass(frozen=True)
class UpdateResult:
    """An updated cube: location, sidecar, ETag (S3), size in bytes, frame count, how many
    FFIs were added and which were skipped as already present."""

    cube: str
    index: str
    etag: str | None
    size: int
    nt: int
    added: int
    skipped: list[str]


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
    comments = {k: str(table.header[k]) for k in names if k in table.header and k not in _STRUCTURAL}
    primary = index.primary()
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
        frames.append(CubeFrame(index.ffi_files[position], index.product, primary,
                                RowHeader(values, comments), position))
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
        log.warning("%s is already in the cube: skipped", name)
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
                stats: ReadStats | None = None) -> UpdatePlan:
    """Plan the updated cube from headers only (the old cube's and the new FFIs').

    Local cubes may use blocks below S3's 5 MiB part minimum (a file has no minimum).

    Raises NoInputError (nothing new to add), MixedFFIError, DuplicateTimeError,
    NotACubeError, FFIError, ObjectNotFoundError.
    """
    if not ffi_urls:
        raise NoInputError("no FFIs to add")
    cube = Location.parse(cube_url)
    old = load_index(cube, stats, refresh=True)
    source = open_source(cube, stats, size=old.cube_size, etag=old.cube_etag)
    old_frames = cube_frames(old, read_cube_table(source, old))
    fresh, skipped = check_additions(old, old_frames, inspect_ffis(list(ffi_urls), product or old.product, threads))
    if not fresh:
        raise NoInputError(f"all {len(skipped)} FFI(s) are already in {cube.url}")
    frames: list[Frame] = sorted([*old_frames, *fresh], key=lambda f: f.start)

    primary_bytes = headers.primary_bytes(headers.primary_header(frames, old.sector, today))
    head = primary_bytes + headers.image_header_bytes(old.nrows, old.ncols, len(frames), old.nplanes)
    table = headers.table_hdu(frames)
    table_bytes = headers.table_bytes(table)
    layout = CubeLayout(old.nrows, old.ncols, len(frames), old.nplanes, len(head), len(table_bytes))
    blocks = plan_blocks(layout, block_bytes, min_part=S3_MIN_PART if cube.is_s3 else 1)
    index = index_from_table(fits.Header.fromstring(primary_bytes.decode("ascii")), table.data,
                             nrows=layout.nrows, ncols=layout.ncols, nt=layout.nt, nplanes=layout.nplanes,
                             data_offset=layout.data_offset, cube_size=layout.total_bytes)
    return UpdatePlan(cube, old, frames, layout, blocks, head, bytes(layout.data_padding) + table_bytes, index,
                      skipped)


def build_part(plan: UpdatePlan, block: Block, *, threads: int = 8, stats: ReadStats | None = None) -> bytearray:
    """The bytes of ``block``'s part of the new cube: [head] + rows + [padding + table]."""
    layout, old = plan.layout, plan.old
    nrows = block.row1 - block.row0
    part = bytearray(block.size)
    head = plan.head if block.head else b""
    part[:len(head)] = head
    if block.tail:
        part[block.size - len(plan.tail):] = plan.tail
    cube = np.frombuffer(part, dtype=">f4", count=nrows * layout.ncols * layout.nt * layout.nplanes,
                         offset=len(head)).reshape(nrows, layout.ncols, layout.nt, layout.nplanes)
    old_positions = plan.old_positions

    def copy_old() -> None:
        source = open_source(plan.cube, stats, size=old.cube_size, etag=old.cube_etag)
        start, stop = old.row_offset(block.row0), old.row_offset(block.row1)
        data = source.read(start, stop)
        if len(data) != stop - start:
            raise NotACubeError(f"{plan.cube.url}: short read of rows {block.row0}-{block.row1}")
        cube[:, :, old_positions] = np.frombuffer(data, dtype=">f4").reshape(nrows, layout.ncols, old.nt,
                                                                              layout.nplanes)

    def copy_new(job: tuple[int, FFIInfo, int]) -> None:
        position, ffi, plane = job
        known = {"size": ffi.size, "etag": ffi.etag} if Location.parse(ffi.url).is_s3 else {}
        source = open_source(ffi.url, stats, **known)
        try:
            pixels = ffi.flux if plane == 0 else ffi.error
            cube[:, :, position, plane] = read_pixels(source, pixels, layout.ncols, (block.row0, block.row1))
        finally:
            getattr(source, "close", lambda: None)()

    jobs = [(t, f, k) for t, f in enumerate(plan.frames) if isinstance(f, FFIInfo) for k in range(layout.nplanes)]
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        futures = [pool.submit(copy_old), *(pool.submit(copy_new, job) for job in jobs)]
        for future in futures:
            future.result()
    return part


def update_cube(cube_url: str, ffi_urls: list[str], *, product: str | None = None,
                block_bytes: int = DEFAULT_BLOCK_BYTES, workers: int = 2, threads: int | Literal["auto"] = "auto",
                today: dt.date | None = None, on_block: Callable[[int, int], None] | None = None,
                stats: ReadStats | None = None) -> UpdateResult:
    """Add ``ffi_urls`` (local paths or s3:// URLs) to the cube at ``cube_url``.

    ``workers`` blocks are built at once, each with ``threads`` concurrent reads
    (``"auto"``: 32 for S3 FFIs, 8 for local ones). ``on_block(done, total)`` reports
    progress. The old cube stays readable and unchanged until the new one replaces it in
    one step; any failure (including the cube changing meanwhile: StaleObjectError)
    leaves it as it was.
    """
    plan = plan_update(cube_url, ffi_urls, product=product, block_bytes=block_bytes, stats=stats, today=today)
    remote = any(Location.parse(f.url).is_s3 for f in plan.frames if isinstance(f, FFIInfo))
    reads = (32 if remote else 8) if threads == "auto" else max(1, int(threads))
    target = make_target(plan.cube, plan.layout.total_bytes)
    upload_id = target.begin()
    pool = ThreadPoolExecutor(max_workers=max(1, workers))
    try:
        def write(block: Block) -> PartReceipt:
            return target.write_part(upload_id, block.part, block.offset,
                                     build_part(plan, block, threads=reads, stats=stats))

        futures = [pool.submit(write, block) for block in plan.blocks]
        receipts = []
        for done, future in enumerate(futures, start=1):
            receipts.append(future.result())
            if on_block is not None:
                on_block(done, len(futures))
        pool.shutdown()
        _check_unchanged(plan)
        etag = target.complete(upload_id, receipts)
    except BaseException as failure:
        pool.shutdown(cancel_futures=True)
        try:
            target.abort(upload_id)
        except Exception as exc:  # noqa: BLE001 - report the failure, not the clean-up's
            failure.add_note(f"aborting also failed ({type(exc).__name__}: {exc}); upload {upload_id} of "
                             f"{plan.cube.url} is left for the bucket lifecycle rule")
        raise
    plan.index.cube_etag = etag
    sidecar = plan.cube.with_suffix(INDEX_SUFFIX)
    put_bytes(sidecar, plan.index.to_json(), "application/json")
    invalidate(plan.cube)
    added = sum(isinstance(f, FFIInfo) for f in plan.frames)
    return UpdateResult(plan.cube.url, sidecar.url, etag, plan.layout.total_bytes, plan.layout.nt, added,
                        plan.skipped)


def _check_unchanged(plan: UpdatePlan) -> None:
    """Raise StaleObjectError if the old cube was replaced while the update was built."""
    current = open_source(plan.cube)
    try:
        if (current.size, current.etag) != (plan.old.cube_size, plan.old.cube_etag):
            raise StaleObjectError(f"{plan.cube.url} changed while it was being updated; nothing was written")
    finally:
        getattr(current, "close", lambda: None)()
