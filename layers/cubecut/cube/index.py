"""The cube index: a small JSON sidecar with everything a cutout needs except pixels.

Ingest writes it next to the cube as ``{cube}.index.json`` so that a cutout makes one
small GET for metadata instead of parsing the cube's table HDU. For cubes without a
sidecar (e.g. made by astrocut) :func:`cubecut.cube.index_cache.load_index` builds the same
object from the cube's own headers and table.

Sidecar versions (``version``): 1 holds the per-frame columns as JSON lists; 2 (written
since) holds them in ``frames`` as one zlib-compressed, base64-encoded block of
little-endian arrays (:data:`FRAME_COLUMNS`) followed by the FFI names joined by newlines.
What each costs a cold cutout at 11,700 frames (a 200-s sector), its size and load time, is
measured by benchmarks/sidecar.py (benchmarks/results/sidecar.md). Both are read;
a reader that knows only version 1 finds a version-2 sidecar unusable and rebuilds the
index from the cube (:mod:`cubecut.cube.sidecar`), so nothing reads a wrong index.
"""
from __future__ import annotations

import base64
import binascii
import json
import zlib
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # astropy.io.fits (and astropy.units) load on first use: the API's catalog imports this
    from astropy.io import fits

INDEX_SUFFIX = ".index.json"
INDEX_VERSION = 2
#: Versions :meth:`CubeIndex.from_json` reads.
READABLE_VERSIONS = (1, 2)
#: A version-2 sidecar's numeric per-frame columns, in block order: (attribute, little-endian dtype).
FRAME_COLUMNS = (("tstart", "<f8"), ("tstop", "<f8"), ("barycorr", "<f8"), ("quality", "<i4"), ("cadence", "<i8"))
#: Most bytes one FFI name may take in a version-2 block (a bound on what is decompressed).
MAX_NAME_BYTES = 1024


def sector_name(sector: int, camera: int, ccd: int, product: str = "SPOC") -> str:
    """TESScut's name of a cube, e.g. ``tess-s0001-4-2`` (``tica-...`` for TICA)."""
    return f"{'tica' if product == 'TICA' else 'tess'}-s{sector:04d}-{camera}-{ccd}"


@dataclass
class CubeIndex:
    """Metadata of one cube.

    Attributes:
        nrows, ncols, nt: cube image shape (FFI rows, FFI columns, frames).
        data_offset: byte offset of the first pixel value of HDU1 in the cube object.
        cube_size: total size of the cube object in bytes.
        product: ``"SPOC"`` or ``"TICA"``.
        sector, camera, ccd: where the cube's FFIs come from (0 when unknown).
        tstart, tstop: per-frame start/stop times (BTJD for SPOC, TJD for TICA), time order.
        barycorr: per-frame barycentric correction in days (0 when the FFIs have none).
        quality: per-frame quality flags (DQUALITY for SPOC, QUAL_BIT for TICA).
        ffi_files: per-frame FFI file names, never truncated.
        primary_header: the cube's HDU0 header as FITS card text.
        wcs_row: index of the frame whose header provides the cutout WCS.
        wcs_header: that frame's FFI image header (all table columns of that row), card text.
        cube_etag: the cube object's ETag when known (S3), else None.
        nplanes: values per pixel and frame (NAXIS1): 2 = (flux, error) for SPOC cubes,
            1 = flux only for TICA cubes in astrocut <= 1.2's TicaCubeFactory layout.
        cadence: per-frame FFI cadence numbers (TICA's CADENCE column; a TPF's CADENCENO);
            empty when the cube has none (SPOC cubes, or sidecars written before it existed).
        tpf_template: the header cards every TPF of the cube shares, cached with the index
            (:func:`cubecut.cutout.tpf_template.template_state`); None when not stored (the first
            cutout in a process builds it then).
    """

    nrows: int
    ncols: int
    nt: int
    data_offset: int
    cube_size: int
    product: str
    sector: int
    camera: int
    ccd: int
    tstart: list[float]
    tstop: list[float]
    barycorr: list[float]
    quality: list[int]
    ffi_files: list[str]
    primary_header: str
    wcs_row: int
    wcs_header: str
    cube_etag: str | None = None
    nplanes: int = 2
    cadence: list[int] = field(default_factory=list)
    version: int = field(default=INDEX_VERSION)
    tpf_template: dict | None = field(default=None, compare=False, repr=False)

    @property
    def row_stride(self) -> int:
        """Bytes of one cube row: all columns x all frames x planes x 4 bytes."""
        return self.ncols * self.nt * self.nplanes * 4

    def row_offset(self, row: int) -> int:
        """Byte offset of cube row ``row`` (0-based FFI row)."""
        return self.data_offset + row * self.row_stride

    @property
    def sector_name(self) -> str:
        """TESScut's name for the cube, e.g. ``tess-s0001-1-3`` (``tica-...`` for TICA)."""
        return sector_name(self.sector, self.camera, self.ccd, self.product)

    def time_arrays(self) -> dict[str, np.ndarray]:
        """The per-frame columns as numpy arrays."""
        return {
            "tstart": np.asarray(self.tstart, dtype=np.float64),
            "tstop": np.asarray(self.tstop, dtype=np.float64),
            "barycorr": np.asarray(self.barycorr, dtype=np.float64),
            "quality": np.asarray(self.quality, dtype=np.int32),
        }

    def to_json(self) -> bytes:
        """The sidecar's bytes, version :data:`INDEX_VERSION` (whatever ``version`` says)."""
        raw = asdict(self)
        for name in (*(name for name, _ in FRAME_COLUMNS), "ffi_files"):
            del raw[name]
        raw["version"] = INDEX_VERSION
        raw["frames"] = pack_frames(self)
        return json.dumps(raw, allow_nan=True, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes | str) -> "CubeIndex":
        """The index in a sidecar's bytes (any of :data:`READABLE_VERSIONS`), as version
        :data:`INDEX_VERSION`. Raises ValueError or TypeError if they are not a sidecar."""
        raw = json.loads(data)
        version = raw.get("version")
        if version not in READABLE_VERSIONS:
            raise ValueError(f"unsupported cube index version {version!r}")
        if version == 2:
            raw.update(unpack_frames(raw.pop("frames")))
        raw["version"] = INDEX_VERSION
        return cls(**raw)


def pack_frames(index: CubeIndex) -> dict:
    """The per-frame columns of ``index`` as a version-2 ``frames`` object: ``counts`` (values
    per column, in block order, ``ffi_files`` last) and ``zlib_base64`` (the block)."""
    if any("\n" in name for name in index.ffi_files):
        raise ValueError("an FFI name holds a newline")
    parts, counts = [], {}
    for name, dtype in FRAME_COLUMNS:
        values = np.asarray(getattr(index, name), dtype=dtype)
        parts.append(values.tobytes())
        counts[name] = len(values)
    parts.append("\n".join(index.ffi_files).encode())
    counts["ffi_files"] = len(index.ffi_files)
    return {"counts": counts, "zlib_base64": base64.b64encode(zlib.compress(b"".join(parts), 6)).decode()}


def unpack_frames(frames: dict) -> dict[str, list]:
    """The per-frame columns (lists of Python numbers and strings) of a version-2 ``frames``
    object. Raises ValueError if it does not hold exactly what its counts say, or the counts
    are not one value a frame (``cadence`` may be empty)."""
    counts = frames["counts"]
    names = [name for name, _ in FRAME_COLUMNS] + ["ffi_files"]
    nt = counts.get("ffi_files") if isinstance(counts, dict) else None
    if (list(counts) != names or not isinstance(nt, int) or nt < 0
            or any(counts[name] != nt for name in names if name != "cadence")
            or counts["cadence"] not in (0, nt)):
        raise ValueError(f"frames counts {counts!r}: not one count a frame for {names} (cadence may be empty)")
    numeric = sum(np.dtype(dtype).itemsize * counts[name] for name, dtype in FRAME_COLUMNS)
    bound = numeric + counts["ffi_files"] * (MAX_NAME_BYTES + 1)
    inflate = zlib.decompressobj()
    try:
        block = inflate.decompress(base64.b64decode(frames["zlib_base64"], validate=True), bound + 1)
    except (zlib.error, binascii.Error) as exc:
        raise ValueError(f"frames block: {exc}") from None
    if len(block) > bound or inflate.unconsumed_tail or not inflate.eof or len(block) < numeric:
        raise ValueError("frames block is not the size its counts say")
    out: dict[str, list] = {}
    at = 0
    for name, dtype in FRAME_COLUMNS:
        out[name] = np.frombuffer(block, dtype, counts[name], at).tolist()
        at += np.dtype(dtype).itemsize * counts[name]
    files = block[at:].decode().split("\n") if counts["ffi_files"] else []
    if len(files) != counts["ffi_files"] or (not counts["ffi_files"] and at != len(block)):
        raise ValueError("frames block holds another number of FFI names than its counts say")
    out["ffi_files"] = files
    return out


#: Per-product table columns: (start, stop, quality, barycentric correction or None).
_COLUMNS = {"SPOC": ("TSTART", "TSTOP", "DQUALITY", "BARYCORR"),
            "TICA": ("STARTTJD", "ENDTJD", "QUAL_BIT", None)}


def wcs_row(table: fits.FITS_rec) -> int:
    """The table row whose WCS cutouts use: the middle row, or the next one that has a
    SIP WCS (wrapping around), as astrocut does. Raises ``NotACubeError`` if none has."""
    from ..errors import NotACubeError

    n = len(table)
    if "CTYPE2" in table.columns.names:
        for i in [*range(n // 2, n), *range(0, n // 2)]:
            if str(table[i]["CTYPE2"]).strip() == "DEC--TAN-SIP":
                return i
    raise NotACubeError("no frame of the cube has a WCS (no table row with CTYPE2 = 'DEC--TAN-SIP')")


def row_header(table: fits.FITS_rec, row: int) -> fits.Header:
    """One table row as a FITS header (NaN values left out)."""
    from astropy.io import fits

    header = fits.Header()
    record = table[row]
    for name in table.columns.names:
        value = record[name]
        if isinstance(value, (bytes, str)):
            header[name] = value.decode() if isinstance(value, bytes) else value
        elif isinstance(value, (np.floating, float)) and np.isnan(value):
            continue
        else:
            header[name] = value.item() if hasattr(value, "item") else value
    return header


def index_from_table(primary: fits.Header, table: fits.FITS_rec, *, nrows: int, ncols: int, nt: int,
                     nplanes: int, data_offset: int, cube_size: int, cube_etag: str | None = None) -> CubeIndex:
    """Build the index from a cube's primary header and its FFI table (pure)."""
    names = set(table.columns.names)
    product = "TICA" if nplanes == 1 or ("STARTTJD" in names and "TSTART" not in names) else "SPOC"
    start, stop, quality, barycorr = _COLUMNS[product]

    def column(name: str | None, default: float | str) -> list:
        if name is None or name not in names:
            return [default] * len(table)
        return np.asarray(table[name]).tolist()

    row = wcs_row(table)
    camera_key, ccd_key = ("CAMNUM", "CCDNUM") if product == "TICA" else ("CAMERA", "CCD")
    files = [f.decode() if isinstance(f, bytes) else str(f) for f in column("FFI_FILE", "")]
    return CubeIndex(
        nrows=nrows, ncols=ncols, nt=nt, data_offset=data_offset, cube_size=cube_size, product=product,
        sector=int(primary.get("SECTOR") or 0), camera=int(primary.get(camera_key) or 0),
        ccd=int(primary.get(ccd_key) or 0),
        tstart=[float(v) for v in column(start, float("nan"))],
        tstop=[float(v) for v in column(stop, float("nan"))],
        barycorr=[float(v) for v in column(barycorr, 0.0)],
        quality=[int(v) for v in column(quality, 0)],
        ffi_files=[f.strip() for f in files],
        primary_header=primary.tostring(), wcs_row=row, wcs_header=row_header(table, row).tostring(),
        cube_etag=cube_etag, nplanes=nplanes,
        cadence=[int(v) for v in table["CADENCE"]] if product == "TICA" and "CADENCE" in names else [],
    )
