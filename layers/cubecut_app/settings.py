"""The API's configuration: one typed, frozen object built at the edge from the environment.

The handler (``functions/api.py``) and the local stack build :class:`AppSettings` with
:meth:`AppSettings.from_env` and hand it to the app with each request; nothing below it
reads the environment. Each field is read from the variable in its metadata: the ones
``template.yaml`` sets on the API function (tests/library/test_layering.py checks that the two
lists are the same).
"""
from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields
from functools import lru_cache
from typing import Any, Callable, Mapping

from cubecut.cube.catalog import CubeCatalog
from cubecut.tesscut.service import (IN_MEMORY_BYTES_PER_PIXEL_FRAME, MAX_CONCURRENT, MAX_PIXEL_FRAMES, MAX_WORK_BYTES,
                                     CutoutService)

#: The bulk Plan's default target cap (``cubecut.bulk.plan.MAX_TARGETS``, not imported here:
#: it would load astropy at the handler's import; tests/app/test_settings.py checks they agree).
BULK_MAX_TARGETS = 250_000
#: A bulk job's cap in pixel-frames when the API starts it (template.yaml's BulkMaxPixelFrames
#: default: ~42 times a request's budget; the CLI's own jobs default to cubecut.bulk.plan's).
BULK_MAX_PIXEL_FRAMES = 5_000_000_000
#: Bounds of a presigned URL's lifetime (seconds): one minute, and SigV4's 7 days.
MIN_PRESIGN_S, MAX_PRESIGN_S = 60, 7 * 24 * 3600


def _urls(text: str) -> tuple[str, ...]:
    return tuple(url.strip() for url in text.split(",") if url.strip())


def _true(text: str) -> bool:
    return text.strip().lower() == "true"


def _env(name: str, parse: Callable[[str], Any] = str) -> dict[str, Any]:
    """A field's metadata: the variable it is read from, and how its text is parsed."""
    return {"env": name, "parse": parse}


@dataclass(frozen=True)
class AppSettings:
    """What the API runs with; a field's default is used when its variable is unset."""

    #: The data bucket (cubes and results).
    bucket: str = field(metadata=_env("CUBECUT_BUCKET"))
    #: Key prefix of the cubes (the catalog is every sidecar under it).
    cube_prefix: str = field(default="cubes/", metadata=_env("CUBECUT_CUBE_PREFIX"))
    #: Key prefix of stored results (zips, TPFs, pictures).
    results_prefix: str = field(default="results/", metadata=_env("CUBECUT_RESULTS_PREFIX"))
    #: Seconds between two listings of the cube prefix.
    catalog_ttl: float = field(default=30.0, metadata=_env("CUBECUT_CATALOG_TTL", float))
    #: Cutout computations at once per process before answering 503.
    max_concurrent: int = field(default=MAX_CONCURRENT, metadata=_env("CUBECUT_MAX_CONCURRENT", int))
    #: Pixels x frames one request may cut.
    max_pixel_frames: int = field(default=MAX_PIXEL_FRAMES, metadata=_env("CUBECUT_MAX_PIXEL_FRAMES", int))
    #: Bytes of memory the process's cutouts may hold at once (each request charged its estimate).
    max_work_bytes: int = field(default=MAX_WORK_BYTES, metadata=_env("CUBECUT_MAX_WORK_BYTES", int))
    #: Lifetime of presigned URLs in seconds, clamped to [MIN_PRESIGN_S, MAX_PRESIGN_S].
    presign_expiry: int = field(default=3600, metadata=_env("CUBECUT_PRESIGN_EXPIRY", int))
    #: The bulk state machine's ARN (empty: no bulk jobs; ``POST /v1/bulk`` answers 503).
    bulk_state_machine: str = field(default="", metadata=_env("CUBECUT_BULK_JOBS_STATE_MACHINE_ARN"))
    #: Most usable catalog rows one bulk job may have (the bulk Plan's cap, one template parameter).
    bulk_max_targets: int = field(default=BULK_MAX_TARGETS, metadata=_env("CUBECUT_BULK_MAX_TARGETS", int))
    #: Most pixel-frames (columns x rows x frames, summed over its cutouts) one bulk job may
    #: cut (the bulk Plan's cap, one template parameter); each cutout is within
    #: :attr:`bulk_cutout_pixel_frames` and ``models.MAX_BULK_SIDE`` pixels per side.
    bulk_max_pixel_frames: int = field(default=BULK_MAX_PIXEL_FRAMES,
                                       metadata=_env("CUBECUT_BULK_MAX_PIXEL_FRAMES", int))
    #: Whether anonymous callers may start bulk jobs (RequireAuth none: every caller is).
    bulk_anonymous: bool = field(default=False, metadata=_env("CUBECUT_BULK_ANONYMOUS", _true))
    #: Bulk jobs running at once, in all and per known caller, above which POST /v1/bulk answers 429.
    bulk_max_in_flight: int = field(default=10, metadata=_env("CUBECUT_BULK_MAX_IN_FLIGHT", int))
    bulk_max_per_caller: int = field(default=2, metadata=_env("CUBECUT_BULK_MAX_PER_CALLER", int))
    #: Sesame mirrors for names (comma-separated in the environment); empty: astropy's.
    sesame_urls: tuple[str, ...] = field(default=(), metadata=_env("CUBECUT_SESAME_URLS", _urls))

    def __post_init__(self) -> None:
        object.__setattr__(self, "presign_expiry", max(MIN_PRESIGN_S, min(int(self.presign_expiry), MAX_PRESIGN_S)))

    @property
    def bulk_cutout_pixel_frames(self) -> int:
        """Most pixel-frames of one cutout of a bulk job the API starts: a bulk worker builds
        its TPFs whole in memory, so what ``max_work_bytes`` holds of such a cutout
        (``IN_MEMORY_BYTES_PER_PIXEL_FRAME`` each), within ``max_pixel_frames``."""
        return min(self.max_pixel_frames, self.max_work_bytes // IN_MEMORY_BYTES_PER_PIXEL_FRAME)

    @property
    def results_root(self) -> str:
        """``s3://bucket/results prefix``: where results (zips, TPFs, bulk jobs) are stored."""
        return f"s3://{self.bucket}/{self.results_prefix}"

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> "AppSettings":
        """Settings from ``environ`` (``os.environ`` at the edge); KeyError if CUBECUT_BUCKET is unset."""
        missing = [spec.metadata["env"] for spec in fields(cls)
                   if spec.default is MISSING and spec.metadata["env"] not in environ]
        if missing:
            raise KeyError(missing[0])
        values = {spec.name: spec.metadata["parse"](environ[spec.metadata["env"]])
                  for spec in fields(cls) if spec.metadata["env"] in environ}
        return cls(**values)

    @classmethod
    def variables(cls) -> frozenset[str]:
        """The environment variables :meth:`from_env` reads."""
        return frozenset(spec.metadata["env"] for spec in fields(cls))


@lru_cache(maxsize=4)
def cutout_service(settings: AppSettings) -> CutoutService:
    """The service for ``settings``, built on first use (no AWS calls at import / cold start)
    and kept per process: a changed configuration gets its own service."""
    catalog = CubeCatalog(f"s3://{settings.bucket}/{settings.cube_prefix}", ttl=settings.catalog_ttl)
    return CutoutService(catalog, settings.results_root, max_concurrent=settings.max_concurrent,
                         max_pixel_frames=settings.max_pixel_frames, max_work_bytes=settings.max_work_bytes)
