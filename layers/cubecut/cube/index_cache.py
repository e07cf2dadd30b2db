"""Load a cube's :class:`~cubecut.cube.index.CubeIndex`: from its sidecar, or from the cube.

The sidecar ``{cube}.index.json`` costs one GET. Without it the index is built from the
cube itself with a fixed, small number of reads: a HEAD (S3), one read of the first
``FIRST_READ`` bytes (primary + image headers), and one read of the table HDU, whose
offset follows from the image header alone (astrocut layout: the table is the last HDU).
Both paths give the same object: the sidecar is written by ingest with
:func:`cubecut.cube.index.index_from_table`, which is also used here.

Parsed indexes are kept in an in-process LRU keyed by the cube URL (a lookup makes no
request); each entry carries the cube's ETag (and size), which every later S3 pixel read
sends as ``If-Match`` (a local
cube's size and mtime are compared when it is opened), so a replaced cube raises
:class:`~cubecut.storage.StaleObjectError` on its first read. Callers then call
:func:`invalidate` and reload with ``refresh=True`` (which also skips the sidecar, since
a sidecar may lag behind the cube it describes: see :mod:`cubecut.cube.sidecar`).
"""
from __future__ import annotations

import threading
from collections import OrderedDict

from astropy.io import fits
from astropy.io.fits.verify import VerifyError

from .index import CubeIndex, index_from_table
from .sidecar import read_sidecar
from ..errors import FFIError, NotACubeError
from ..fitsio import BLOCK, data_bytes, padded, read_header
from ..storage import ByteSource, Location, ReadStats, get_bytes_fast, open_source

#: Bytes read first: the primary and image headers of a TESS cube take ~3-4 blocks.
FIRST_READ = 32 * 1024
#: Largest table HDU accepted (a 12,000-FFI sector's table is ~20 MB).
MAX_TABLE_BYTES = 512 * 1024 * 1024
#: Number of cube indexes kept per process.
CACHE_SIZE = 32

#: What astropy raises for a malformed binary table (it parses formats and data lazily).
_TABLE_ERRORS = (ValueError, TypeError, KeyError, IndexError, AttributeError, OverflowError, VerifyError)

_cache: OrderedDict[str, CubeIndex] = OrderedDict()
_cache_lock = threading.Lock()


def load_index(cube_url: str | Location, stats: ReadStats | None = None, *,
               refresh: bool = False) -> CubeIndex:
    """The index of the cube at ``cube_url`` (cached per process).

    Args:
        cube_url: ``s3://bucket/key`` or a local path of an astrocut/cubecut cube.
        stats: counts the requests and bytes of the metadata reads (none on a cache hit).
        refresh: ignore the cache and the sidecar and build the index from the cube.

    Raises:
        ObjectNotFoundError, AccessDeniedError: the cube cannot be read.
        NotACubeError: the object is not a cube, or is truncated.
    """
    location = Location.of(cube_url)
    index = None if refresh else cached(location)
    if index is not None:
        return index
    # On S3 the sidecar comes through obstore, as the pixels do: a quarter of botocore's CPU
    # on the cold path, where nothing else can run meanwhile.
    index = None if refresh else read_sidecar(location, stats, get=get_bytes_fast)[0]
    if index is None:
        index = index_from_cube(location, stats)
    remember(location, index)
    return index


def cached(cube_url: str | Location) -> CubeIndex | None:
    """The cached index of ``cube_url`` (now the most recently used), or None (no read)."""
    location = Location.of(cube_url)
    with _cache_lock:
        index = _cache.get(location.url)
        if index is not None:
            _cache.move_to_end(location.url)
        return index


def remember(cube_url: str | Location, index: CubeIndex) -> None:
    """Cache ``index`` as the current index of ``cube_url`` (e.g. the catalog's, which it
    checked against the cube's listed ETag)."""
    location = Location.of(cube_url)
    with _cache_lock:
        _cache[location.url] = index
        _cache.move_to_end(location.url)
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)


def invalidate(cube_url: str | Location) -> None:
    """Forget the cached index of ``cube_url`` (after a StaleObjectError)."""
    location = Location.of(cube_url)
    with _cache_lock:
        _cache.pop(location.url, None)


def clear_cache() -> None:
    """Forget every cached index and every FFI WCS parsed from one: the next cutout of any
    cube pays for its index and its WCS again (what the benchmarks call cold)."""
    from ..cutout.geometry import forget_wcs  # geometry imports astropy.coordinates; this module need not

    with _cache_lock:
        _cache.clear()
    forget_wcs()


def index_from_cube(location: Location, stats: ReadStats | None = None) -> CubeIndex:
    """Build the index from the cube's headers and table HDU (no pixel is read; the reads
    are those the module docstring lists, more only for unusually large headers)."""
    source = open_source(location, stats)
    what = location.url
    head = _Prefetched(source, 0, source.read(0, min(FIRST_READ, source.size)))
    if not head.data.startswith(b"SIMPLE  ="):
        raise NotACubeError(f"{what}: not a cube: not a FITS file")
    try:
        primary, primary_bytes = read_header(head, 0, first_read=BLOCK)
        image, image_bytes = read_header(head, primary_bytes, first_read=BLOCK)
    except FFIError as exc:
        raise NotACubeError(f"{what}: not a cube: {exc}") from None
    nrows, ncols, nt, nplanes = _cube_shape(image, what)
    if (primary.get("SIMPLE") is not True or type(primary.get("NAXIS")) is not int or primary["NAXIS"] != 0
            or type(primary.get("BITPIX")) is not int):
        raise NotACubeError(f"{what}: not a cube: its primary HDU has SIMPLE = {primary.get('SIMPLE')!r}, "
                            f"NAXIS = {primary.get('NAXIS')!r} (a cube's has T and 0)")
    data_offset = primary_bytes + image_bytes
    table_offset = data_offset + padded(nrows * ncols * nt * nplanes * 4)
    if source.size < table_offset + BLOCK:
        raise NotACubeError(f"{what}: truncated: {source.size} bytes, but a {nrows}x{ncols}x{nt} cube "
                            f"needs more than {table_offset + BLOCK}")
    if source.size - table_offset > MAX_TABLE_BYTES:
        raise NotACubeError(f"{what}: not a cube: {source.size - table_offset} bytes follow the image")
    table_data = _checked_table(_Prefetched(source, table_offset, source.read(table_offset, source.size)), nt, what)
    try:
        table = fits.BinTableHDU.fromstring(table_data)
        names = table.columns.names
        if "TSTART" not in names and "STARTTJD" not in names:
            raise NotACubeError("not a cube: its table has neither TSTART nor STARTTJD")
        return index_from_table(primary, table.data, nrows=nrows, ncols=ncols, nt=nt, nplanes=nplanes,
                                data_offset=data_offset, cube_size=source.size, cube_etag=source.etag)
    except NotACubeError as exc:
        raise NotACubeError(f"{what}: {exc}") from None
    except _TABLE_ERRORS as exc:  # astropy parses table columns lazily, with many error types
        raise NotACubeError(f"{what}: not a cube: unreadable table: {type(exc).__name__}: {exc}") from None


class _Prefetched:
    """A ByteSource view whose bytes ``[offset, offset + len(data))`` are already in memory,
    so headers inside them are parsed without further requests."""

    def __init__(self, source: ByteSource, offset: int, data: bytes) -> None:
        self.location, self.size, self.etag = source.location, source.size, source.etag
        self.source, self.offset, self.data = source, offset, data

    def read(self, start: int, stop: int) -> bytes:
        end = self.offset + len(self.data)
        if not self.offset <= start < end:
            return self.source.read(start, stop)
        data = self.data[start - self.offset:stop - self.offset]
        return data + self.source.read(end, stop) if stop > end else data


def _cube_shape(header: fits.Header, what: str) -> tuple[int, int, int, int]:
    """(nrows, ncols, nt, nplanes) of a cube image header, or NotACubeError."""
    expected = {"XTENSION": "IMAGE", "BITPIX": -32, "NAXIS": 4}
    for key, value in expected.items():
        if header.get(key) != value:
            raise NotACubeError(f"{what}: not a cube: HDU 1 has {key} = {header.get(key)!r}, "
                                f"a cube has {value!r}")
    dims = [header.get(f"NAXIS{i}") for i in (4, 3, 2, 1)]
    if not all(isinstance(n, int) and n > 0 for n in dims) or dims[3] not in (1, 2):
        raise NotACubeError(f"{what}: not a cube: image axes (NAXIS4..1) are {dims}; a cube has "
                            "(rows, cols, frames, 2) or, for TICA, (rows, cols, frames, 1)")
    if header.get("PCOUNT", 0) != 0 or header.get("GCOUNT", 1) != 1:
        raise NotACubeError(f"{what}: not a cube: HDU 1 has PCOUNT/GCOUNT")
    nrows, ncols, nt, nplanes = dims
    return nrows, ncols, nt, nplanes


def _checked_table(view: _Prefetched, nt: int, what: str) -> bytes:
    """The bytes of the table HDU held by ``view``, checked against the size its header claims."""
    if not view.data.startswith(b"XTENSION= 'BINTABLE'"):
        raise NotACubeError(f"{what}: not a cube: no binary table after the image")
    try:
        header, header_bytes = read_header(view, view.offset)
        nbytes = data_bytes(header)
    except FFIError as exc:
        raise NotACubeError(f"{what}: not a cube: {exc}") from None
    if header.get("NAXIS2") != nt:
        raise NotACubeError(f"{what}: not a cube: its table has {header.get('NAXIS2')} rows for {nt} frames")
    if header_bytes + nbytes > len(view.data):
        raise NotACubeError(f"{what}: truncated: the cube table needs {header_bytes + nbytes} bytes, "
                            f"{len(view.data)} are present")
    return view.data
