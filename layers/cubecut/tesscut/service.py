"""The cutout service behind the TESScut routes: find cubes, cut them concurrently, cache, deliver.

One request cuts every matching cube at once (one thread per cube, each reading its rows
by concurrent byte ranges), so a request spanning N sectors takes about as long as its
slowest cube rather than the sum. Every cube's interval and reads are recorded in
:class:`CubeWork` so callers can show that (the API sends them as ``Server-Timing``).

Delivery: a zip of at most ``inline_limit`` bytes is returned in the response body; a
larger one is answered with the URL of the stored object (the TESScut routes redirect to
a presigned URL with 303, which astroquery and requests follow), keeping responses under
Lambda's 6 MB and API Gateway's 10 MB payload limits whatever the cutout size. Every
result is stored under ``results_prefix`` keyed by the normalised request and the ETags
of the cubes it read, so repeating a request reads no cube bytes and a re-ingested cube
(new ETag) never serves a stale result. The zip is streamed to its object as the TPFs are
cut (:func:`store_zip`), and a TPF above :data:`STREAM_ABOVE_BYTES` as it is built
(:func:`cut_tpf`), so a big result is never whole in memory. Moving-target zips
(:mod:`.moving`) go through the same :meth:`CutoutService.deliver`, and quick-look PNGs
(:mod:`.quicklook`) are drawn from these zips and cached beside them.

Protection: one request may cover at most ``max_pixel_frames`` pixel-frames, and is
charged, before any read, the memory its cutouts will hold (:func:`work_bytes`): above
``max_work_bytes`` it is refused (:class:`RequestTooLargeError`, 400). At most
``max_concurrent`` computations run at once per process, holding at most
``max_work_bytes`` together (others get :class:`ServiceBusyError` at once, answered 503 +
Retry-After, instead of queueing into a time-out); see docs/api.md for how the caps were
chosen.
"""
from __future__ import annotations

import contextlib
import io
import threading
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Iterable, Iterator


from ..errors import CubecutError, CutoutSizeError, ObjectNotFoundError, OutsideCubeError, StorageError
from ..storage import ObjectStreamWriter, ReadStats, carrying_deadlines, get_bytes, head
from ..cube.catalog import CubeCatalog, CubeEntry
from .protocol import TESS_PIXEL_DEG, CutoutRequest, SectorRequest, member_name, sector_results

if TYPE_CHECKING:  # astropy loads with the first request
    import astropy.units as u
    from astropy.coordinates import SkyCoord
    from astropy.io import fits

    from ..cutout.engine import TPFFile, TPFStream
    from .moving import MovingRequest

#: Zips up to this size are returned inline: base64 adds a third, and a synchronous Lambda
#: response is at most 6 MB (4 MiB -> 5.6 MB encoded, with room for headers).
INLINE_LIMIT = 4 * 1024 * 1024
#: Pixels x frames one request may cut, summed over its cubes: a 100x100 cutout of a
#: 200-second sector (11,700 frames) is 117 M (docs/api.md, "Budgets per cadence").
MAX_PIXEL_FRAMES = 120_000_000
#: Bytes of memory the cutouts of one process may hold at once, each charged its estimate
#: (:func:`work_bytes`) before any read: a request above it alone is refused (400), one that
#: does not fit beside those running waits for none (503). 1.2 GB of the API function's
#: 3008 MB: a streamed 100x100 x 11,700-frame cutout is ~1.0 GB (benchmarks/results/memory.*).
MAX_WORK_BYTES = 1_200_000_000
#: Cutout computations at once per process before answering 503.
MAX_CONCURRENT = 4
#: Peak bytes of memory per pixel-frame of a cutout built whole in memory (range reads, TPF
#: bytes, zip), with room: benchmarks/results/memory.json's in-memory 100x100 x 1,000
#: cutout peaked well under it.
IN_MEMORY_BYTES_PER_PIXEL_FRAME = 64
#: ... of a streamed TPF (:class:`cubecut.cutout.tpf.StreamedTPF`): its box, flux and error float32.
STREAMED_BYTES_PER_PIXEL_FRAME = 8
#: Bytes a streamed TPF holds besides its box: reads in flight (64 MiB), a chunk of rows
#: (1 MiB) and the object stream's parts (up to 5 x 8 MiB, storage.PARTS_IN_FLIGHT + 1), with room to spare.
STREAM_OVERHEAD_BYTES = 128 * 2**20
#: A TPF above this size (bytes, ~20 per pixel-frame) is streamed to its object as it is
#: built, and stored in a zip uncompressed: deflate (level 1, about 100 MB/s on one core in
#: benchmarks/results/limit.json's route runs) would add ~23 s to a 2.3 GB TPF whose upload
#: alone takes most of the API's 29 s (benchmarks/results/memory.json).
STREAM_ABOVE_BYTES = 64 * 2**20
#: Bytes per pixel-frame of a TPF file: RAW_CNTS (int32) and four float32 image columns
#: (cubecut.cutout.engine's TPF_BYTES_PER_PIXEL, not imported: it loads astropy).
TPF_BYTES_PER_PIXEL_FRAME = 20
#: Seconds a client is told to wait when the service is busy.
RETRY_AFTER_S = 2
#: Cubes cut at once within one request.
_MAX_CUBE_THREADS = 8

#: Deflate level of result zips: TPFs are float noise, level 1 keeps 0.29-0.31 of the size
#: and level 6 costs about twice the CPU for no smaller a file (benchmarks/results/limit.json,
#: route).
ZIP_LEVEL = 1
#: Bytes of a TPF handed to the compressor at once: bounds what one write to the stream holds.
_DEFLATE_CHUNK = 2**20

#: One file of a result zip: its name, and its bytes or a streamed TPF (it writes itself).
Member = tuple[str, "bytes | bytearray | TPFStream"]
#: What a result is made of: a function that yields its members one by one (each is written
#: to the zip and released before the next is asked for) and appends the work it did to the
#: list it is given.
Compute = Callable[[list["CubeWork"]], Iterable[Member]]


class ServiceBusyError(CubecutError):
    """Too many cutout computations at once in this process (answer 503 + Retry-After)."""


class RequestTooLargeError(CutoutSizeError):
    """The request would cut more pixel-frames than one synchronous request may."""


class ConcurrencyLimit:
    """At most ``capacity`` holders at once, holding at most ``max_bytes`` of memory
    together (None: no bound); one more is refused, never queued."""

    def __init__(self, capacity: int, max_bytes: int | None = None) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity, self.max_bytes = capacity, max_bytes
        self._lock = threading.Lock()
        self._holders = 0
        self._held_bytes = 0

    @contextmanager
    def slot(self, nbytes: int = 0) -> Iterator[None]:
        """Hold one slot and ``nbytes`` of the memory for the ``with`` block;
        ServiceBusyError if no slot is free or those bytes are not."""
        with self._lock:
            if self._holders >= self.capacity:
                raise ServiceBusyError(f"{self.capacity} cutouts are in progress; retry in {RETRY_AFTER_S} s")
            if self.max_bytes is not None and self._holders and self._held_bytes + nbytes > self.max_bytes:
                raise ServiceBusyError(f"the cutouts in progress hold {self._held_bytes / 1e9:.2g} GB of this "
                                       f"process's {self.max_bytes / 1e9:.2g} GB; retry in {RETRY_AFTER_S} s")
            self._holders += 1
            self._held_bytes += nbytes
        try:
            yield
        finally:
            with self._lock:
                self._holders -= 1
                self._held_bytes -= nbytes


def streamed(pixel_frames: float) -> bool:
    """Whether the TPF of a cutout of ``pixel_frames`` is streamed (above :data:`STREAM_ABOVE_BYTES`)."""
    return pixel_frames * TPF_BYTES_PER_PIXEL_FRAME > STREAM_ABOVE_BYTES


def cut_tpf(entry: CubeEntry, coord: SkyCoord, size: tuple[int | u.Quantity, int | u.Quantity],
            stats: ReadStats) -> TPFFile | TPFStream:
    """The TPF of ``size`` (columns, rows) at ``coord`` on ``entry``'s cube: cut as a
    stream (:func:`cubecut.cutout.engine.cutout_stream`) if :func:`streamed`, else whole in memory."""
    from ..cutout.engine import cutout_files, cutout_stream  # astropy (WCS) loads with the first cutout

    if streamed(pixels(size) * entry.index.nt):
        return cutout_stream(entry.url, coord, size, stats=stats)
    (tpf,) = cutout_files(entry.url, coord, size, stats=stats)
    return tpf


def work_bytes(pixel_frames: Iterable[float], *, in_memory: bool = False) -> int:
    """The memory (bytes) cutting TPFs of ``pixel_frames`` each holds at its peak: a
    streamed one its box and :data:`STREAM_OVERHEAD_BYTES`, one built whole in memory
    (``in_memory``, or below the streaming threshold) :data:`IN_MEMORY_BYTES_PER_PIXEL_FRAME`."""
    return int(sum(count * IN_MEMORY_BYTES_PER_PIXEL_FRAME if in_memory or not streamed(count)
                   else count * STREAMED_BYTES_PER_PIXEL_FRAME + STREAM_OVERHEAD_BYTES for count in pixel_frames))


@dataclass(frozen=True)
class CubeWork:
    """One cube's part of a request: when it ran (seconds since the request started) and
    the read requests/bytes it made on the cube and its sidecar."""

    sector_name: str
    start: float
    stop: float
    reads: int
    bytes: int


@dataclass
class Delivery:
    """A finished result: the URL of the stored zip and, when it is small enough to be
    sent inline, its bytes (``body``); or no data (``message``)."""

    members: list[str]
    body: bytes | None = None
    url: str | None = None
    size: int = 0
    cached: bool = False
    message: str | None = None
    work: list[CubeWork] = field(default_factory=list)
    elapsed: float = 0.0

    @property
    def reads(self) -> int:
        """Cube and sidecar read requests this request made (0 when served from the cache)."""
        return sum(w.reads for w in self.work)

    @property
    def bytes_read(self) -> int:
        return sum(w.bytes for w in self.work)


def hdul_bytes(hdul: fits.HDUList) -> bytes:
    """The FITS file of ``hdul``, every HDU with its CHECKSUM and DATASUM cards (as the
    CLI's files and astrocut's have them)."""
    buf = io.BytesIO()
    hdul.writeto(buf, checksum=True)
    return buf.getvalue()


def _add_member(archive: zipfile.ZipFile, name: str, data: bytes | bytearray | TPFStream) -> None:
    """Add ``data`` to ``archive`` as ``name``: bytes deflated in pieces of
    ``_DEFLATE_CHUNK`` bytes, a streamed file stored (uncompressed) as it writes itself."""
    info = zipfile.ZipInfo(name)  # dated 1980-01-01, as ZipFile.open(name, "w") dates it
    info.external_attr = 0o600 << 16  # -rw-------, as ZipFile.writestr marks files
    if isinstance(data, (bytes, bytearray)):
        view = memoryview(data)
        info.compress_type, info.compress_level = zipfile.ZIP_DEFLATED, ZIP_LEVEL
        with archive.open(info, "w", force_zip64=view.nbytes * 1.05 > zipfile.ZIP64_LIMIT) as dest:
            for start in range(0, view.nbytes, _DEFLATE_CHUNK):
                dest.write(view[start:start + _DEFLATE_CHUNK])
    else:
        info.compress_type = zipfile.ZIP_STORED
        with archive.open(info, "w", force_zip64=data.size > zipfile.ZIP64_LIMIT) as dest:
            data.write_to(dest)


def store_zip(url: str, members: Iterable[Member]) -> Delivery:
    """Zip ``members`` (deflate level :data:`ZIP_LEVEL`) straight into the object at ``url``;
    the Delivery of that zip, its ``body`` the zip's bytes when it was small enough to be
    written with one PUT (None otherwise).

    Each member is compressed into an :class:`~cubecut.storage.ObjectStreamWriter` as it
    arrives and its bytes are released before the next is asked for, so memory holds one
    TPF and about two 8 MiB parts, not every TPF and the whole zip; a streamed TPF
    (:class:`~cubecut.cutout.engine.TPFStream`) is stored, uncompressed, as it writes
    itself. The object is created with the first member (none: nothing is written) and
    becomes visible only when the zip is complete; an exception from ``members`` or from
    storage aborts it (StorageError for the latter) and leaves the key as it was.
    """
    names: list[str] = []
    stream: ObjectStreamWriter | None = None
    with contextlib.ExitStack() as stack:
        for name, data in members:
            if stream is None:
                stream = stack.enter_context(ObjectStreamWriter(url, "application/zip"))
                archive = stack.enter_context(zipfile.ZipFile(stream, "w", compression=zipfile.ZIP_DEFLATED,
                                                              compresslevel=ZIP_LEVEL))
            _add_member(archive, name, data)
            names.append(name)
            del data  # released before the next member is cut
    if stream is None:
        return Delivery([])
    return Delivery(names, body=stream.body, url=url, size=stream.size)


def pixels(size: tuple[int | u.Quantity, int | u.Quantity]) -> float:
    """Pixels of a cutout of ``size`` (angles at TESS's nominal scale, rounded up)."""
    pixels = 1.0
    for extent in size:
        pixels *= extent if isinstance(extent, int) else extent.to_value("deg") / TESS_PIXEL_DEG + 1
    return pixels


def no_data_message(request: CutoutRequest | MovingRequest) -> str:
    """TESScut's no-data ``msg`` for a position, or a moving target's path, (and sectors)
    no ingested cube covers."""
    if isinstance(request, CutoutRequest):
        where = f"ra={request.coord.ra.deg:.6f}, dec={request.coord.dec.deg:.6f}"
    else:
        path = request.ephemeris
        where = f"the path of {request.target or 'the target'} (TJD {path.start:.4f} to {path.stop:.4f})"
    return f"No data found for {where}" + (f" in sector(s) {sorted(request.sectors)}" if request.sectors else "")


class CutoutService:
    """Cutouts from the cubes of ``catalog``; results stored under ``results_prefix``."""

    def __init__(self, catalog: CubeCatalog, results_prefix: str, *, inline_limit: int = INLINE_LIMIT,
                 max_concurrent: int = MAX_CONCURRENT, max_pixel_frames: int = MAX_PIXEL_FRAMES,
                 max_work_bytes: int = MAX_WORK_BYTES) -> None:
        self.catalog = catalog
        self.results_prefix = results_prefix if results_prefix.endswith("/") else results_prefix + "/"
        self.inline_limit = inline_limit
        self.max_pixel_frames = max_pixel_frames
        self.max_work_bytes = max_work_bytes
        self.limit = ConcurrencyLimit(max_concurrent, max_work_bytes)

    # -- TESScut ------------------------------------------------------------------------
    def sectors(self, request: SectorRequest) -> dict:
        """The ``sector`` endpoint's JSON: ingested cubes covering the cone."""
        entries = self.catalog.covering(request.coord, request.radius_deg, product=request.product)
        return sector_results(e.index for e in entries)

    def matching(self, request: CutoutRequest) -> list[CubeEntry]:
        """The cubes a cutout request reads: those whose image holds its position."""
        return self.catalog.covering(request.coord, 0.0, product=request.product, sectors=request.sectors)

    def astrocut(self, request: CutoutRequest) -> Delivery:
        """The ``astrocut`` endpoint: a zip with one TPF per covering cube."""
        started = time.monotonic()
        entries = self.matching(request)
        if not entries:
            return Delivery([], message=no_data_message(request))
        return self.static_zip(request, entries, started)

    def static_zip(self, request: CutoutRequest, entries: list[CubeEntry], started: float | None = None, *,
                   in_memory: bool = False) -> Delivery:
        """The zip of ``request``'s cutouts of ``entries``: from the cache, or cut (all cubes
        at once) and stored. Raises RequestTooLargeError and ServiceBusyError. ``in_memory``:
        the caller then holds the TPFs whole (a quick-look), so the request is charged
        (:func:`work_bytes`) as built in memory."""
        started = time.monotonic() if started is None else started
        counts = [pixels(request.size) * e.index.nt for e in entries]
        nbytes = self.check_budget(counts, in_memory=in_memory)

        def compute(work: list[CubeWork]) -> Iterator[Member]:
            with ThreadPoolExecutor(max_workers=min(_MAX_CUBE_THREADS, len(entries)),
                                    thread_name_prefix="cubecut-cube") as pool:
                for member, cube_work in pool.map(carrying_deadlines(lambda e: self._cut_one(e, request, started)),
                                              entries):
                    work.append(cube_work)
                    if member is not None:
                        yield member
                    del member  # zipped: release the TPF while the next cube's is awaited

        return self.deliver(self.result_url(request, entries, "zip"), compute, started=started, nbytes=nbytes,
                            empty_message="The position falls off the image of every matching cube")

    def _cut_one(self, entry: CubeEntry, request: CutoutRequest, started: float) -> tuple[Member | None, CubeWork]:
        from ..cutout.engine import TPFFile

        stats = ReadStats()
        t0 = time.monotonic() - started
        try:
            tpf = cut_tpf(entry, request.coord, request.size, stats)
        except OutsideCubeError:
            member = None
        else:
            name = member_name(entry.sector_name, request.coord.ra.deg, request.coord.dec.deg, tpf.nx, tpf.ny)
            member = (name, tpf.data if isinstance(tpf, TPFFile) else tpf)  # zipped deflated, or stored as it streams
        work = CubeWork(entry.sector_name, t0, time.monotonic() - started, stats.requests, stats.bytes)
        return member, work

    def check_budget(self, pixel_frames: list[float], *, in_memory: bool = False) -> int:
        """The memory (bytes, :func:`work_bytes`) of a request cutting TPFs of
        ``pixel_frames`` (one count per TPF; ``in_memory``: each held whole), to be held
        with :meth:`ConcurrencyLimit.slot`. RequestTooLargeError if the request would cut
        more than ``max_pixel_frames`` in all, or hold more than ``max_work_bytes``."""
        total = sum(pixel_frames)
        if not total <= self.max_pixel_frames:  # (an infinite size too)
            raise RequestTooLargeError(
                f"this request covers {total:.3g} pixel-frames ({len(pixel_frames)} cube(s)); one request may "
                f"cover at most {self.max_pixel_frames:,}: ask for fewer sectors or a smaller size")
        nbytes = work_bytes(pixel_frames, in_memory=in_memory)
        if nbytes > self.max_work_bytes:
            built = "built in memory" if in_memory or not any(map(streamed, pixel_frames)) else "cut"
            raise RequestTooLargeError(
                f"this request covers {total:.3g} pixel-frames ({len(pixel_frames)} cube(s)), {nbytes / 1e9:.3g} GB "
                f"of memory {built}; one request may hold at most {self.max_work_bytes:,} bytes: ask for fewer "
                f"sectors or a smaller size")
        return nbytes

    # -- delivery -------------------------------------------------------------------------
    def result_url(self, request: CutoutRequest | MovingRequest, entries: Iterable[CubeEntry], suffix: str) -> str:
        """Where the result (``zip``, ``png`` ...) of ``request`` over the cubes ``entries`` is
        stored: keyed by the request and, per cube, what changes when it is re-ingested (its
        ETag and its sidecar's)."""
        key = request.cache_key([f"{e.url}|{e.index.cube_etag}|{e.index_etag}" for e in entries])
        return f"{self.results_prefix}tesscut/{key}.{suffix}"

    def deliver(self, result_url: str, compute: Compute, *, started: float, nbytes: int,
                empty_message: str) -> Delivery:
        """The zip at ``result_url`` if it is stored; else, in one of the concurrency slots
        holding ``nbytes`` of the process's memory (:meth:`check_budget`; ServiceBusyError if
        they are not free), ``compute`` its members and stream them into the
        zip at ``result_url`` (:func:`store_zip`) as they come. No members: a Delivery with
        ``empty_message`` (nothing stored). A result of at most ``inline_limit`` bytes is
        also returned in the Delivery's body."""
        delivery = self._cached(result_url)
        if delivery is None:
            work: list[CubeWork] = []
            with self.limit.slot(nbytes):
                delivery = store_zip(result_url, compute(work))
            delivery.work = work
            if not delivery.members:
                delivery.message = empty_message
            elif delivery.size > self.inline_limit:
                delivery.body = None
        delivery.elapsed = time.monotonic() - started
        return delivery

    @staticmethod
    def zip_bytes(delivery: Delivery) -> bytes:
        """A delivered zip's bytes: the inline body, or the stored object."""
        return delivery.body if delivery.body is not None else get_bytes(delivery.url)[0]

    def _cached(self, url: str) -> Delivery | None:
        """The stored result at ``url`` (one HEAD, and a GET if it is inline), or None if there is none."""
        try:
            size = head(url).size
        except StorageError:  # any failure means "compute it again"
            return None
        if size > self.inline_limit:
            return Delivery([], url=url, size=size, cached=True)
        try:
            body, _ = get_bytes(url)
        except ObjectNotFoundError:
            return None
        with zipfile.ZipFile(io.BytesIO(body)) as archive:
            members = archive.namelist()
        return Delivery(members, body=body, url=url, size=size, cached=True)
