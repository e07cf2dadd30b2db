"""Cubes from Python as ``cubecut ingest`` makes them: FFIs named by paths, globs, folders,
``s3://`` URLs or prefixes, or manifests."""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Callable, Sequence

if TYPE_CHECKING:
    from .cutout.reader import Threads
    from .ingest.finalize import IngestResult


def ingest_cube(ffis: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], out: str | os.PathLike[str], *,
                product: str | None = None, sector: int | None = None, workers: int = 2,
                block_bytes: int | None = None, threads: Threads = "auto",
                on_block: Callable[[int, int], None] | None = None) -> IngestResult:
    """Build the cube of ``ffis`` at ``out``, as ``cubecut ingest FFIS --out OUT`` does.

    Args:
        ffis: FFI files, globs (``"ffis/*ffic.fits"``), folders, ``s3://`` objects or
            prefixes, or manifests (``.json``/``.txt``), one or several.
        out: the cube's path or ``s3://bucket/key``; ending in ``/``, a folder in which the
            cube gets TESScut's name (``tess-s0001-1-1-cube.fits``).
        product: ``"spoc"``/``"tica"`` (default: detected); ``sector``: when the FFIs do
            not say; ``workers``: row blocks built at once; ``block_bytes``: the target
            size of one block (default the CLI's 256 MiB); ``threads``: concurrent FFI reads
            per block; ``on_block(done, total)``: progress.

    Returns:
        The IngestResult: the cube's and its index sidecar's locations, ETag, size
        (bytes) and frames.

    Raises:
        NoInputError (nothing matched), FFIError, MixedFFIError, DuplicateTimeError,
        ObjectNotFoundError, AccessDeniedError, TargetNotWritableError.
    """
    from .ingest.inputs import resolve_inputs
    from .ingest.partition import DEFAULT_BLOCK_BYTES
    from .ingest.run import ingest

    items = [ffis] if isinstance(ffis, (str, os.PathLike)) else list(ffis)
    return ingest(resolve_inputs([os.fspath(item) for item in items]), os.fspath(out), product=product,
                  sector=sector, workers=workers, block_bytes=block_bytes or DEFAULT_BLOCK_BYTES, threads=threads,
                  on_block=on_block)
