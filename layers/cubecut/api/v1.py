"""cubecut's own JSON API (``/v1``) and the cube-info/WCS routes: request → TPF → URL.

Cube locations supplied by users are never dereferenced as given: a request names a
cube the catalog knows (by TESScut sector name, by ``sector``/``camera``/``ccd``, or by
its exact catalog URL), so the API cannot be pointed at arbitrary buckets (no SSRF) and
result keys are derived from hashes, never from request text.
"""
from __future__ import annotations

import hashlib
import io
import json
import math
from typing import Mapping, Sequence

import astropy.units as u
from astropy.coordinates import SkyCoord
from astropy.io import fits

from ..cutout import cutout
from ..cutout.geometry import ffi_wcs as cube_wcs
from ..errors import CoordinateError, InputError, ObjectNotFoundError, OutsideCubeError
from ..storage import ReadStats, put_bytes
from .catalog import CubeCatalog, CubeEntry
from .service import CutoutService, hdul_bytes, presign
from .tesscut import CutoutRequest, member_name, parse_position, single

_UNITS = {"px": None, "arcsec": u.arcsec, "arcmin": u.arcmin, "deg": u.deg}


def describe_cubes(catalog: CubeCatalog) -> list[dict]:
    """What ``GET /v1/cubes`` lists: one entry per ingested cube."""
    return [{"sectorName": e.sector_name, "sector": e.index.sector, "camera": e.index.camera, "ccd": e.index.ccd,
             "product": e.index.product, "frames": e.index.nt, "shape": [e.index.nrows, e.index.ncols],
             "tstart": e.index.tstart[0], "tstop": e.index.tstop[-1], "cube": e.url} for e in catalog.entries()]


def find_cube(catalog: CubeCatalog, request: Mapping) -> CubeEntry:
    """The catalog entry a request names; ObjectNotFoundError if none."""
    entries = catalog.entries()
    if "cube" in request:
        name = str(request["cube"])
        matches = [e for e in entries if name in (e.url, e.sector_name)]
    elif all(k in request for k in ("sector", "camera", "ccd")):
        try:
            wanted = (int(request["sector"]), int(request["camera"]), int(request["ccd"]))
        except (TypeError, ValueError):
            raise InputError("sector, camera and ccd must be whole numbers") from None
        product = str(request.get("product", "SPOC")).upper()
        matches = [e for e in entries if (e.index.sector, e.index.camera, e.index.ccd) == wanted
                   and e.index.product == product]
    else:
        raise InputError("name the cube: 'cube' (e.g. 'tess-s0001-1-1') or 'sector', 'camera' and 'ccd'")
    if not matches:
        raise ObjectNotFoundError("no such cube has been ingested; GET /v1/cubes lists them")
    return matches[0]


def _number(request: Mapping, key: str) -> float:
    try:
        value = float(request[key])
    except KeyError:
        raise InputError(f"'{key}' is required") from None
    except (TypeError, ValueError):
        raise InputError(f"'{key}' must be a number") from None
    if not math.isfinite(value):
        raise CoordinateError(f"'{key}' must be finite")
    return value


def _size(request: Mapping) -> int | tuple:
    raw = request.get("size", 11)
    units = _UNITS.get(str(request.get("units", "px")))
    if str(request.get("units", "px")) not in _UNITS:
        raise InputError(f"units must be one of {', '.join(_UNITS)}")
    values: Sequence = raw if isinstance(raw, (list, tuple)) else [raw]
    if len(values) not in (1, 2) or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        raise InputError("size must be a number or [nx, ny]")
    if units is None:
        if any(v != int(v) for v in values):
            raise InputError("pixel sizes must be whole numbers")
        sizes = [int(v) for v in values]
    else:
        sizes = [v * units for v in values]
    return sizes[0] if len(sizes) == 1 else tuple(sizes)


def make_cutout(service: CutoutService, request: Mapping, expiry: int) -> dict:
    """``POST /v1/cutouts``: one TPF from one cube, stored and answered with a presigned URL.

    Takes one of the service's concurrency slots (ServiceBusyError when none is free)."""
    if not isinstance(request, Mapping):
        raise InputError("the body must be a JSON object")
    entry = find_cube(service.catalog, request)
    ra, dec = _number(request, "ra"), _number(request, "dec")
    if not (0 <= ra <= 360 and -90 <= dec <= 90):
        raise CoordinateError("ra must be in [0, 360] and dec in [-90, 90] degrees")
    size = _size(request)
    stats = ReadStats()
    coord = SkyCoord(ra, dec, unit="deg")
    with service.limit.slot():
        (hdul,) = cutout(entry.url, coord, size, stats=stats)
    data = hdul_bytes(hdul)
    ny, nx = hdul["APERTURE"].data.shape
    name = member_name(entry.sector_name, ra, dec, nx, ny)
    key = hashlib.sha256(json.dumps([entry.url, entry.index_etag, ra, dec, str(size)]).encode()).hexdigest()
    url = f"{service.results_prefix}v1/{key}/{name}"
    put_bytes(url, data, "application/fits")
    return {"url": presign(url, expiry, name), "name": name, "bytes": len(data), "expires_in": expiry,
            "cube": entry.sector_name, "shape": [int(hdul[1].data.shape[0]), ny, nx], "reads": stats.as_dict()}


def ffi_wcs(catalog: CubeCatalog, params: Mapping[str, Sequence[str]]) -> bytes:
    """``ffi_wcs?sector=&camera=&ccd=``: the cube's FFI WCS (SIP included) as a FITS file
    with a data-less primary HDU. The image size is in IMAGEW/IMAGEH (the astrometry.net
    keywords), since NAXIS1/NAXIS2 would promise a data array the file does not hold."""
    request = {k: v[0] for k, v in params.items() if v}
    entry = find_cube(catalog, request)
    header = cube_wcs(entry.index).to_header(relax=True)
    header["IMAGEW"] = (entry.index.ncols, "image width: FFI columns of the cube")
    header["IMAGEH"] = (entry.index.nrows, "image height: FFI rows of the cube")
    buf = io.BytesIO()
    fits.PrimaryHDU(header=header).writeto(buf)
    return buf.getvalue()


def _pixel_pair(text: str) -> tuple[int, int]:
    """``"11"`` or ``"11,7"`` (columns, rows) → whole positive pixels."""
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise InputError(f"size must be whole pixels, 'N' or 'NX,NY'; got {text!r}") from None
    if len(values) not in (1, 2) or min(values) < 1:
        raise InputError(f"size must be one or two positive whole numbers; got {text!r}")
    return (values[0], values[-1])


def quicklook_request(catalog: CubeCatalog, params: Mapping[str, Sequence[str]]) -> tuple[CutoutRequest, CubeEntry]:
    """``GET /v1/quicklook?cube=&ra=&dec=&size=``: the cutout request for one named cube
    (``size`` in pixels, default 11); OutsideCubeError if the position is not on it."""
    name = (single(params, "cube") or "").strip()
    if not name:
        raise InputError("'cube' is required: a cube's name such as tess-s0001-1-1 (GET /v1/cubes lists them)")
    entry = find_cube(catalog, {"cube": name})
    coord = parse_position(params)
    if not entry.covers(coord):
        raise OutsideCubeError(f"ra={coord.ra.deg:.6f}, dec={coord.dec.deg:.6f} is not on {entry.sector_name}")
    request = CutoutRequest(coord, _pixel_pair(single(params, "size") or "11"), frozenset({entry.index.sector}),
                            entry.index.product)
    return request, entry
