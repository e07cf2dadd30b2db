"""Cut the targets of a run of tiles: each needed row span is read once per run.

Consecutive tiles of one cube are one stream. Their boxes are computed with
:func:`~cubecut.cutout.cutout_box` exactly as a single-target ``cutout`` computes them,
and the union of their row spans (:func:`~cubecut.cutout.reader.merged_spans`) is what
the stream may read. Pixels are read tile by tile through the cutout engine's
:func:`~cubecut.cutout.reader.read_chunks`, over a :class:`SpanCache` that fetches each
span of that union once, on first use, and forgets it when no later tile needs its row;
so memory stays at a band of rows while bytes read equal the union. The next tile's
pixels are read while a tile's TPFs are built (so a worker holds two tiles' pixels).
TPFs are built with the engine's fast writer :func:`~cubecut.cutout.tpf.tpf_bytes` (the
same bytes as ``cutout(output_dir=...)``) and written while the next ones, and the next
tiles, are built (at most :data:`BYTES_IN_FLIGHT` bytes waiting): each to its own key,
or, for a tile with a ``shard``, all as the members of one tar (:mod:`.shards`). Local
outputs are written with ``O_DIRECT`` (:mod:`.direct`): through the page cache, page
allocation was most of a TPF's cost on local disk.

A target that cannot be cut is a result row (``off_footprint`` when its exact box misses
the image; ``failed`` otherwise), never an exception; unreadable cubes and storage
failures raise, so that the caller (a Step Functions retrier) can try the run again.
"""
from __future__ import annotations

import bisect
import functools
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import groupby
from typing import Callable, Iterable

import numpy as np
from astropy.coordinates import SkyCoord

from ..cube.index import CubeIndex
from ..cutout.geometry import Box, cutout_box, ffi_wcs
from ..cube.index_cache import invalidate, load_index
from ..cutout.reader import Chunks, Threads, fill_box, merged_spans, open_cube, read_chunks, span_bytes
from ..cutout.identity import Identity, set_identity
from ..cutout.tpf import tpf_bytes
from ..errors import CoordinateError, CutoutSizeError, InputError, OutsideCubeError
from ..storage import Location, RangeSource, ReadStats, StaleObjectError
from .direct import put_output
from .plan import FAILED, OFF_FOOTPRINT, WRITTEN
from .shards import TarShard, write_shard
from .stars import Target

#: Concurrent TPF uploads per worker (they wait on the network or disk while the next TPF is built).
UPLOAD_THREADS = 8
#: Bytes of built TPFs (or shards) a worker holds while they wait to be written: beyond
#: it, building waits for the oldest write (about 50 TPFs of 11x11 x 1,000 frames).
BYTES_IN_FLIGHT = 128 << 20

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
    """Cut every target of ``tiles`` (plan items, in order) and write its TPF to its key.

    Returns the result rows per tile id, in target order. ``on_target`` is called with each
    row as it is known; ``stats`` counts the cube reads.
    """
    results: dict[str, list[dict]] = {}
    for cube, grouped in groupby(tiles, key=lambda tile: tile["cube"]):
        group = list(grouped)
        location = Location.parse(cube)
        try:
            results.update(_run_cube(location, load_index(location, stats), group, threads, stats, on_target))
        except StaleObjectError:  # the cube was replaced since its index was cached: once more
            invalidate(location)
            results.update(_run_cube(location, load_index(location, stats, refresh=True), group, threads,
                                     stats, on_target))
    return results


def _run_cube(location: Location, index: CubeIndex, tiles: list[dict], threads: Threads,
              stats: ReadStats | None, on_target: OnTarget | None) -> dict[str, list[dict]]:
    wcs = ffi_wcs(index)
    work: list[list[tuple[Target, str, SkyCoord, Box | None, str]]] = []
    everyone = [t for tile in tiles for t in tile["targets"]]
    coords = iter(SkyCoord([t[2] for t in everyone], [t[3] for t in everyone], unit="deg")) if everyone else iter(())
    for tile in tiles:
        items = []
        for row, name, ra, dec, nx, ny, key, *identity in tile["targets"]:
            target = Target(row, name, ra, dec, (nx, ny), Identity(*identity))
            coord = next(coords)  # one SkyCoord of all, indexed: a sixth of the CPU of one each
            try:
                box, error = cutout_box(wcs, coord, (nx, ny), image_shape=(index.nrows, index.ncols),
                                        cube_name=location.name), ""
            except (OutsideCubeError, CutoutSizeError, CoordinateError) as exc:
                box, error = None, f"{type(exc).__name__}: {exc}"
            items.append((target, key, coord, box, error))
        work.append(items)
    boxes = [box for items in work for _, _, _, box, _ in items if box is not None]
    cache = SpanCache(open_cube(location, index, stats),
                      [(*span_bytes(index, span), span.y) for span in merged_spans(index, boxes)])
    # The lowest box row any later tile needs: rows below it can be forgotten.
    needed_from = [min((b.y0 for _, _, _, b, _ in items if b is not None), default=index.nrows)
                   for items in work]
    for i in range(len(needed_from) - 2, -1, -1):
        needed_from[i] = min(needed_from[i], needed_from[i + 1])
    results: dict[str, list[dict]] = {}
    writes = _Writes(on_target, results)
    buffers = Buffers()

    def read(number: int) -> Chunks:
        return read_chunks(cache, index, [box for _, _, _, box, _ in work[number] if box is not None], threads)

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="cubecut-bulk-read") as reader, \
            ThreadPoolExecutor(max_workers=UPLOAD_THREADS, thread_name_prefix="cubecut-bulk-put") as uploads:
        next_read = reader.submit(read, 0)
        for number, (tile, items) in enumerate(zip(tiles, work)):
            chunks = next_read.result()
            cache.forget_rows_below(needed_from[number + 1] if number + 1 < len(work) else index.nrows)
            if number + 1 < len(work):  # the next tile's pixels arrive while this one is built
                next_read = reader.submit(read, number + 1)
            pending: list[tuple[dict, Future | None]] = []
            shard = TarShard() if tile.get("shard") else None
            for target, key, coord, box, error in items:
                row = {"row": target.row, "id": target.id, "ra": target.ra, "dec": target.dec,
                       "cube": location.url, "status": WRITTEN, "key": key, "member": "", "error": ""}
                if shard is not None:  # key is the member's name
                    row.update(key=tile["shard"], member=key)
                if box is None:
                    row.update(status=OFF_FOOTPRINT if error.startswith("OutsideCubeError") else FAILED,
                               key="", member="", error=error)
                    pending.append((row, None))
                    continue
                def fill(flux: np.ndarray, err: np.ndarray, box: Box = box, chunks: Chunks = chunks) -> None:
                    fill_box(index, box, chunks, flux, err)

                try:
                    data = tpf_bytes(index, box, fill, coord, allocate=buffers.take)
                    set_identity(data, target.identity)
                except InputError as exc:
                    row.update(status=FAILED, key="", member="", error=f"{type(exc).__name__}: {exc}")
                    pending.append((row, None))
                    continue
                if shard is not None:
                    shard.add(key, data)  # a copy: the buffer is free at once
                    buffers.give(data)
                    pending.append((row, None))
                else:
                    written = writes.submit(uploads, len(data), put_output, key, data, "application/fits")
                    written.add_done_callback(functools.partial(_give_back, buffers, data))
                    pending.append((row, written))
            if shard is not None and shard.members:
                written = writes.submit(uploads, shard.size, write_shard, tile["shard"], shard)
                pending = [(row, written if row["member"] else None) for row, _ in pending]
            writes.tile_done(tile["tile"], pending)
        writes.drain()
    return results


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
            rows = []
            for row, write in pending:
                if write is not None:
                    write.result()
                rows.append(row)
                if self._on_target is not None:
                    self._on_target(row)
            self._results[tile] = rows
