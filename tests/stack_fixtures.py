"""One local stack serving three overlapping synthetic cubes of three sectors.

The TESScut API tests share it (module scope: one stack per test module that asks for
``tesscut_sky``). The cubes are crops from FFI pixel (0, 0) of sectors 62, 89 and 2,
camera 4, whose real tesswcs footprints overlap near RA 132.5, Dec -69.2 (found by
scanning every sector/camera/CCD pair of sectors 1-100 with tesswcs; the crops below put
:data:`SHARED` at least 15 pixels inside each of them). Each synthetic sector has its own
random star field, so a star is only in the cube it was injected into.
"""
from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator
from urllib.parse import urlsplit

import numpy as np
import pytest
from astropy.table import Table

from cubecut.cutout import clear_cache
from cubecut.ingest.run import ingest
from cubecut.synth import make_sector, star_catalog
from cubecut_infra.local.serving import BackgroundServer
from cubecut_infra.local.stack import LocalStack

#: ``(sector, camera, ccd, (rows, cols))`` of the three cubes.
CUBES = ((62, 4, 1, (128, 128)), (89, 4, 1, (128, 128)), (2, 4, 3, (144, 144)))
#: On all three cubes: 0-based pixel (59.0, 79.0) of s62, (86.5, 43.5) of s89, (127.9, 126.1) of s2.
SHARED = (132.52523733468394, -69.23367664696869)
FRAMES = 30
SEED = 6
BUCKET = "cubecut-tesscut-tests"
#: First science column of a SPOC FFI (0-based); columns before it are collateral.
SCIENCE_COL0 = 44


@dataclass(frozen=True)
class Star:
    """An injected star: sky position and where it lies on its cube (0-based pixels)."""

    sector_name: str
    sector: int
    ra: float
    dec: float
    col: float
    row: float
    flux: float


@dataclass
class TesscutSky:
    """The running stack, the resolver proxy in front of it, and what was ingested."""

    stack: LocalStack
    proxy: ResolverProxy
    catalogs: dict[str, Table]

    @property
    def api_url(self) -> str:
        return self.stack.api_url

    @property
    def sector_names(self) -> list[str]:
        return sorted(self.catalogs)

    def bright_star(self, sector_name: str, margin: int = 8) -> Star:
        """The brightest star of a cube at least ``margin`` pixels inside its science pixels
        with no star a tenth as bright within 3 pixels."""
        cat = self.catalogs[sector_name]
        rows, cols = next(shape for s, c, d, shape in CUBES if sector_name == f"tess-s{s:04d}-{c}-{d}")
        inside = ((cat["col"] >= SCIENCE_COL0 + margin) & (cat["col"] < cols - margin)
                  & (cat["row"] >= margin) & (cat["row"] < rows - margin))
        for i in np.argsort(-np.asarray(cat["flux"])):
            if not inside[i]:
                continue
            near = np.hypot(cat["col"] - cat["col"][i], cat["row"] - cat["row"][i]) < 3
            if (np.asarray(cat["flux"])[near] > 0.1 * cat["flux"][i]).sum() == 1:
                row = cat[i]
                return Star(sector_name, int(sector_name[6:10]), float(row["ra"]), float(row["dec"]),
                            float(row["col"]), float(row["row"]), float(row["flux"]))
        raise LookupError(f"no isolated bright star on {sector_name}")


class LoopbackServer(BackgroundServer):
    """A small threaded HTTP server on 127.0.0.1 for test stand-ins of outside services.

    Subclasses implement ``answer(method, path) -> (status, content type, body)``."""

    def __init__(self, name: str) -> None:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                status, kind, body = server.answer("GET", self.path)
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        super().__init__(ThreadingHTTPServer(("127.0.0.1", 0), Handler), name)

    def answer(self, method: str, path: str) -> tuple[int, str, bytes]:
        raise NotImplementedError

    @property
    def url(self) -> str:
        return self.endpoint


class ResolverProxy(LoopbackServer):
    """A forward HTTP proxy on 127.0.0.1 for the one host astroquery does not take from its
    configuration: SANTA (``http://mastresolver.stsci.edu/Santa-war/query``), sent on to the
    cubecut API. Requests for any other host are refused (403), so nothing leaves the machine.
    Clients use it through the standard ``HTTP_PROXY`` variable (with ``NO_PROXY=127.0.0.1``).
    """

    HOST = "mastresolver.stsci.edu"

    def __init__(self, api_url: str) -> None:
        self.api_url = api_url
        self.forwarded: list[str] = []
        super().__init__("santa-proxy")

    def answer(self, method: str, path: str) -> tuple[int, str, bytes]:
        target = urlsplit(path)
        if target.hostname != self.HOST:
            return 403, "text/plain", f"this proxy only forwards {self.HOST}".encode()
        self.forwarded.append(path)
        url = f"{self.api_url}{target.path}" + (f"?{target.query}" if target.query else "")
        try:
            with urllib.request.urlopen(url, timeout=30) as answer:
                return answer.status, answer.headers["Content-Type"] or "application/octet-stream", answer.read()
        except urllib.error.HTTPError as error:
            return error.code, error.headers["Content-Type"] or "application/octet-stream", error.read()


def _make_cube(workdir: Path, bucket: str, sector: int, camera: int, ccd: int,
               shape: tuple[int, int]) -> tuple[str, Table]:
    ffis = make_sector(workdir / f"s{sector}", sector=sector, camera=camera, ccd=ccd, frames=FRAMES,
                       shape=shape, seed=SEED)
    ingest([str(p) for p in ffis], f"s3://{bucket}/cubes/", workers=2)
    name = f"tess-s{sector:04d}-{camera}-{ccd}"
    return name, star_catalog(sector=sector, camera=camera, ccd=ccd, shape=shape, seed=SEED)


def _forget_process_state() -> None:
    """Drop what this process cached about another stack (clients, services, indexes)."""
    from cubecut.storage import reset_clients

    reset_clients()
    clear_cache()


@pytest.fixture(scope="module")
def tesscut_sky(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TesscutSky]:
    """Start one LocalStack, ingest the three cubes, yield; restore the environment after."""
    saved = dict(os.environ)
    workdir = tmp_path_factory.mktemp("tesscut-ffis")
    stack = LocalStack(bucket=BUCKET)
    proxy = None
    try:
        stack.start()
        proxy = ResolverProxy(stack.api_url)
        with ThreadPoolExecutor(max_workers=len(CUBES)) as pool:
            made = list(pool.map(lambda spec: _make_cube(workdir, BUCKET, *spec), CUBES))
        yield TesscutSky(stack, proxy, dict(made))
    finally:
        if proxy is not None:
            proxy.stop()
        stack.stop()
        os.environ.clear()
        os.environ.update(saved)
        _forget_process_state()


def wait_for_json(s3, bucket: str, key: str, timeout: float = 120.0) -> dict:
    """The JSON object at ``key`` once it exists (e.g. a ``manifest.error.json`` the stack writes)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            return json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        except s3.exceptions.NoSuchKey:
            time.sleep(0.2)
    raise AssertionError(f"no {key} within {timeout} s")
