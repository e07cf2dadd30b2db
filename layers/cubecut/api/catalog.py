"""Which cubes exist and which of them cover a sky position.

The catalog is the cube prefix itself: every ``*.index.json`` sidecar under it is a cube.
A cube written there by ``cubecut ingest`` or by the state machine is therefore served
with no registration step. One LIST per ``ttl`` seconds finds new, replaced (new ETag)
and removed cubes; only changed sidecars are fetched again, so a warm process makes no
metadata reads at all between refreshes.
"""
from __future__ import annotations

import logging
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
from astropy.coordinates import SkyCoord
from astropy.wcs import WCS

from ..cube.index import INDEX_SUFFIX, CubeIndex
from ..cutout.geometry import ffi_wcs
from ..errors import NotACubeError, ObjectNotFoundError
from ..storage import Location, get_bytes, s3_client
from .tesscut import sector_name

logger = logging.getLogger(__name__)

#: TESS's field of view per CCD is ~12 deg across; beyond this separation from a CCD's
#: centre a position cannot be on it (and TAN projections stop being meaningful).
_MAX_CENTRE_SEPARATION_DEG = 15.0


@dataclass
class CubeEntry:
    """One cube known to the catalog."""

    url: str
    index_etag: str | None
    index: CubeIndex

    @property
    def sector_name(self) -> str:
        """TESScut's name of the cube (``tess-s0001-4-2``, or ``tica-...``)."""
        return sector_name(self.index.sector, self.index.camera, self.index.ccd, self.index.product)

    @property
    def wcs(self) -> WCS:
        """The cube's FFI WCS (cached per thread by ffi_wcs; WCS objects are not shared
        between the threads serving requests)."""
        return ffi_wcs(self.index)

    @cached_property
    def centre(self) -> SkyCoord:
        ra, dec = self.wcs.all_pix2world([[self.index.ncols / 2 - 0.5, self.index.nrows / 2 - 0.5]], 0)[0]
        return SkyCoord(ra, dec, unit="deg")

    def covers(self, coord: SkyCoord, radius_deg: float = 0.0) -> bool:
        """True if a circle of ``radius_deg`` around ``coord`` touches the cube's pixels.

        Pixel ``i`` spans ``[i - 0.5, i + 0.5)`` (0-based), so the image spans
        ``[-0.5, ncols - 0.5)`` x ``[-0.5, nrows - 0.5)``.
        """
        try:
            centre = self.centre
        except NotACubeError:  # an unusable WCS covers nothing; other cubes still answer
            return False
        if coord.separation(centre).deg > _MAX_CENTRE_SEPARATION_DEG + radius_deg:
            return False
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                x, y = self.wcs.all_world2pix([[coord.ra.deg, coord.dec.deg]], 0, quiet=True)[0]
            except Exception:  # noqa: BLE001 - a position the SIP inverse cannot reach is not on the CCD
                return False
        if not (np.isfinite(x) and np.isfinite(y)):
            return False
        scale_deg = float(np.mean(np.abs(np.linalg.eigvals(self.wcs.pixel_scale_matrix))))
        margin = radius_deg / scale_deg
        dx = max(-0.5 - x, 0.0, x - (self.index.ncols - 0.5))
        dy = max(-0.5 - y, 0.0, y - (self.index.nrows - 0.5))
        return bool(np.hypot(dx, dy) <= margin) if margin > 0 else (dx == 0 and dy == 0)


class CubeCatalog:
    """The cubes under ``prefix`` (``s3://bucket/cubes/`` or a local folder)."""

    def __init__(self, prefix: str, ttl: float = 30.0) -> None:
        self.prefix = prefix if prefix.endswith("/") else prefix + "/"
        self.ttl = ttl
        self._entries: dict[str, CubeEntry] = {}
        self._listed_at = -float("inf")
        self._lock = threading.Lock()

    def _list_sidecars(self) -> dict[str, str | None]:
        location = Location.parse(self.prefix)
        found: dict[str, str | None] = {}
        if location.is_s3:
            paginator = s3_client().get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=location.bucket, Prefix=location.key):
                for item in page.get("Contents", []):
                    if item["Key"].endswith(INDEX_SUFFIX):
                        found[f"s3://{location.bucket}/{item['Key']}"] = item.get("ETag")
        else:
            for path in Path(location.key).glob(f"*{INDEX_SUFFIX}"):
                found[str(path)] = f"{path.stat().st_mtime_ns:x}"
        return found

    def refresh(self, force: bool = False) -> None:
        """Re-list the prefix if the listing is older than ``ttl`` (or ``force``)."""
        with self._lock:
            if not force and time.monotonic() - self._listed_at < self.ttl:
                return
            sidecars = self._list_sidecars()
            stale = [url for url, etag in sidecars.items()
                     if url not in self._entries or self._entries[url].index_etag != etag]
            with ThreadPoolExecutor(max_workers=8) as pool:
                loaded = list(pool.map(_load_sidecar, stale))
            for url, loaded_index in zip(stale, loaded):
                if loaded_index is None:
                    self._entries.pop(url, None)
                    continue
                index, etag = loaded_index
                self._entries[url] = CubeEntry(url[: -len(INDEX_SUFFIX)], sidecars[url] or etag, index)
            for url in set(self._entries) - set(sidecars):
                del self._entries[url]
            self._listed_at = time.monotonic()

    def entries(self) -> list[CubeEntry]:
        """All known cubes, sorted by sector, camera, CCD."""
        self.refresh()
        return sorted(self._entries.values(), key=lambda e: (e.index.sector, e.index.camera, e.index.ccd, e.url))

    def covering(self, coord: SkyCoord, radius_deg: float = 0.0, *, product: str | None = None,
                 sectors: set[int] | None = None) -> list[CubeEntry]:
        """The cubes whose pixels a circle around ``coord`` touches, optionally filtered."""
        return [e for e in self.entries()
                if (product is None or e.index.product == product)
                and (sectors is None or e.index.sector in sectors)
                and e.covers(coord, radius_deg)]


def _load_sidecar(url: str) -> tuple[CubeIndex, str | None] | None:
    """A sidecar's index and ETag, or None if it vanished or is unreadable: one broken
    sidecar must not take the whole catalog (and every request) down with it."""
    try:
        data, etag = get_bytes(url)
        return CubeIndex.from_json(data), etag
    except (ObjectNotFoundError, ValueError, TypeError, KeyError) as exc:
        logger.warning("skipping cube index %s: %s: %s", url, type(exc).__name__, exc)
        return None
