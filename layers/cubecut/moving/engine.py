"""Moving-target cutouts end to end: path → frames per cube → moving reads → one TPF per sector.

TESScut's ``moving_target/astrocut`` route, without its two-step detour (a large static
cutout around the whole path, then astrocut's ``center_on_path``): each frame reads only
the pixels of its own box (:mod:`.reader`), and the cubes a path crosses are read
concurrently.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Sequence

from astropy.io import fits

from ..cutout.geometry import ffi_wcs
from ..cube.index_cache import invalidate
from ..cutout.reader import open_cube
from ..cutout.size import SizeInput
from ..errors import OutsideCubeError
from ..fficut.cut import write_fits
from ..reads import Threads
from ..storage import Location, ReadStats, StaleObjectError, carrying_deadlines
from .ephemeris import Ephemeris, load_ephemeris
from .path import PathOnCube, box_corners, paths_on_cubes, pixel_size
from .reader import MERGE_GAP_BYTES, read_moving_box
from .tpf import MovingFrames, build_moving_tpf, moving_tpf_filename


#: Cubes read at once (each with its own concurrent range reads).
MAX_CUBES_AT_ONCE = 4


class PathOffCubesError(OutsideCubeError):
    """The path crosses none of the given cubes in the time the ephemeris covers."""


def moving_cutout(cubes: Sequence[str], ephemeris: Ephemeris | Any, size: SizeInput, *, target: str | None = None,
                  threads: Threads = "auto", output_dir: str | os.PathLike[str] | None = None,
                  merge_gap: int = MERGE_GAP_BYTES, stats: ReadStats | None = None) -> list[fits.HDUList] | list[str]:
    """Cutouts that follow a moving target: one TPF per sector whose cubes it crosses.

    Args:
        cubes: cube URLs (``s3://`` or local paths) to look in, e.g. a sector's four
            cameras x four CCDs; only those the path crosses are read.
        ephemeris: an :class:`~.ephemeris.Ephemeris` or anything
            :func:`~.ephemeris.load_ephemeris` reads (table, columns, rows, file path).
        size: box size, ``n`` or ``(nx, ny)`` in pixels (or an angle Quantity, converted
            with the first crossed cube's pixel scale), rounded to whole pixels.
        target: the target's name (OBJECT keyword, file name); default the ephemeris's.
        threads: concurrent range reads per cube (``"auto"`` or >= 1).
        output_dir: local folder or ``s3://`` prefix to write the TPFs to (their
            paths/URLs are returned); otherwise the HDULists are returned.
        merge_gap: unneeded bytes read to save a request (see :mod:`.reader`).
        stats: counts every read request and byte (indexes and pixels).

    Returns:
        TPFs in sector order (per sector, frames from all its cubes in time order).

    Raises:
        PathOffCubesError, EphemerisError, CutoutSizeError, NotACubeError, ObjectNotFoundError.
    """
    path = load_ephemeris(ephemeris, name=target)
    target = target or path.name
    try:
        tpfs = _cutouts(cubes, path, size, target, threads, merge_gap, stats)
    except StaleObjectError:  # a cube was replaced since its index was cached: reload once
        for cube in cubes:
            invalidate(cube)
        tpfs = _cutouts(cubes, path, size, target, threads, merge_gap, stats)
    if output_dir is None:
        return [tpf for tpf, _ in tpfs]
    return [write_fits(tpf, output_dir, name) for tpf, name in tpfs]


def _cutouts(cubes: Sequence[str], path: Ephemeris, size: SizeInput, target: str | None, threads: Threads,
             merge_gap: int, stats: ReadStats | None) -> list[tuple[fits.HDUList, str]]:
    crossed = [p for p in paths_on_cubes(path, cubes, stats=stats) if p.nframes]
    if not crossed:
        raise PathOffCubesError(f"the path of {target or 'the target'} (TJD {path.start:.4f} to {path.stop:.4f}) "
                                f"crosses none of the {len(cubes)} cube(s)")
    nx, ny = pixel_size(size, ffi_wcs(crossed[0].index))

    def read(on_cube: PathOnCube) -> MovingFrames:
        index = on_cube.index
        x0, y0 = box_corners(on_cube.x, on_cube.y, nx, ny)
        source = open_cube(Location.parse(on_cube.cube), index, stats)
        try:
            flux, flux_err = read_moving_box(source, index, on_cube.frames, x0, y0, nx, ny, merge_gap=merge_gap,
                                             threads=threads)
        finally:
            getattr(source, "close", lambda: None)()
        return MovingFrames(on_cube, x0, y0, flux, flux_err)

    workers = min(len(crossed), MAX_CUBES_AT_ONCE)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cubecut-path") as pool:
        pieces = list(pool.map(carrying_deadlines(read), crossed))
    sectors: dict[tuple[int, str], list[MovingFrames]] = {}
    for piece in pieces:
        sectors.setdefault((piece.path.index.sector, piece.path.index.product), []).append(piece)
    results = []
    for (sector, _), group in sorted(sectors.items()):
        tpf = build_moving_tpf(group, nx, ny, target=target)
        header = tpf[0].header
        results.append((tpf, moving_tpf_filename(target, sector, header["TSTART"], header["TSTOP"], nx, ny)))
    return results
