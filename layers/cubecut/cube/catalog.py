"""Which cubes exist and which of them cover a sky position.

The catalog is the cube prefix itself: every ``*.index.json`` sidecar under it is a cube.
A cube written there by ``cubecut ingest`` or by the state machine is therefore served
with no registration step. One LIST per ``ttl`` seconds finds new, replaced (new ETag)
and removed cubes; only changed sidecars are fetched again, so a warm process makes no
metadata reads at all between refreshes.

The same LIST gives each cube's ETag, so a sidecar that does not describe the cube beside
it (a writer died between committing the cube and publishing its index) is detected at
once: that cube's index is rebuilt from the cube itself (docs/architecture.md,
"Consistency model"). Every index the catalog holds is also handed to the cutout engine's
index cache, so a re-ingested cube (new footprint, new frames) is cut with its new index.
"""
from __future__ import annotations

import logging
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from time import monotonic  # the catalog's clock: tests move it instead of sleeping
from typing import TYPE_CHECKING, Iterable

import numpy as np

from .index import INDEX_SUFFIX, CubeIndex
from .sidecar import describes, read_sidecar
from ..errors import NotACubeError, StorageError
from ..storage import Location, carrying_deadlines, list_etags

if TYPE_CHECKING:  # astropy's coordinates and WCS load on first use, not at a handler's import
    from astropy.coordinates import SkyCoord
    from astropy.wcs import WCS

logger = logging.getLogger(__name__)

#: TESS's field of view per CCD is ~12 deg across; beyond this separation from a CCD's
#: centre a position cannot be on it (and TAN projections stop being meaningful).
MAX_CENTRE_SEPARATION_DEG = 15.0


@dataclass
class CubeEntry:
    """One cube known to the catalog: its index and the (sidecar, cube) versions it is from."""

    url: str
    index_etag: str | None
    index: CubeIndex
    cube_etag: str | None = None

    @property
    def sector_name(self) -> str:
        """TESScut's name of the cube (``tess-s0001-4-2``, or ``tica-...``)."""
        return self.index.sector_name

    @property
    def wcs(self) -> WCS:
        """The cube's FFI WCS (cached per thread by ffi_wcs; WCS objects are not shared
        between the threads serving requests)."""
        from ..cutout.geometry import ffi_wcs

        return ffi_wcs(self.index)

    @cached_property
    def centre(self) -> SkyCoord:
        from astropy.coordinates import SkyCoord

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
        if coord.separation(centre).deg > MAX_CENTRE_SEPARATION_DEG + radius_deg:
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
        self._chosen: list[CubeEntry] = []
        self._ignored: dict[str, list[str]] = {}
        self._listed_at = -float("inf")
        self._lock = threading.Lock()

    def refresh(self, force: bool = False) -> None:
        """Re-list the prefix if the listing is older than ``ttl`` (or ``force``)."""
        with self._lock:
            if not force and monotonic() - self._listed_at < self.ttl:
                return
            objects = list_etags(self.prefix)
            # {sidecar url: (sidecar ETag, cube ETag)} of each sidecar whose cube is listed
            cubes = {url: objects.get(url[: -len(INDEX_SUFFIX)]) for url in objects if url.endswith(INDEX_SUFFIX)}
            listing = {url: (objects[url], cube_etag) for url, cube_etag in cubes.items() if cube_etag is not None}
            stale = [url for url, (sidecar_etag, cube_etag) in listing.items()
                     if url not in self._entries or self._entries[url].index_etag != sidecar_etag
                     or self._entries[url].cube_etag != cube_etag]
            with ThreadPoolExecutor(max_workers=8) as pool:
                loaded = list(pool.map(carrying_deadlines(_load_entry), stale, [listing[url][1] for url in stale]))
            from ..cube.index_cache import remember  # astropy.io.fits: with the first listing

            for url, index in zip(stale, loaded):
                if index is None:
                    self._entries.pop(url, None)
                    continue
                sidecar_etag, cube_etag = listing[url]
                entry = CubeEntry(url[: -len(INDEX_SUFFIX)], sidecar_etag, index, cube_etag)
                self._entries[url] = entry
                remember(entry.url, index)
            for url in set(self._entries) - set(listing):
                del self._entries[url]
            chosen, ignored = choose_cubes(self._entries.values(), self.prefix)
            for url, others in ignored.items():
                if self._ignored.get(url) != others:  # said once per change, not per request
                    logger.warning("several cubes of one CCD: serving %s, ignoring %s", url, ", ".join(others))
            self._chosen = sorted(chosen, key=lambda e: (e.index.sector, e.index.camera, e.index.ccd, e.url))
            self._ignored = ignored
            self._listed_at = monotonic()

    def entries(self) -> list[CubeEntry]:
        """The cubes served, sorted by sector, camera, CCD: one per (product, sector, camera,
        CCD), chosen by :func:`choose_cubes` (the others are logged)."""
        self.refresh()
        return list(self._chosen)

    def covering(self, coord: SkyCoord, radius_deg: float = 0.0, *, product: str | None = None,
                 sectors: set[int] | None = None) -> list[CubeEntry]:
        """The cubes whose pixels a circle around ``coord`` touches, optionally filtered."""
        return [e for e in self.entries()
                if (product is None or e.index.product == product)
                and (sectors is None or e.index.sector in sectors)
                and e.covers(coord, radius_deg)]


def choose_cubes(entries: Iterable[CubeEntry], prefix: str) -> tuple[list[CubeEntry], dict[str, list[str]]]:
    """One cube per (product, sector, camera, CCD), and ``{chosen URL: [the others]}``.

    Of several cubes of one CCD (e.g. one ingested under another name), the one at
    ``prefix`` + TESScut's name (``tess-s0001-1-1-cube.fits``) is served, else the first URL in
    sort order: the choice depends only on the URLs, never on listing order.
    """
    groups: dict[tuple, list[CubeEntry]] = {}
    for entry in entries:
        index = entry.index
        groups.setdefault((index.product, index.sector, index.camera, index.ccd), []).append(entry)
    chosen: list[CubeEntry] = []
    ignored: dict[str, list[str]] = {}
    for group in groups.values():
        canonical = Location.parse(f"{prefix}{group[0].sector_name}-cube.fits").url
        group.sort(key=lambda e: (e.url != canonical, e.url))
        chosen.append(group[0])
        if len(group) > 1:
            ignored[group[0].url] = [e.url for e in group[1:]]
    return chosen, ignored


def _load_entry(sidecar_url: str, cube_etag: str | None) -> CubeIndex | None:
    """The index of the cube beside ``sidecar_url``: its sidecar's if that describes the
    listed cube version ``cube_etag``, else rebuilt from the cube; None if neither can be
    read: one broken cube must not take the whole catalog (and every request) down."""
    from ..cube.index_cache import index_from_cube

    cube = Location.parse(sidecar_url[: -len(INDEX_SUFFIX)])
    try:
        index, _ = read_sidecar(cube)
        if index is not None and (index.cube_etag is None or describes(index, cube_etag)):
            return index
        logger.warning("the index sidecar of %s does not describe the cube (version %s): rebuilding it from "
                       "the cube", cube.url, cube_etag)
        return index_from_cube(cube)
    except (StorageError, NotACubeError, ValueError, TypeError, KeyError) as exc:
        logger.warning("skipping cube %s: %s: %s", cube.url, type(exc).__name__, exc)
        return None
