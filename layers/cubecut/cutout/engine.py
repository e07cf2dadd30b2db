"""Cutouts end to end: index -> boxes -> shared byte-range reads -> TPFs (-> files)."""
from __future__ import annotations

import dataclasses
import io
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from astropy.coordinates import SkyCoord
from astropy.io import fits

from ..cube.index import CubeIndex
from ..errors import NotACubeError, OversizedCutoutWarning
from ..storage import ByteSource, Location, ReadStats, StaleObjectError, open_source, put_bytes
from .geometry import CoordInput, SizeInput, cutout_box, ffi_wcs, parse_coordinates, parse_size, size_label
from .metadata import invalidate, load_index
from .reader import Threads, read_boxes
from .tpf import build_tpf, tpf_filename


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
        One TPF per coordinate, in order: paths if ``output_dir`` is given, else HDULists.

    Raises:
        CoordinateError, CutoutSizeError, OutsideCubeError, NotACubeError,
        ObjectNotFoundError, AccessDeniedError (all before any TPF is built).
    """
    location = cube if isinstance(cube, Location) else Location.parse(cube)
    if anon is not None:
        location = dataclasses.replace(location, anon=anon)
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
    _warn_oversized(location, index, boxes)
    pixels = read_boxes(_open_cube(location, index, stats), index, boxes, threads)

    def build(i: int) -> fits.HDUList:
        return build_tpf(index, boxes[i], *pixels[i], coords[i], cube_name=location.name)

    return _map(build, range(len(coords)), threads)


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


def _open_cube(location: Location, index: CubeIndex, stats: ReadStats | None) -> ByteSource:
    """The cube for pixel reads; S3 reads send If-Match with the indexed ETag (no HEAD)."""
    source = open_source(location, stats, size=index.cube_size, etag=index.cube_etag)
    if source.size != index.cube_size or (index.cube_etag and source.etag != index.cube_etag):
        raise StaleObjectError(f"{location.url} changed since its index was read")
    return source


def _write_all(tpfs: list[fits.HDUList], names: list[str], output_dir: str | os.PathLike[str],
               threads: Threads) -> list[str]:
    folder = Location.parse(output_dir)

    def write(i: int) -> str:
        target = (Location("s3", folder.bucket, f"{folder.key.rstrip('/')}/{names[i]}".lstrip("/"))
                  if folder.is_s3 else Location.parse(Path(folder.key) / names[i]))
        buffer = io.BytesIO()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", fits.verify.VerifyWarning)
            tpfs[i].writeto(buffer, checksum=True)
        put_bytes(target, buffer.getvalue(), content_type="application/fits")
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
