"""The cutout service behind the HTTP API: find cubes, cut concurrently, cache, deliver.

Delivery: a result of at most ``inline_limit`` bytes is returned in the response body;
a larger one is stored in S3 and answered with a presigned URL (the TESScut routes
redirect to it with 303, which astroquery and requests follow). That keeps every
response under API Gateway's 10 MB payload limit whatever the cutout size. Every
result is stored under ``results_prefix`` keyed by the normalised request and the ETags
of the cubes it read, so repeating a request reads no cube bytes and a re-ingested cube
(new ETag) can never serve a stale result.
"""
from __future__ import annotations

import io
import threading
from contextlib import contextmanager
from typing import Iterator
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import astropy.units as u
from astropy.io import fits

from ..cutout import cutout
from ..errors import CubecutError, CutoutSizeError, ObjectNotFoundError, OutsideCubeError
from ..storage import Location, ReadStats, get_bytes, put_bytes, s3_client
from .catalog import CubeCatalog, CubeEntry
from .tesscut import CutoutRequest, SectorRequest, member_name, sector_entry

#: Bodies up to this size are returned inline: base64 adds a third, and Lambda's
#: synchronous response limit is 6 MB.
INLINE_LIMIT = 4 * 1024 * 1024
#: Cube bytes one request may read (pixels x frames x 8 B summed over cubes): far above
#: TESScut's limits, sized so one Lambda (10 GB) builds the result in memory.
MAX_REQUEST_BYTES = 2 * 1024**3
#: TESS's nominal pixel scale, to estimate the pixel size of angular cutouts.
_TESS_PIXEL = 21.0 * u.arcsec


class ServiceBusyError(CubecutError):
    """Too many cutout computations at once in this process (answer 503 + Retry-After)."""


@dataclass
class Delivery:
    """A finished result: inline bytes, or the S3 URL of the stored object, or no data."""

    members: list[str]
    body: bytes | None = None
    url: str | None = None
    size: int = 0
    cached: bool = False
    message: str | None = None
    reads: dict = field(default_factory=dict)


def presign(url: str, expires: int, filename: str | None = None) -> str:
    """A SigV4 presigned GET URL for ``s3://bucket/key`` valid for ``expires`` seconds."""
    location = Location.parse(url)
    params = {"Bucket": location.bucket, "Key": location.key}
    if filename:
        params["ResponseContentDisposition"] = f'attachment; filename="{filename}"'
    return s3_client().generate_presigned_url("get_object", Params=params, ExpiresIn=int(expires))


def _object_size(url: str) -> int | None:
    """Size of a stored result, or None if there is none (one HEAD request)."""
    location = Location.parse(url)
    try:
        return int(s3_client().head_object(Bucket=location.bucket, Key=location.key)["ContentLength"])
    except Exception:  # noqa: BLE001 - any failure means "compute it again"
        return None


def hdul_bytes(hdul: fits.HDUList) -> bytes:
    buf = io.BytesIO()
    hdul.writeto(buf)
    return buf.getvalue()


class CutoutService:
    """Cutouts from the cubes of ``catalog``; results stored under ``results_prefix``."""

    def __init__(self, catalog: CubeCatalog, results_prefix: str, *, inline_limit: int = INLINE_LIMIT,
                 max_concurrent: int = 4, max_request_bytes: int = MAX_REQUEST_BYTES) -> None:
        self.catalog = catalog
        self.results_prefix = results_prefix if results_prefix.endswith("/") else results_prefix + "/"
        self.inline_limit = inline_limit
        self.max_request_bytes = max_request_bytes
        self._slots = threading.BoundedSemaphore(max_concurrent)

    # -- TESScut ------------------------------------------------------------------------
    def sectors(self, request: SectorRequest) -> dict:
        """The ``sector`` endpoint's JSON: ingested cubes covering the cone."""
        entries = self.catalog.covering(request.coord, request.radius_deg, product=request.product)
        return {"results": [sector_entry(e.index.sector, e.index.camera, e.index.ccd, e.index.product)
                            for e in entries]}

    def astrocut(self, request: CutoutRequest) -> Delivery:
        """The ``astrocut`` endpoint: a zip with one TPF per covering cube."""
        entries = self.catalog.covering(request.coord, 0.0, product=request.product, sectors=request.sectors)
        if not entries:
            where = f"ra={request.coord.ra.deg:.6f}, dec={request.coord.dec.deg:.6f}"
            return Delivery([], message=f"No data found for {where}" +
                            (f" in sector(s) {sorted(request.sectors)}" if request.sectors else ""))
        self._check_budget(request, entries)
        key = request.cache_key([e.index_etag or e.index.cube_etag or e.url for e in entries])
        result_url = f"{self.results_prefix}tesscut/{key}.zip"
        cached = self._cached(result_url)
        if cached is not None:
            return cached
        with self._slot():
            stats = ReadStats()
            with ThreadPoolExecutor(max_workers=min(8, len(entries))) as pool:
                cut = list(pool.map(lambda e: self._cut_one(e, request, stats), entries))
            cut = [c for c in cut if c is not None]
            if not cut:
                return Delivery([], message="The position falls off the image of every matching cube")
            body = _zip(cut)
        return self._store(result_url, body, [name for name, _ in cut], stats)

    def _cut_one(self, entry: CubeEntry, request: CutoutRequest, stats: ReadStats) -> tuple[str, bytes] | None:
        try:
            (hdul,) = cutout(entry.url, request.coord, request.size, stats=stats)
        except OutsideCubeError:
            return None
        ny, nx = hdul["APERTURE"].data.shape
        name = member_name(entry.sector_name, request.coord.ra.deg, request.coord.dec.deg, nx, ny)
        return name, hdul_bytes(hdul)

    def _check_budget(self, request: CutoutRequest, entries: list[CubeEntry]) -> None:
        pixels = 1.0
        for extent in request.size:
            pixels *= extent if isinstance(extent, int) else float((extent / _TESS_PIXEL).decompose()) + 1
        total = sum(pixels * e.index.nt * 8 for e in entries)
        if total > self.max_request_bytes:
            raise CutoutSizeError(f"this request would read {total / 1e9:.1f} GB of cube data; the limit is "
                                  f"{self.max_request_bytes / 1e9:.1f} GB: ask for fewer sectors or a smaller size")

    # -- delivery -------------------------------------------------------------------------
    @contextmanager
    def _slot(self) -> Iterator[None]:
        if not self._slots.acquire(blocking=False):
            raise ServiceBusyError("too many cutouts in progress; retry shortly")
        try:
            yield
        finally:
            self._slots.release()

    def _cached(self, url: str) -> Delivery | None:
        size = _object_size(url)
        if size is None:
            return None
        if size > self.inline_limit:
            return Delivery([], url=url, size=size, cached=True)
        try:
            body, _ = get_bytes(url)
        except ObjectNotFoundError:
            return None
        with zipfile.ZipFile(io.BytesIO(body)) as archive:
            members = archive.namelist()
        return Delivery(members, body=body, url=url, size=size, cached=True)

    def _store(self, url: str, body: bytes, members: list[str], stats: ReadStats) -> Delivery:
        put_bytes(url, body, "application/zip")
        inline = body if len(body) <= self.inline_limit else None
        return Delivery(members, body=inline, url=url, size=len(body), reads=stats.as_dict())


def _zip(members: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for name, data in members:
            archive.writestr(name, data)
    return buf.getvalue()
