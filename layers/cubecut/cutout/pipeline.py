"""The one cutout pipeline: boxes -> spans -> reads -> drafts -> TPFs.

Single cutouts (:mod:`.engine`) and bulk tiles (:mod:`cubecut.bulk.worker`) both cut
through it. :func:`target_boxes` gives each target's box (or why it has none);
:func:`start_tpfs` puts the rows of every box in flight (their spans merged,
:func:`.reader.start_chunks`), lays out each file's draft (:func:`.tpf.tpf_draft`) while
they cross the network, copies each row into the drafts that need it as soon as it
arrives, and gives a function that waits for the last row and finishes the files (the
drafts own their checksums, :class:`.tpf.TPFDraft`).
"""
from __future__ import annotations

import os
import threading
from typing import Callable, Sequence

import numpy as np
from astropy.coordinates import SkyCoord

from ..cube.index import CubeIndex
from ..errors import CoordinateError, CutoutSizeError, InputError, OutsideCubeError
from ..reads import concurrently
from ..storage import RangeSource
from .geometry import Box, SizeInput, cutout_box, ffi_wcs
from .reader import Span, Threads, start_chunks
from .tpf import TPFDraft, tpf_draft

#: Bytes per pixel and frame of a TPF: RAW_CNTS (int32) and four float32 image columns.
TPF_BYTES_PER_PIXEL = 20
#: Why a target has no box: its size, its position, or a box that misses the image.
BOX_ERRORS = (OutsideCubeError, CutoutSizeError, CoordinateError)


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
