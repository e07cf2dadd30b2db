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
from typing import TYPE_CHECKING, Mapping


from ..errors import InputError, ObjectNotFoundError, OutsideCubeError
from ..storage import ReadStats, presigned_url
from ..cube.catalog import CubeCatalog, CubeEntry
from .service import CutoutService, cut_tpf, pixels
from .protocol import CutoutRequest, member_name

if TYPE_CHECKING:  # astropy's coordinates and WCS load on first use, not at a handler's import
    import astropy.units as u
    from astropy.coordinates import SkyCoord


def describe_cubes(catalog: CubeCatalog) -> list[dict]:
    """What ``GET /v1/cubes`` lists: one entry per ingested cube, by name (never its bucket
    or key: the bucket name holds the account ID)."""
    return [{"sectorName": e.sector_name, "sector": e.index.sector, "camera": e.index.camera, "ccd": e.index.ccd,
             "product": e.index.product, "frames": e.index.nt, "shape": [e.index.nrows, e.index.ncols],
             "tstart": e.index.tstart[0], "tstop": e.index.tstop[-1]} for e in catalog.entries()]


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


def make_cutout(service: CutoutService, selector: Mapping, ra: float, dec: float,
                size: tuple[int, int] | tuple[u.Quantity, u.Quantity], expiry: int) -> dict:
    """``POST /v1/cutouts``: one TPF from the cube ``selector`` names (:func:`find_cube`),
    centred on ``ra``, ``dec`` (ICRS degrees), ``size`` (columns, rows) in whole pixels or
    angles, stored and answered with a URL presigned for ``expiry`` seconds. A TPF above
    the service's streaming threshold is written to its object as it is built
    (:func:`cubecut.cutout.engine.cutout_stream`), never whole in memory.

    Within the service's pixel-frame and memory budgets (RequestTooLargeError before any
    read) and one of its concurrency slots (ServiceBusyError when none is free)."""
    from astropy.coordinates import SkyCoord

    entry = find_cube(service.catalog, selector)
    nbytes = service.check_budget([pixels(size) * entry.index.nt])
    coord = SkyCoord(ra % 360.0, dec, unit="deg")
    text = json.dumps([entry.url, entry.index_etag, ra, dec, str(size)])
    key = hashlib.sha256(text.encode()).hexdigest()
    stats = ReadStats()
    with service.limit.slot(nbytes):
        tpf = cut_tpf(entry, coord, size, stats)
        name = member_name(entry.sector_name, ra, dec, tpf.nx, tpf.ny)
        url = f"{service.results_prefix}v1/{key}/{name}"
        tpf.store(url)
    return {"url": presigned_url(url, expiry, name), "name": name, "bytes": tpf.size, "expires_in": expiry,
            "cube": entry.sector_name, "shape": [tpf.nt, tpf.ny, tpf.nx], "reads": stats.as_dict()}


def ffi_wcs(catalog: CubeCatalog, sector: int, camera: int, ccd: int, product: str = "SPOC") -> bytes:
    """``ffi_wcs?sector=&camera=&ccd=``: the cube's FFI WCS (SIP included) as a FITS file
    with a data-less primary HDU. The image size is in IMAGEW/IMAGEH (the astrometry.net
    keywords), since NAXIS1/NAXIS2 would promise a data array the file does not hold."""
    from astropy.io import fits

    entry = find_cube(catalog, {"sector": sector, "camera": camera, "ccd": ccd, "product": product})
    header = entry.wcs.to_header(relax=True)
    header["IMAGEW"] = (entry.index.ncols, "image width: FFI columns of the cube")
    header["IMAGEH"] = (entry.index.nrows, "image height: FFI rows of the cube")
    buf = io.BytesIO()
    fits.PrimaryHDU(header=header).writeto(buf)
    return buf.getvalue()


def quicklook_request(catalog: CubeCatalog, cube: str, coord: SkyCoord,
                      size: tuple[int, int]) -> tuple[CutoutRequest, CubeEntry]:
    """``GET /v1/quicklook?cube=&ra=&dec=&size=``: the cutout request of ``size`` pixels
    (columns, rows) at ``coord`` on the cube named ``cube``; OutsideCubeError if the
    position is not on it."""
    entry = find_cube(catalog, {"cube": cube.strip()})
    if not entry.covers(coord):
        raise OutsideCubeError(f"ra={coord.ra.deg:.6f}, dec={coord.dec.deg:.6f} is not on {entry.sector_name}")
    return CutoutRequest(coord, size, frozenset({entry.index.sector}), entry.index.product), entry
