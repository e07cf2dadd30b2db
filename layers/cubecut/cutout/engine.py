"""Cutouts end to end, and the one cutout pipeline: boxes -> spans -> reads -> drafts -> TPFs.

Single cutouts (:func:`cutout`, :func:`cutout_files`) and bulk tiles
(:mod:`cubecut.bulk.worker`) both cut through the pipeline. :func:`target_boxes` gives
each target's box (or why it has none); :func:`start_tpfs` puts the rows of every box in
flight (their spans merged, :func:`.reader.start_chunks`), lays out each file's draft
(:func:`.tpf.tpf_draft`) while they cross the network, copies each row into the drafts that
need it as soon as it arrives, and gives a function that waits for the last row and
finishes the files (the drafts own their checksums, :class:`.tpf.TPFDraft`). TPFs too big
to hold (:func:`cutout_stream`) go index -> box -> pixels in memory -> a file written as it
is built (:class:`.tpf.StreamedTPF`).
"""
from __future__ import annotations

import dataclasses
import io
import os
import threading
import warnings
from dataclasses import dataclass
from typing import Callable, Sequence, TypeVar

import numpy as np
from astropy.coordinates import SkyCoord
from astropy.io import fits

from ..cube.index import CubeIndex
from ..errors import CoordinateError, CutoutSizeError, InputError, NotACubeError, OutsideCubeError, OversizedCutoutWarning
from ..concurrency import in_background
from ..reads import concurrently
from ..cube.index_cache import cached, invalidate, load_index
from ..storage import (Location, ObjectStreamWriter, RangeSource, ReadStats, StaleObjectError, Where, output_folder,
                       put_bytes)
from .geometry import Box, CoordInput, cutout_box, ffi_wcs, parse_coordinates
from .reader import Span, Threads, open_cube, start_chunks
from .size import SizeInput, parse_size, size_label
from .tpf import StreamedTPF, TPFDraft, read_planes, tpf_draft, tpf_filename


T = TypeVar("T")
#: Bytes per pixel and frame of a TPF: RAW_CNTS (int32) and four float32 image columns.
TPF_BYTES_PER_PIXEL = 20
#: Why a target has no box: its size, its position, or a box that misses the image.
BOX_ERRORS = (OutsideCubeError, CutoutSizeError, CoordinateError)


@dataclass(frozen=True, eq=False)
class TPFFile:
    """One cutout's target pixel file as the bytes of a FITS file.

    ``name`` is astrocut's file name for it; ``nx``/``ny`` are the cutout's columns/rows
    and ``nt`` its frames; :attr:`size` is the file's bytes.
    """

    name: str
    data: bytearray
    nx: int
    ny: int
    nt: int

    @property
    def size(self) -> int:
        return len(self.data)

    def hdulist(self) -> fits.HDUList:
        """The file as an HDUList, read lazily (headers now, data when first accessed)
        straight from :attr:`data` (``io.BytesIO`` would copy the whole file first: ~8 ms
        for a 30x30x1,000 TPF)."""
        return fits.open(_BufferReader(self.data))

    def store(self, url: Where) -> None:
        """Write the file as the object (one PUT) or local file at ``url``."""
        put_bytes(url, self.data, "application/fits")


class TPFStream(StreamedTPF):
    """One cutout's target pixel file, its pixels read and its bytes not yet written:
    :meth:`write_to` writes the file to any binary file object, e.g. an
    :class:`~cubecut.storage.ObjectStreamWriter` or a zip member. ``name``, ``nx``, ``ny``,
    ``nt``, :attr:`size` (the file's bytes) and :meth:`store` as :class:`TPFFile`'s."""

    def __init__(self, name: str, index: CubeIndex, box: Box, planes: np.ndarray, coord: SkyCoord) -> None:
        super().__init__(index, box, planes, coord)
        self.name, self.nx, self.ny, self.nt = name, box.nx, box.ny, index.nt

    def store(self, url: Where) -> None:
        """Write the file as the object or local file at ``url`` as it is built
        (:class:`~cubecut.storage.ObjectStreamWriter`: a multipart upload on S3)."""
        with ObjectStreamWriter(url, "application/fits") as out:
            self.write_to(out)


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
        output_folder(output_dir)
    files = cutout_files(cube, coordinates, size, threads=threads, product=product, stats=stats, anon=anon)
    if output_dir is None:
        return [file.hdulist() for file in files]
    folder = Location.parse(output_dir)

    def write(file: TPFFile) -> str:
        target = folder.child(file.name)
        file.store(target)
        return target.url

    return concurrently(write, files, threads)


def cutout_files(cube: str | os.PathLike[str] | Location, coordinates: CoordInput, size: SizeInput, *,
                 threads: Threads = "auto", product: str | None = None, stats: ReadStats | None = None,
                 anon: bool | None = None) -> list[TPFFile]:
    """:func:`cutout`, returning each TPF as the bytes of its FITS file (with checksums).

    The fast path: the bytes are built in their final layout (:func:`.tpf.tpf_bytes`),
    so nothing is converted or copied again to store, zip or send them.
    """
    def cut(source: RangeSource, index: CubeIndex, coords: list[SkyCoord], boxes: list[Box],
            names: list[str]) -> list[TPFFile]:
        tpfs = []
        for name, box, data in zip(names, boxes, start_tpfs(source, index, boxes, coords, threads)()):
            if isinstance(data, Exception):
                raise data
            tpfs.append(TPFFile(name, data, box.nx, box.ny, index.nt))
        return tpfs

    return _on_cube(cube, coordinates, size, cut, product=product, stats=stats, anon=anon)


def cutout_stream(cube: str | os.PathLike[str] | Location, coordinate: CoordInput, size: SizeInput, *,
                  product: str | None = None, stats: ReadStats | None = None,
                  anon: bool | None = None) -> TPFStream:
    """One target's TPF (arguments and errors as :func:`cutout`'s), for files too big to
    hold whole: the box's pixels are read into memory (8 bytes per pixel-frame,
    :func:`.tpf.read_planes`) and the file is written, byte for byte the one
    :func:`cutout_files` gives, by :meth:`TPFStream.write_to` (a 100x100 cutout of an
    11,700-frame cube: a 0.94 GB box for a 2.3 GB file). ``coordinate`` must be one position."""
    def cut(source: RangeSource, index: CubeIndex, coords: list[SkyCoord], boxes: list[Box],
            names: list[str]) -> TPFStream:
        if len(coords) != 1:
            raise CoordinateError(f"a streamed cutout is of one position, got {len(coords)}")
        (coord,), (box,), (name,) = coords, boxes, names
        return TPFStream(name, index, box, read_planes(source, index, box), coord)

    return _on_cube(cube, coordinate, size, cut, product=product, stats=stats, anon=anon)


def _on_cube(cube: str | os.PathLike[str] | Location, coordinates: CoordInput, size: SizeInput,
             cut: Callable[[RangeSource, CubeIndex, list[SkyCoord], list[Box], list[str]], T], *,
             product: str | None, stats: ReadStats | None, anon: bool | None) -> T:
    """``cut(the cube opened for pixel reads, index, coords, boxes, the TPFs' file names)``,
    once the cube's index is loaded (and the input parsed, while the index's GET is on its
    way when it is not cached) and every target's box found; run once more on a reloaded
    index if the cube was replaced since its index was cached."""
    location = Location.of(cube)
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
    names = [tpf_filename(location.name, coord.ra.deg, coord.dec.deg, *labels) for coord in coords]

    def cut_on(index: CubeIndex) -> T:
        boxes = _boxes(location, index, coords, size, product)
        return cut(open_cube(location, index, stats), index, coords, boxes, names)

    try:
        return cut_on(index)
    except StaleObjectError:  # the cube was replaced since its index was cached: reload once
        invalidate(location)
        return cut_on(load_index(location, stats, refresh=True))


def _boxes(location: Location, index: CubeIndex, coords: list[SkyCoord], size: SizeInput,
           product: str | None) -> list[Box]:
    """Each target's box on the cube; the first target's error if one has none. An
    OversizedCutoutWarning for the first box larger than the cube's image along an axis."""
    if product is not None and product.upper() != index.product:
        raise NotACubeError(f"{location.url} is a {index.product} cube, not {product.upper()}")
    boxes = []
    for box in target_boxes(index, coords, [size] * len(coords), location.name):
        if isinstance(box, Exception):
            raise box
        boxes.append(box)
    for box in boxes:
        if box.nx > index.ncols or box.ny > index.nrows:
            part = box.overlap(index.ncols, index.nrows)
            on_image = part.nx * part.ny if part is not None else 0
            warnings.warn(
                f"the {box.nx}x{box.ny} cutout is larger than {location.name}'s {index.ncols}x{index.nrows} image: "
                f"{1 - on_image / (box.nx * box.ny):.0%} of its pixels are off the image (NaN) and its TPF holds "
                f"about {index.nt * box.nx * box.ny * TPF_BYTES_PER_PIXEL / 1e6:.0f} MB of pixels; a size of at "
                f"most {index.ncols}x{index.nrows} stays on the image", OversizedCutoutWarning, stacklevel=4)
            break
    return boxes


def target_boxes(index: CubeIndex, coords: Sequence[SkyCoord], sizes: Sequence[SizeInput],
                 cube_name: str) -> list[Box | InputError]:
    """Each target's cutout box on the cube (:func:`.geometry.cutout_box`, 0-based FFI
    pixels), or the error that says why it has none (one of :data:`BOX_ERRORS`)."""
    wcs = ffi_wcs(index)
    boxes: list[Box | InputError] = []
    for coord, size in zip(coords, sizes):
        try:
            boxes.append(cutout_box(wcs, coord, size, image_shape=(index.nrows, index.ncols), cube_name=cube_name))
        except BOX_ERRORS as exc:
            boxes.append(exc)
    return boxes


def start_tpfs(source: RangeSource, index: CubeIndex, boxes: Sequence[Box], coords: Sequence[SkyCoord],
               threads: Threads, *, allocate: Callable[[int], bytearray] = bytearray
               ) -> Callable[[], list[bytearray | InputError]]:
    """The TPF files of ``boxes`` (targets ``coords``), started: when this returns, the
    rows are in flight and the drafts laid out; the returned function waits for the rows
    and gives each file (or the InputError that stopped its draft, e.g. a primary header
    no TPF can carry), its checksums written on up to CPU-count threads (one with
    ``threads=1``). A read error is raised by the returned function.

    ``allocate(size)`` gives each file's buffer (``size`` zero bytes, :func:`.tpf.tpf_bytes`).
    """
    assembly = _Assembly(index, boxes)
    rows = start_chunks(source, index, boxes, threads, assembly.arrived)
    for i, (box, coord) in enumerate(zip(boxes, coords)):  # while the rows cross the network
        try:
            assembly.add(i, tpf_draft(index, box, coord, allocate=allocate))
        except InputError as exc:
            assembly.drop(i, exc)

    def finished() -> list[bytearray | InputError]:
        rows()  # every row read and copied into its drafts
        return concurrently(assembly.finish, range(len(boxes)), 1 if threads == 1 else os.cpu_count() or 1)

    return finished


class _Assembly:
    """The drafts of one call, filled while their rows are read: each row goes into the
    drafts that need it as soon as it arrives (on its reading thread). A row that arrives
    before all its drafts exist is held until they do (:meth:`add` copies it); a row is
    released once every draft it serves has it, so a call holds its files and the rows
    not yet copied, never every row it read."""

    def __init__(self, index: CubeIndex, boxes: Sequence[Box]) -> None:
        self._drafts: list[TPFDraft | InputError | None] = [None] * len(boxes)
        self._lock = threading.Lock()
        #: Rows read before some of their boxes' drafts existed: span -> (chunk, those boxes).
        self._held: dict[Span, tuple[np.ndarray, set[int]]] = {}
        #: Per cube row: the boxes with a part on it, and that part.
        self._by_row: dict[int, list[tuple[int, Box]]] = {}
        for i, box in enumerate(boxes):
            part = box.overlap(index.ncols, index.nrows)
            if part is not None:
                for y in range(part.y0, part.y1):
                    self._by_row.setdefault(y, []).append((i, part))

    def add(self, i: int, draft: TPFDraft) -> None:
        """Box ``i``'s draft, ready for its rows; the rows already read are copied into it."""
        draft.fill_off_image()
        for span, chunk in self._settle(i, draft):
            draft.fill_row(span, chunk)

    def drop(self, i: int, error: InputError) -> None:
        """Box ``i`` gets no file (``error`` says why): its rows are not held for it."""
        self._settle(i, error)

    def _settle(self, i: int, draft: TPFDraft | InputError) -> list[tuple[Span, np.ndarray]]:
        """Record box ``i``'s draft; the held rows it was waiting for (released once no
        other draft waits for them)."""
        ready = []
        with self._lock:
            self._drafts[i] = draft
            for span, (chunk, waiting) in list(self._held.items()):
                if i in waiting:
                    ready.append((span, chunk))
                    waiting.discard(i)
                    if not waiting:
                        del self._held[span]
        return ready

    def arrived(self, span: Span, chunk: np.ndarray) -> None:
        """Copy a row just read into the drafts (already made) of the boxes it serves and
        hold it for the others."""
        with self._lock:
            served = [i for i, part in self._by_row.get(span.y, ()) if span.x0 <= part.x0 and part.x1 <= span.x1]
            ready = [draft for i in served if isinstance(draft := self._drafts[i], TPFDraft)]
            waiting = {i for i in served if self._drafts[i] is None}
            if waiting:
                self._held[span] = (chunk, waiting)
        for draft in ready:
            draft.fill_row(span, chunk)

    def finish(self, i: int) -> bytearray | InputError:
        """Box ``i``'s file (or why it has none), once every row is read and copied."""
        draft = self._drafts[i]
        assert draft is not None and not self._held  # every draft was settled before the reads were awaited
        return draft if isinstance(draft, InputError) else draft.finish()
