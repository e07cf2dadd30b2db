"""Cutouts end to end: index -> boxes -> shared byte-range reads -> TPFs (-> files)."""
from __future__ import annotations

import io
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from astropy.coordinates import SkyCoord
from astropy.io import fits

from ..cube.index import CubeIndex
from ..errors import NotACubeError
from ..storage import ByteSource, Location, ReadStats, StaleObjectError, open_source, put_bytes
from .geometry import CoordInput, SizeInput, cutout_box, ffi_wcs, parse_coordinates, parse_size, size_label
from .metadata import invalidate, load_index
from .reader import Threads, read_boxes
from .tpf import build_tpf, tpf_filename


def cutout(cube: str | os.PathLike[str] | Location, coordinates: CoordInput, size: SizeInput, *,
           threads: Threads = "auto", output_dir: str | os.PathLike[str] | None = None,
           product: str | None = None, stats: ReadStats | None = None) -> list[str] | list[fits.HDUList]:
    """Target pixel files of ``size`` around each of ``coordinates`` from one cube.

    Args:
        cube: cube URL (``s3://bucket/key``) or local path.
        coordinates: a SkyCoord (scalar or array) or ``"ra dec"`` string(s) in degrees.
        size: pixels (int/float), ``(x, y)`` = (columns, rows), or a pixel/angle Quantity.
        threads: concurrent range reads (``"auto"`` or >= 1; 1 also builds TPFs sequentially).
        output_dir: local folder or ``s3://`` prefix; when given, files named as astrocut
            names them are written there and their paths/URLs are returned.
        product: when given (``"SPOC"``/``"TICA"``), the cube must be of that product.
        stats: counts every read request and byte (metadata and pixels).

    Returns:
        One TPF per coordinate, in order: paths if ``output_dir`` is given, else HDULists.

    Raises:
        CoordinateError, CutoutSizeError, OutsideCubeError, NotACubeError,
        ObjectNotFoundError, AccessDeniedError (all before any TPF is built).
    """
    location = cube if isinstance(cube, Location) else Location.parse(cube)
    coords = parse_coordinates(coordinates)
    parse_size(size)
    try:
        tpfs = _cutouts(location, load_index(location, stats), coords, size, threads, product, stats)
    except StaleObjectError:  # the cube was replaced since its index was cached: reload once
        invalidate(location)
        tpfs = _cutouts(location, load_index(location, stats, refresh=True), coords, size, threads,
                        product, stats)
    if output_dir is None:
        return tpfs
    labels = size_label(parse_size(size))
    names = [tpf_filename(location.name, c.ra.deg, c.dec.deg, *labels) for c in coords]
    return _write_all(tpfs, names, output_dir, threads)


def _cutouts(location: Location, index: CubeIndex, coords: list[SkyCoord], size: SizeInput,
             threads: Threads, product: str | None, stats: ReadStats | None) -> list[fits.HDUList]:
    if product is not None and product.upper() != index.product:
        raise NotACubeError(f"{location.url} is a {index.product} cube, not {product.upper()}")
    wcs = ffi_wcs(index)
    boxes = [cutout_box(wcs, c, size, image_shape=(index.nrows, index.ncols), cube_name=location.name)
             for c in coords]
    pixels = read_boxes(open_cube(location, index, stats), index, boxes, threads)

    def build(i: int) -> fits.HDUList:
        return build_tpf(index, boxes[i], *pixels[i], coords[i], cube_name=location.name)

    return _map(build, range(len(coords)), threads)


def open_cube(location: Location, index: CubeIndex, stats: ReadStats | None) -> ByteSource:
    """The cube for pixel reads; S3 reads send If-Match with the indexed ETag (no HEAD).

    Raises StaleObjectError if the cube's size or ETag no longer match ``index``."""
    source = open_source(location, stats, size=index.cube_size, etag=index.cube_etag)
    if source.size != index.cube_size or (index.cube_etag and source.etag != index.cube_etag):
        raise StaleObjectError(f"{location.url} changed since its index was read")
    return source


def encode_tpf(tpf: fits.HDUList) -> bytes:
    """The bytes of a TPF file as cubecut writes it (with CHECKSUM/DATASUM), the one place
    TPFs become files (``cutout(output_dir=...)`` and bulk jobs)."""
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fits.verify.VerifyWarning)
        tpf.writeto(buffer, checksum=True)
    return buffer.getvalue()


def _write_all(tpfs: list[fits.HDUList], names: list[str], output_dir: str | os.PathLike[str],
               threads: Threads) -> list[str]:
    folder = Location.parse(output_dir)

    def write(i: int) -> str:
        target = (Location("s3", folder.bucket, f"{folder.key.rstrip('/')}/{names[i]}".lstrip("/"))
                  if folder.is_s3 else Location.parse(Path(folder.key) / names[i]))
        put_bytes(target, encode_tpf(tpfs[i]), content_type="application/fits")
        return target.url

    return _map(write, range(len(tpfs)), threads)


def _map(function, items, threads: Threads) -> list:
    """``function`` over ``items``, on CPU-count threads unless ``threads == 1``."""
    items = list(items)
    workers = 1 if threads == 1 else min(len(items), os.cpu_count() or 1)
    if workers <= 1:
        return [function(item) for item in items]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cubecut-tpf") as pool:
        return list(pool.map(function, items))
