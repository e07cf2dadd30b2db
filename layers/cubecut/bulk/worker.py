"""Cut the targets of a run of tiles: each needed row span is read once per run.

Consecutive tiles of one cube are one stream, cut through the cutout pipeline
(:mod:`cubecut.cutout.engine`: boxes -> spans -> reads -> drafts -> TPFs), the one a
single-target ``cutout`` uses, so boxes and bytes are the same as ``cutout(output_dir=...)``'s.
The union of the stream's row spans (:func:`~cubecut.cutout.reader.merged_spans`) is what
it may read: the pipeline reads over a :class:`SpanCache` that fetches each span of that
union once, on first use, and forgets it when no later target needs its row; so memory
stays at a band of rows while bytes read equal the union. A tile is cut in batches of at
most :data:`BATCH_BYTES` of TPF pixels; a batch's rows are read while the previous batch
is cut and its files written (and its own files are laid out meanwhile), and those are
written while the next ones are built (at most :data:`BYTES_IN_FLIGHT` bytes waiting): each to its own key, or, for a
tile with a ``shard``, all as the members of one tar (:mod:`.shards`). Local outputs are
written with ``O_DIRECT`` (:mod:`.direct`): through the page cache, page allocation was
most of a TPF's cost on local disk. The read threads only read (into the cache); the
worker's own thread copies a batch's rows into its files once they are all in. Copied by
the read threads as each arrives (a single cutout's way, for its latency), a TPF took
~15% more CPU, in more thread switches (benchmarks/bulk.py, 1 worker, TPFs not written).

A target that cannot be cut is a result row (``off_footprint`` when its exact box misses
the image, an OutsideCubeError; ``failed`` for any other InputError), never an exception; unreadable cubes and storage
failures raise, so that the caller (a Step Functions retrier) can try the run again.
"""
from __future__ import annotations

import bisect
import functools
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from itertools import accumulate, groupby
from typing import Callable, Iterable

import numpy as np
from astropy.coordinates import SkyCoord

from ..cube.index import CubeIndex
from ..cube.index_cache import invalidate, load_index
from ..cutout.geometry import Box
from ..cutout.identity import set_identity
from ..cutout.engine import TPF_BYTES_PER_PIXEL, start_tpfs, target_boxes
from ..cutout.reader import Threads, merged_spans, open_cube, span_bytes, start_chunks
from ..errors import InputError, OutsideCubeError
from ..storage import Location, RangeSource, ReadStats, StaleObjectError
from ..storage import put_bytes_fast as put_output
from .plan import FAILED, OFF_FOOTPRINT, WRITTEN, Placement, Tile, result_row
from .shards import TarShard, write_shard

#: Concurrent TPF uploads per worker (they wait on the network or disk while the next TPF is built).
UPLOAD_THREADS = 8
#: Bytes of built TPFs (or shards) a worker holds while they wait to be written: beyond
#: it, building waits for the oldest write.
BYTES_IN_FLIGHT = 128 << 20
#: TPF pixel bytes cut at once (one pipeline call): a batch's rows are read while the
#: previous batch's files are written, so a worker holds about two batches' files and
#: :data:`BYTES_IN_FLIGHT` (at most the two tiles' pixels, 480 MB, it held before).
BATCH_BYTES = 128 << 20

OnTarget = Callable[[dict], None]


class Buffers:
    """The file buffers of a worker's TPFs, each reused once its file is written.

    A new 2.5 MB ``bytearray`` is fresh memory, whose page faults cost more CPU than
    zeroing a used one. Thread-safe (buffers come back from the writing threads).
    """

    def __init__(self) -> None:
        self._free: dict[int, list[bytearray]] = {}
        self._lock = threading.Lock()

    def take(self, size: int) -> bytearray:
        """``size`` zero bytes, as ``bytearray(size)`` gives them (``tpf_bytes``'s ``allocate``)."""
        with self._lock:
            free = self._free.get(size)
            buffer = free.pop() if free else None
        if buffer is None:
            return bytearray(size)
        np.frombuffer(buffer, dtype=np.uint8).fill(0)
        return buffer

    def give(self, buffer: bytearray) -> None:
        """A buffer no one uses any more (its file is written), to be taken again."""
        with self._lock:
            self._free.setdefault(len(buffer), []).append(buffer)


class SpanCache:
    """A RangeSource over ``source`` that serves reads from whole byte ranges, each fetched once.

    ``ranges`` are disjoint ``(start, stop, row)`` byte ranges sorted by start; a read must
    lie inside one of them (anything else goes straight to ``source``). Thread-safe.
    """

    def __init__(self, source: RangeSource, ranges: list[tuple[int, int, int]]) -> None:
        self.location, self.size, self.etag = source.location, source.size, source.etag
        self._source = source
        self._ranges = ranges
        self._starts = [r[0] for r in ranges]
        self._data: dict[int, memoryview] = {}
        self._locks = [threading.Lock() for _ in ranges]
        self._guard = threading.Lock()  # over _data's keys: one tile is read while rows are forgotten

    def read(self, start: int, stop: int) -> bytes | memoryview:
        """Bytes ``[start, stop)``: a view into the fetched range that holds them (no copy)."""
        i = bisect.bisect_right(self._starts, start) - 1
        if i < 0 or stop > self._ranges[i][1]:
            return self._source.read(start, stop)
        first = self._ranges[i][0]
        with self._locks[i]:
            data = self._data.get(i)
            if data is None:
                data = memoryview(self._source.read(first, self._ranges[i][1]))
                with self._guard:
                    self._data[i] = data
        return data[start - first:stop - first]

    def forget_rows_below(self, row: int) -> None:
        """Drop the fetched ranges of cube rows ``< row`` (0-based)."""
        with self._guard:
            for i in [i for i in self._data if self._ranges[i][2] < row]:
                del self._data[i]


def run_tiles(tiles: Iterable[dict], *, threads: Threads = "auto", stats: ReadStats | None = None,
              on_target: OnTarget | None = None) -> dict[str, list[dict]]:
    """Cut every target of ``tiles`` (plan items as JSON, :meth:`.plan.Tile.to_json`, in
    order) and write its TPF to its key.

    Returns the result rows per tile id, in target order. ``on_target`` is called with each
    row as it is known; ``stats`` counts the cube reads.
    """
    results: dict[str, list[dict]] = {}
    for cube, grouped in groupby((Tile.from_json(tile) for tile in tiles), key=lambda tile: tile.cube):
        group = list(grouped)
        location = Location.parse(cube)
        try:
            results.update(_run_cube(location, load_index(location, stats), group, threads, stats, on_target))
        except StaleObjectError:  # the cube was replaced since its index was cached: once more
            invalidate(location)
            results.update(_run_cube(location, load_index(location, stats, refresh=True), group, threads,
                                     stats, on_target))
    return results


@dataclass(frozen=True)
class _Cut:
    """One placement of a tile, where it falls: its box, or why it has none."""

    placement: Placement
    coord: SkyCoord
    box: Box | InputError


@dataclass(frozen=True)
class _Batch:
    """Placements of one tile cut in one pipeline call: their numbers in the tile, boxes, targets."""

    tile: int
    members: list[int]
    boxes: list[Box]
    coords: list[SkyCoord]


def _batches(cuts: list[list[_Cut]], nt: int) -> list[_Batch]:
    """The cuttable placements of the run in batches, in order, each at most
    :data:`BATCH_BYTES` of TPF pixels (or one TPF)."""
    batches: list[_Batch] = []
    for number, tile_cuts in enumerate(cuts):
        batch, size = _Batch(number, [], [], []), 0
        for i, cut in enumerate(tile_cuts):
            if not isinstance(cut.box, Box):
                continue
            cost = cut.box.nx * cut.box.ny * nt * TPF_BYTES_PER_PIXEL
            if batch.members and size + cost > BATCH_BYTES:
                batches.append(batch)
                batch, size = _Batch(number, [], [], []), 0
            batch.members.append(i)
            batch.boxes.append(cut.box)
            batch.coords.append(cut.coord)
            size += cost
        if batch.members:
            batches.append(batch)
    return batches


def _run_cube(location: Location, index: CubeIndex, tiles: list[Tile], threads: Threads,
              stats: ReadStats | None, on_target: OnTarget | None) -> dict[str, list[dict]]:
    everyone = [p for tile in tiles for p in tile.placements]
    coords = list(SkyCoord([p.target.ra for p in everyone], [p.target.dec for p in everyone], unit="deg")
                  if everyone else [])  # one SkyCoord of all, indexed: a sixth of the CPU of one each
    boxes = iter(target_boxes(index, coords, [p.target.size for p in everyone], location.name))
    positions = iter(coords)
    cuts = [[_Cut(p, next(positions), next(boxes)) for p in tile.placements] for tile in tiles]
    batches = _batches(cuts, index.nt)
    cache = SpanCache(open_cube(location, index, stats), [(*span_bytes(index, span), span.y) for span in
                                                          merged_spans(index, [b for x in batches for b in x.boxes])])
    # Per batch: the lowest box row it or any later batch needs (rows below can be forgotten).
    lowest = [min(box.y0 for box in batch.boxes) for batch in batches] + [index.nrows]
    needed_from = list(accumulate(reversed(lowest), min))[::-1]
    results: dict[str, list[dict]] = {}
    writes = _Writes(on_target, results)
    buffers = Buffers()

    def fetch(b: int) -> Callable[[], object]:
        """Batch ``b``'s rows into the cache, started on the read lanes (which do nothing else)."""
        return start_chunks(cache, index, batches[b].boxes, threads) if b < len(batches) else lambda: None

    fetches = {0: fetch(0)}

    def start(b: int) -> Callable[[], list[bytearray | InputError]] | None:
        if b == len(batches):
            return None
        cut = start_tpfs(cache, index, batches[b].boxes, batches[b].coords, 1, allocate=buffers.take)

        def tpfs() -> list[bytearray | InputError]:
            fetches.pop(b)()
            fetches[b + 1] = fetch(b + 1)  # the next batch's rows are read while this one is cut
            return cut()  # the rows copied from the cache on this thread

        return tpfs

    pending, b = start(0), 0
    with ThreadPoolExecutor(max_workers=UPLOAD_THREADS, thread_name_prefix="cubecut-bulk-put") as uploads:
        for number, (tile, tile_cuts) in enumerate(zip(tiles, cuts)):
            files: dict[int, bytearray | InputError] = {}
            while b < len(batches) and batches[b].tile == number:
                assert pending is not None  # started for every batch
                files.update(zip(batches[b].members, pending()))
                cache.forget_rows_below(needed_from[b + 1])
                b += 1
                pending = start(b)  # its rows are read while this one is written
            writes.tile_done(tile.tile, _write_tile(location, tile, tile_cuts, files, writes, uploads, buffers))
        writes.drain()
    return results


def _write_tile(location: Location, tile: Tile, cuts: list[_Cut], files: dict[int, bytearray | InputError],
                writes: "_Writes", uploads: ThreadPoolExecutor, buffers: Buffers) -> list[tuple[dict, Future | None]]:
    """Write a tile's TPFs (each to its key, or all to the tile's shard); its result rows,
    in target order, with the write each waits for (None: nothing to write)."""
    pending: list[tuple[dict, Future | None]] = []
    shard = TarShard() if tile.shard else None
    for i, cut in enumerate(cuts):
        target, key = cut.placement.target, cut.placement.key
        data = files[i] if isinstance(cut.box, Box) else cut.box
        if isinstance(data, bytearray):
            try:
                set_identity(data, target.identity)
            except InputError as exc:
                buffers.give(data)
                data = exc
        if isinstance(data, InputError):
            status = OFF_FOOTPRINT if isinstance(data, OutsideCubeError) else FAILED
            pending.append((result_row(target, status, cube=location.url, error=f"{type(data).__name__}: {data}"),
                            None))
            continue
        if shard is not None:  # key is the member's name
            shard.add(key, data)  # a copy: the buffer is free at once
            buffers.give(data)
            pending.append((result_row(target, WRITTEN, cube=location.url, key=tile.shard or "", member=key), None))
        else:
            written = writes.submit(uploads, len(data), put_output, key, data, "application/fits")
            written.add_done_callback(functools.partial(_give_back, buffers, data))
            pending.append((result_row(target, WRITTEN, cube=location.url, key=key), written))
    if shard is not None and shard.members:
        written = writes.submit(uploads, shard.size, write_shard, tile.shard, shard)
        pending = [(row, written if row["member"] else None) for row, _ in pending]
    return pending


def _give_back(buffers: Buffers, data: bytearray, _written: Future) -> None:
    buffers.give(data)


class _Writes:
    """The uploads in flight of a worker: at most :data:`BYTES_IN_FLIGHT` bytes of output
    wait to be written (the oldest first), and each tile's rows are reported, in tile
    order, once all of its writes are done, while later tiles are cut."""

    def __init__(self, on_target: OnTarget | None, results: dict[str, list[dict]]) -> None:
        self._on_target, self._results = on_target, results
        self._writes: deque[tuple[Future, int]] = deque()
        self._tiles: deque[tuple[str, list[tuple[dict, Future | None]]]] = deque()
        self._bytes = 0

    def submit(self, pool: ThreadPoolExecutor, size: int, fn: Callable, *args: object) -> Future:
        """``pool.submit(fn, *args)`` once fewer than ``BYTES_IN_FLIGHT - size`` bytes are
        in flight (always when nothing is: a shard may be larger)."""
        while self._writes and self._bytes + size > BYTES_IN_FLIGHT:
            self._retire()
        future = pool.submit(fn, *args)
        self._writes.append((future, size))
        self._bytes += size
        return future

    def tile_done(self, tile: str, pending: list[tuple[dict, Future | None]]) -> None:
        """The tile's rows and their writes (None: nothing to write); report finished tiles."""
        self._tiles.append((tile, pending))
        while self._writes and self._writes[0][0].done():
            self._retire()
        self._report(wait=False)

    def drain(self) -> None:
        """Wait for every write and report every tile."""
        while self._writes:
            self._retire()
        self._report(wait=True)

    def _retire(self) -> None:
        future, size = self._writes.popleft()
        future.result()  # a storage failure fails the run, to be retried as a whole
        self._bytes -= size

    def _report(self, wait: bool) -> None:
        while self._tiles and (wait or all(f is None or f.done() for _, f in self._tiles[0][1])):
            tile, pending = self._tiles.popleft()
            for row, write in pending:
                if write is not None:
                    write.result()
                if self._on_target is not None:
                    self._on_target(row)
            self._results[tile] = [row for row, _ in pending]
