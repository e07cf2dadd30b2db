"""Cutouts end to end: index -> boxes -> shared byte-range reads -> TPF files (-> HDULists)."""
from __future__ import annotations

import dataclasses
import io
import os
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.coordinates import SkyCoord
from astropy.io import fits

from ..cube.index import CubeIndex
from ..errors import NotACubeError, OversizedCutoutWarning
from ..reads import in_background
from ..storage import Location, ReadStats, StaleObjectError, carrying_deadlines, put_bytes, writable, writable_folder
from .geometry import Box, CoordInput, cutout_box, ffi_wcs, parse_coordinates
from ..cube.index_cache import cached, invalidate, load_index
from .reader import Span, Threads, fill_off_image, fill_row, open_cube, start_chunks
from .size import SizeInput, parse_size, size_label
from .tpf import TPFDraft, tpf_draft, tpf_filename


@dataclass(frozen=True, eq=False)
class TPFFile:
    """One cutout's target pixel file as the bytes of a FITS file.

    ``name`` is astrocut's file name for it; ``nx``/``ny`` are the cutout's columns/rows
    and ``nt`` its frames.
    """

    name: str
    data: bytearray
    nx: int
    ny: int
    nt: int

    def hdulist(self) -> fits.HDUList:
        """The file as an HDUList, read lazily (headers now, data when first accessed)
        straight from :attr:`data` (``io.BytesIO`` would copy the whole file first: ~8 ms
        for a 30x30x1,000 TPF)."""
        return fits.open(_BufferReader(self.data))


class _BufferReader(io.RawIOBase):
    """A read-only, seekable file over a buffer, without copying it."""

    def __init__(self, data: bytearray) -> None:
        self._view = memoryview(data)
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        count = max(0, min(len(buffer), len(self._view) - self._position))
        buffer[:count] = self._view[self._position:self._position + count]
        self._position += count
        return count

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: len(self._view)}[whence]
        self._position = max(0, base + offset)
        return self._position

    def tell(self) -> int:
        return self._position


def cutout(cube: str | os.PathLike[str] | Location, coordinates: CoordInput, size: SizeInput, *,
           threads: Threads = "auto", output_dir: str | os.PathLike[str] | None = None,
           product: str | None = None, stats: ReadStats | None = None,
           anon: bool | None = None) -> list[str] | list[fits.HDUList]:
    """Target pixel files of ``size`` around each of ``coordinates`` from one cube.

    Args:
        cube: cube URL (``s3://bucket/key``, or any fsspec URL such as ``https://...``) or
            local path. A cube without its ``.index.json`` sidecar (e.g. MAST's) is indexed
            from its own headers and table (a few reads, cached per process).
        coordinates: a SkyCoord (scalar or array) or position string(s): ``"ra dec"`` in degrees,
            or sexagesimal with RA in hours (``"20:56:31 -47:28:48"``); see ``parse_position``.
        size: pixels (int/float), ``(x, y)`` = (columns, rows), or a pixel/angle Quantity.
        threads: concurrent range reads (``"auto"`` or >= 1; 1 also builds TPFs sequentially).
        output_dir: local folder or ``s3://`` prefix; when given, files named as astrocut
            names them are written there and their paths/URLs are returned.
        product: when given (``"SPOC"``/``"TICA"``), the cube must be of that product.
        stats: counts every read request and byte (metadata and pixels).
        anon: S3 requests unsigned (True), signed (False), or unsigned only when no AWS
            credentials are configured (None, the default): public buckets such as MAST's
            ``s3://stpubdata/tess/public/mast/`` need no account.

    Returns:
        One TPF per coordinate, in order: paths if ``output_dir`` is given, else HDULists
        (read lazily from the files' bytes, see :func:`cutout_files`).

    Raises:
        CoordinateError, CutoutSizeError, OutsideCubeError, NotACubeError,
        ObjectNotFoundError, AccessDeniedError, TargetNotWritableError (all before any TPF
        is built; an ``output_dir`` that cannot be written before any read).
    """
    if output_dir is not None:  # a folder that cannot be written is known before anything is read
        folder = writable(Location.parse(output_dir))
        if folder.is_local:
            writable_folder(folder.key)
    files = cutout_files(cube, coordinates, size, threads=threads, product=product, stats=stats, anon=anon)
    if output_dir is None:
        return [file.hdulist() for file in files]
    return _write_all(files, output_dir, threads)


def cutout_files(cube: str | os.PathLike[str] | Location, coordinates: CoordInput, size: SizeInput, *,
                 threads: Threads = "auto", product: str | None = None, stats: ReadStats | None = None,
                 anon: bool | None = None) -> list[TPFFile]:
    """:func:`cutout`, returning each TPF as the bytes of its FITS file (with checksums).

    The fast path: the bytes are built in their final layout (:func:`.tpf.tpf_bytes`),
    so nothing is converted or copied again to store, zip or send them.
    """
    location = cube if isinstance(cube, Location) else Location.parse(cube)
    if anon is not None:
        location = dataclasses.replace(location, anon=anon)

    def parsed() -> tuple[list[SkyCoord], tuple[str, str]]:
        return parse_coordinates(coordinates), size_label(parse_size(size))

    if cached(location) is not None:
        (coords, labels), index = parsed(), load_index(location, stats)
    else:  # a cold call: the input is parsed while the index's GET (a round trip) is on its way
        parsing = in_background(parsed)
        try:
            index = load_index(location, stats)
        except Exception:
            parsing()  # bad input is reported first, as when it is parsed before any read
            raise
        coords, labels = parsing()
    try:
        return _cutouts(location, index, coords, size, labels, threads, product, stats)
    except StaleObjectError:  # the cube was replaced since its index was cached: reload once
        invalidate(location)
        return _cutouts(location, load_index(location, stats, refresh=True), coords, size, labels, threads,
                        product, stats)


def _cutouts(location: Location, index: CubeIndex, coords: list[SkyCoord], size: SizeInput,
             labels: tuple[str, str], threads: Threads, product: str | None,
             stats: ReadStats | None) -> list[TPFFile]:
    if product is not None and product.upper() != index.product:
        raise NotACubeError(f"{location.url} is a {index.product} cube, not {product.upper()}")
    wcs = ffi_wcs(index)
    boxes = [cutout_box(wcs, c, size, image_shape=(index.nrows, index.ncols), cube_name=location.name)
             for c in coords]
    _warn_oversized(location, index, boxes)
    files = _Assembly(index, boxes)
    rows = start_chunks(open_cube(location, index, stats), index, boxes, threads, files.arrived)
    for i, (box, coord) in enumerate(zip(boxes, coords)):  # while the rows cross the network
        files.add(i, tpf_draft(index, box, coord))
    rows()  # every row read and copied into its files

    def build(i: int) -> TPFFile:
        name = tpf_filename(location.name, coords[i].ra.deg, coords[i].dec.deg, *labels)
        return TPFFile(name, files.finish(i), boxes[i].nx, boxes[i].ny, index.nt)

    return _map(build, range(len(coords)), threads)


class _Assembly:
    """The TPFs of one call, laid out while their rows are read: each row's pixels go into
    the drafts that need them as soon as the row arrives (on its reading thread), with the
    sum of their words for the DATASUM, so that what is left when the last row is in is
    the checksums. A row that arrives before all its files' drafts exist is held until
    they do (:meth:`add` copies it); a row is released once every file it serves has it,
    so a call holds its files and the rows not yet copied, never every row it read."""

    def __init__(self, index: CubeIndex, boxes: list[Box]) -> None:
        self._index, self._boxes = index, boxes
        self._parts = [box.overlap(index.ncols, index.nrows) for box in boxes]
        self._drafts: list[TPFDraft | None] = [None] * len(boxes)
        #: Per box: sums of the big-endian words of its FLUX/FLUX_ERR values written so far.
        self._words: list[list[int]] = [[] for _ in boxes]
        self._lock = threading.Lock()
        #: Rows read before some of their boxes' drafts existed: span -> (chunk, those boxes).
        self._held: dict[Span, tuple[np.ndarray, set[int]]] = {}
        #: Per cube row: the boxes with a part on it, and that part.
        self._by_row: dict[int, list[tuple[int, Box]]] = {}
        for i, part in enumerate(self._parts):
            if part is not None:
                for y in range(part.y0, part.y1):
                    self._by_row.setdefault(y, []).append((i, part))

    def _served(self, span: Span) -> list[int]:
        """The boxes whose part of row ``span.y`` lies in ``span``."""
        return [i for i, part in self._by_row.get(span.y, ()) if span.x0 <= part.x0 and part.x1 <= span.x1]

    def add(self, i: int, draft: TPFDraft) -> None:
        """Box ``i``'s draft, ready for its rows; the rows already read are copied into it."""
        box = self._boxes[i]
        part = fill_off_image(self._index, box, *draft.pixels)
        if part != box:  # every pixel is NaN now; the rows overwrite the ones on the image
            off_image = (box.nx * box.ny - (part.nx * part.ny if part is not None else 0)) * self._index.nt
            self._words[i].append(off_image * sum(int(a.view(">u4")[0, 0, 0]) for a in draft.pixels))
        with self._lock:
            self._drafts[i] = draft
            ready = []
            for span, (chunk, waiting) in list(self._held.items()):
                if i in waiting:
                    ready.append((span, chunk))
                    waiting.discard(i)
                    if not waiting:
                        del self._held[span]
        for span, chunk in ready:
            self._copy(i, draft, span, chunk)

    def arrived(self, span: Span, chunk: np.ndarray) -> None:
        """Copy a row just read into the drafts (already made) of the boxes it serves and
        hold it for the others."""
        with self._lock:
            served = self._served(span)
            ready = [(i, draft) for i in served if (draft := self._drafts[i]) is not None]
            waiting = {i for i in served if self._drafts[i] is None}
            if waiting:
                self._held[span] = (chunk, waiting)
        for i, draft in ready:
            self._copy(i, draft, span, chunk)

    def finish(self, i: int) -> bytearray:
        """Box ``i``'s file, once every row is read and copied: its checksums."""
        draft = self._drafts[i]
        assert draft is not None and not self._held  # every draft was added before the reads were awaited
        return draft.finish(pixel_words=sum(self._words[i]))

    def _copy(self, i: int, draft: TPFDraft, span: Span, chunk: np.ndarray) -> None:
        part = self._parts[i]
        assert part is not None  # only boxes on the image have rows
        fill_row(self._index, self._boxes[i], span, chunk, *draft.pixels)
        # The words written: the row's flux (and error) values; a 1-plane cube's errors are 0.
        values = chunk[part.x0 - span.x0:part.x1 - span.x0]
        self._words[i].append(int(values.view(">u4").sum(dtype=np.uint64)))


#: Bytes per pixel and frame of a TPF: RAW_CNTS (int32) and four float32 image columns.
TPF_BYTES_PER_PIXEL = 20


def _warn_oversized(location: Location, index: CubeIndex, boxes: list) -> None:
    """An OversizedCutoutWarning for the first box larger than the cube's image along an axis."""
    for box in boxes:
        if box.nx > index.ncols or box.ny > index.nrows:
            part = box.overlap(index.ncols, index.nrows)
            on_image = part.nx * part.ny if part is not None else 0
            warnings.warn(
                f"the {box.nx}x{box.ny} cutout is larger than {location.name}'s {index.ncols}x{index.nrows} image: "
                f"{1 - on_image / (box.nx * box.ny):.0%} of its pixels are off the image (NaN) and its TPF holds "
                f"about {index.nt * box.nx * box.ny * TPF_BYTES_PER_PIXEL / 1e6:.0f} MB of pixels; a size of at "
                f"most {index.ncols}x{index.nrows} stays on the image", OversizedCutoutWarning, stacklevel=3)
            return


def _write_all(files: list[TPFFile], output_dir: str | os.PathLike[str], threads: Threads) -> list[str]:
    folder = Location.parse(output_dir)

    def write(file: TPFFile) -> str:
        target = (Location("s3", folder.bucket, f"{folder.key.rstrip('/')}/{file.name}".lstrip("/"))
                  if folder.is_s3 else Location.parse(Path(folder.key) / file.name))
        put_bytes(target, file.data, content_type="application/fits")
        return target.url

    return _map(write, files, threads)


def _map(function, items, threads: Threads) -> list:
    """``function`` over ``items``, on CPU-count threads unless ``threads == 1``."""
    items = list(items)
    workers = 1 if threads == 1 else min(len(items), os.cpu_count() or 1)
    if workers <= 1:
        return [function(item) for item in items]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cubecut-tpf") as pool:
        return list(pool.map(carrying_deadlines(function), items))
