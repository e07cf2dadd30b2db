"""Load a cube's :class:`~cubecut.cube.index.CubeIndex`: from its sidecar, or from the cube.

The sidecar ``{cube}.index.json`` costs one GET. Without it the index is built from the
cube itself with a fixed, small number of reads: a HEAD (S3), one read of the first
``FIRST_READ`` bytes (primary + image headers), and one read of the table HDU, whose
offset follows from the image header alone (astrocut layout: the table is the last HDU).

Parsed indexes are kept in an in-process LRU keyed by the cube URL; each entry carries
the cube's ETag, which every later pixel read sends as ``If-Match``, so a replaced cube
raises :class:`~cubecut.storage.StaleObjectError` on its first read. Callers then call
:func:`invalidate` and reload with ``refresh=True`` (which also skips the sidecar, since
a sidecar may lag behind the cube it describes).
"""
from __future__ import annotations

import logging
import threading
from collections import OrderedDict

import numpy as np
from astropy.io import fits

from ..cube.index import INDEX_SUFFIX, CubeIndex
from ..errors import NotACubeError, ObjectNotFoundError
from ..storage import ByteSource, Location, ReadStats, get_bytes, open_source

log = logging.getLogger(__name__)

#: FITS blocks are 2880 bytes; every HDU starts on a block boundary.
BLOCK = 2880
#: Bytes read first: enough for the primary and image headers of any TESS cube.
FIRST_READ = 64 * 1024
#: Headers larger than this are not a cube's (guards against reading a huge non-FITS object).
MAX_HEADER_BYTES = 4 * 1024 * 1024
#: Largest table HDU accepted (a 12,000-FFI sector's table is ~20 MB).
MAX_TABLE_BYTES = 512 * 1024 * 1024
#: Number of cube indexes kept per process.
CACHE_SIZE = 32
#: The table column and value that mark a row holding a complete SIP WCS (as astrocut).
WCS_COLUMN, WCS_VALUE = "CTYPE2", "DEC--TAN-SIP"

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
    location = cube_url if isinstance(cube_url, Location) else Location.parse(cube_url)
    if not refresh:
        with _cache_lock:
            index = _cache.get(location.url)
            if index is not None:
                _cache.move_to_end(location.url)
                return index
    index = None if refresh else _read_sidecar(location, stats)
    if index is None:
        index = index_from_cube(location, stats)
    with _cache_lock:
        _cache[location.url] = index
        _cache.move_to_end(location.url)
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
    return index


def invalidate(cube_url: str | Location) -> None:
    """Forget the cached index of ``cube_url`` (after a StaleObjectError)."""
    location = cube_url if isinstance(cube_url, Location) else Location.parse(cube_url)
    with _cache_lock:
        _cache.pop(location.url, None)


def clear_cache() -> None:
    """Forget every cached index."""
    with _cache_lock:
        _cache.clear()


def _read_sidecar(location: Location, stats: ReadStats | None) -> CubeIndex | None:
    """The sidecar's index, or None when there is none (or it is unusable)."""
    sidecar = location.with_suffix(INDEX_SUFFIX)
    try:
        data, _ = get_bytes(sidecar, stats)
    except ObjectNotFoundError:
        if stats is not None and location.is_s3:
            stats.add(0)  # the probe was a request even though it returned nothing
        return None
    try:
        index = CubeIndex.from_json(data)
    except (ValueError, TypeError) as exc:
        log.warning("ignoring unusable cube index %s: %s", sidecar.url, exc)
        return None
    if index.data_offset + index.nrows * index.row_stride > index.cube_size:
        log.warning("ignoring cube index %s: its layout exceeds the cube size", sidecar.url)
        return None
    return index


def index_from_cube(location: Location, stats: ReadStats | None = None) -> CubeIndex:
    """Build the index from the cube's headers and table HDU (no pixel is read)."""
    source = open_source(location, stats)
    what = location.url
    head = source.read(0, min(FIRST_READ, source.size))
    if not head.startswith(b"SIMPLE  ="):
        raise NotACubeError(f"{what}: not a FITS file")
    head, primary, image_start = _read_header(source, head, 0, what)
    head, image, data_offset = _read_header(source, head, image_start, what)
    nrows, ncols, nt = _check_image_header(image, what)

    table_offset = data_offset + _padded(nrows * ncols * nt * 8)
    table_bytes = source.size - table_offset
    if table_bytes < BLOCK:
        raise NotACubeError(f"{what}: truncated: {source.size} bytes, but the "
                            f"{nrows}x{ncols}x{nt} cube needs more than {table_offset + BLOCK}")
    if table_bytes > MAX_TABLE_BYTES:
        raise NotACubeError(f"{what}: {table_bytes} bytes after the image, too many for a cube table")
    table = _parse_table(source.read(table_offset, source.size), nt, what)

    names = table.columns.names
    if "TSTART" in names and "TSTOP" in names:
        product, times, quality = "SPOC", ("TSTART", "TSTOP"), "DQUALITY"
    elif "STARTTJD" in names and "ENDTJD" in names:
        product, times, quality = "TICA", ("STARTTJD", "ENDTJD"), "QUAL_BIT"
    else:
        raise NotACubeError(f"{what}: the cube table has neither TSTART/TSTOP nor STARTTJD/ENDTJD")
    data = table.data
    wcs_row = _wcs_row(data, what)
    return CubeIndex(
        nrows=nrows, ncols=ncols, nt=nt, data_offset=data_offset, cube_size=source.size,
        product=product,
        sector=_int_keyword(primary, "SECTOR"),
        camera=_int_keyword(primary, "CAMERA", "CAMNUM"),
        ccd=_int_keyword(primary, "CCD", "CCDNUM"),
        tstart=data[times[0]].astype(float).tolist(),
        tstop=data[times[1]].astype(float).tolist(),
        barycorr=_column(data, "BARYCORR" if product == "SPOC" else None, 0.0, float),
        quality=_column(data, quality, 0, int),
        ffi_files=_column(data, "FFI_FILE", "", str),
        primary_header=primary.tostring(padding=False),
        wcs_row=wcs_row,
        wcs_header=_row_header(data, wcs_row).tostring(padding=False),
        cube_etag=source.etag,
    )


def _padded(nbytes: int) -> int:
    return -(-nbytes // BLOCK) * BLOCK


def _read_header(source: ByteSource, head: bytes, start: int, what: str) -> tuple[bytes, fits.Header, int]:
    """Parse the header starting at byte ``start``; returns (bytes read so far, header, its end).

    ``head`` holds the object's first bytes; it is extended (doubling) only when a header
    runs past it, up to ``MAX_HEADER_BYTES``.
    """
    while (found := _parse_header(head, start, what)) is None:
        if len(head) >= source.size or len(head) - start >= MAX_HEADER_BYTES:
            raise NotACubeError(f"{what}: no complete FITS header at byte {start}")
        head += source.read(len(head), min(source.size, 2 * len(head)))
    return head, *found


def _parse_header(buf: bytes, start: int, what: str) -> tuple[fits.Header, int] | None:
    """The header starting at ``buf[start]`` and the offset of the block after it, or None
    when its END card is not within ``buf``."""
    for pos in range(start, len(buf) - 79, 80):
        if buf[pos:pos + 8] == b"END     ":
            try:
                header = fits.Header.fromstring(buf[start:pos + 80].decode("ascii"))
            except (UnicodeDecodeError, ValueError) as exc:
                raise NotACubeError(f"{what}: unreadable FITS header at byte {start}: {exc}") from None
            return header, start + _padded(pos + 80 - start)
    return None


def _check_image_header(header: fits.Header, what: str) -> tuple[int, int, int]:
    """(nrows, ncols, nt) of a cube image header, or NotACubeError."""
    expected = {"XTENSION": "IMAGE", "BITPIX": -32, "NAXIS": 4, "NAXIS1": 2}
    for key, value in expected.items():
        if header.get(key) != value:
            raise NotACubeError(f"{what}: not a cube: HDU 1 has {key}={header.get(key)!r}, "
                                f"a cube has {key}={value!r}")
    dims = [header.get(f"NAXIS{i}") for i in (4, 3, 2)]
    if not all(isinstance(n, int) and n > 0 for n in dims):
        raise NotACubeError(f"{what}: not a cube: bad image dimensions {dims}")
    if header.get("PCOUNT", 0) != 0 or header.get("GCOUNT", 1) != 1:
        raise NotACubeError(f"{what}: not a cube: HDU 1 has PCOUNT/GCOUNT")
    nrows, ncols, nt = dims
    return nrows, ncols, nt


def _parse_table(raw: bytes, nt: int, what: str) -> fits.BinTableHDU:
    """The cube's table HDU from its bytes, checked against the size its header claims."""
    found = _parse_header(raw, 0, what) if raw.startswith(b"XTENSION= 'BINTABLE'") else None
    if found is None:
        raise NotACubeError(f"{what}: not a cube: no binary table after the image")
    header, data_start = found
    sizes = [header.get(key) for key in ("NAXIS1", "NAXIS2", "PCOUNT")]
    if not all(isinstance(n, int) and n >= 0 for n in sizes):
        raise NotACubeError(f"{what}: not a cube: bad table dimensions {sizes}")
    width, rows, heap = sizes
    if rows != nt:
        raise NotACubeError(f"{what}: not a cube: the table has {rows} rows for {nt} frames")
    if data_start + width * rows + heap > len(raw):
        raise NotACubeError(f"{what}: truncated: the cube table needs {data_start + width * rows + heap} "
                            f"bytes, {len(raw)} are present")
    try:
        return fits.BinTableHDU.fromstring(raw)
    except (ValueError, TypeError, KeyError) as exc:
        raise NotACubeError(f"{what}: unreadable cube table: {exc}") from None


def _wcs_row(data: fits.FITS_rec, what: str) -> int:
    """The table row whose header gives the cutout WCS, chosen as astrocut 1.3.0 does.

    astrocut starts at row ``len // 2`` and walks forward (wrapping to 0) to the first row
    whose CTYPE2 is ``DEC--TAN-SIP``. astrocut gives up one row early (row ``len//2 - 1`` is
    never examined); we examine it last, so whenever astrocut finds a row we find the same.
    """
    n = len(data)
    if WCS_COLUMN in data.columns.names:
        column = data[WCS_COLUMN]
        for step in range(n):
            row = (n // 2 + step) % n
            if column[row] == WCS_VALUE:
                return row
    raise NotACubeError(f"{what}: no frame of the cube has a {WCS_VALUE} WCS")


def _row_header(data: fits.FITS_rec, row: int) -> fits.Header:
    """One table row as a FITS header, exactly as astrocut builds it (NaN values skipped)."""
    header = fits.Header()
    record = data[row]
    for name in data.columns.names:
        value = record[name]
        if not isinstance(value, str) and np.isnan(value):
            continue
        header[name] = value
    return header


def _column(data: fits.FITS_rec, name: str | None, default, kind) -> list:
    if name is None or name not in data.columns.names:
        return [default] * len(data)
    return [kind(v) for v in data[name]]


def _int_keyword(header: fits.Header, *keys: str) -> int:
    for key in keys:
        value = header.get(key)
        if isinstance(value, int):
            return value
    return 0
