"""The TESScut-compatible API, proved with unmodified astroquery and lightkurve over real HTTP.

The clients run in a subprocess (astroquery reads its server once, at import) whose only
link to cubecut is configuration: ``[mast] server = http://127.0.0.1:PORT`` in
``$XDG_CONFIG_HOME/astropy/astroquery.cfg`` and, for the one MAST host astroquery does not
take from it (the SANTA name resolver), the standard ``HTTP_PROXY`` variable. Everything
else is measured from the outside: response headers, S3 requests, client results.
"""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
import urllib.error
import warnings
import urllib.request
import zipfile
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlparse

import boto3
import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS, FITSFixedWarning
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from cubecut_app.forms import MalformedParamsError, UnsupportedBodyError, collect_params
from cubecut.tesscut.mast import resolve_names
from cubecut.tesscut.service import INLINE_LIMIT, ConcurrencyLimit, ServiceBusyError
from cubecut_app.models import CutoutParams
from cubecut.ingest.run import ingest
from cubecut.storage import s3_client
from cubecut.storage.s3_obstore import ObstoreSource
from cubecut.synth import make_sector, star_catalog
from stack_fixtures import BUCKET, SHARED, TesscutSky, tesscut_sky  # noqa: F401 - the fixture

TESSCUT = "/tesscut/api/v0.1"
#: Far from every test cube (and from every camera 4 field of the test sectors).
NOWHERE = (10.0, 10.0)
#: Big enough over the three test cubes (30 frames each) to exceed the inline limit.
LARGE = 120


# -- helpers ----------------------------------------------------------------------------------
class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def http(method: str, url: str, *, data: bytes | None = None, headers: dict[str, str] | None = None,
         follow: bool = False) -> tuple[int, dict[str, str], bytes]:
    """Status, headers (lower-case names) and body; redirects are not followed unless asked."""
    opener = urllib.request.build_opener() if follow else urllib.request.build_opener(_NoRedirect)
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with opener.open(request, timeout=60) as response:
            return response.status, {k.lower(): v for k, v in response.headers.items()}, response.read()
    except urllib.error.HTTPError as error:
        return error.code, {k.lower(): v for k, v in error.headers.items()}, error.read()


def astrocut(sky: TesscutSky, **query: Any) -> tuple[int, dict[str, str], bytes]:
    return http("GET", f"{sky.api_url}{TESSCUT}/astrocut?{urlencode(query, doseq=True)}")


def server_timing(header: str) -> dict[str, tuple[float, float]]:
    """``{cube: (start, stop)}`` in seconds from a Server-Timing header (``total`` left out)."""
    spans = {}
    for entry in header.split(","):
        name, *fields = (part.strip() for part in entry.split(";"))
        values = dict(field.split("=", 1) for field in fields)
        if name != "total":
            start = float(values["desc"].strip('"').removeprefix("start=")) / 1000
            spans[name] = (start, start + float(values["dur"]) / 1000)
    return spans


class CubeGetCounter:
    """Counts S3 GetObject calls on cube objects made by this process's (the API's) clients."""

    def __init__(self) -> None:
        self.keys: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, params: dict, **_: Any) -> None:
        if params.get("Key", "").endswith("-cube.fits"):
            with self._lock:
                self.keys.append(params["Key"])

    def __enter__(self) -> "CubeGetCounter":
        s3_client().meta.events.register("before-parameter-build.s3.GetObject", self)
        self._obstore_read = ObstoreSource.read  # pixel reads go through obstore, not botocore

        def counted(source: ObstoreSource, start: int, stop: int) -> bytes:
            self({"Key": source.location.key})
            return self._obstore_read(source, start, stop)

        ObstoreSource.read = counted
        return self

    def __exit__(self, *exc: object) -> None:
        s3_client().meta.events.unregister("before-parameter-build.s3.GetObject", self)
        ObstoreSource.read = self._obstore_read


# -- the clients, in a subprocess -------------------------------------------------------------
CLIENT_SCRIPT = textwrap.dedent('''
    import json, sys, traceback, warnings
    import astropy.units as u
    import numpy as np
    from astropy.coordinates import SkyCoord
    from astroquery.exceptions import NoResultsWarning
    from astroquery.mast import Tesscut
    import lightkurve as lk

    args = json.loads(sys.argv[1])
    shared = SkyCoord(*args["shared"], unit="deg")
    star = SkyCoord(args["star"]["ra"], args["star"]["dec"], unit="deg")
    sector = args["star"]["sector"]
    out = {}

    def section(name):
        def run(function):
            try:
                out[name] = function()
            except Exception:
                out[name] = {"error": traceback.format_exc()}
        return run

    @section("sectors")
    def _():
        near = Tesscut.get_sectors(coordinates=shared)
        cone = Tesscut.get_sectors(coordinates=star, radius=args["radius_deg"] * u.deg)
        return {"shared": list(near["sectorName"]), "shared_sector": [int(s) for s in near["sector"]],
                "cone": list(cone["sectorName"])}

    @section("get_cutouts")
    def _():
        found = {}
        for label, size in (("int", 5), ("tuple", (5, 7)), ("quantity", 2 * u.arcmin)):
            hduls = Tesscut.get_cutouts(coordinates=star, size=size, sector=sector)
            found[label] = [{"name": h.filename, "flux": list(h[1].data["FLUX"].shape)} for h in hduls]
        every = Tesscut.get_cutouts(coordinates=shared, size=4)
        found["all_sectors"] = sorted(h.filename for h in every)
        return found

    @section("download_and_lightkurve")
    def _():
        paths = Tesscut.download_cutouts(coordinates=star, size=9, sector=sector, path=args["dir"])
        tpf = lk.read(paths["Local Path"][0])
        lc = tpf.to_lightcurve()
        image = np.nanmedian(tpf.flux.value, axis=0)
        iy, ix = np.unravel_index(np.nanargmax(image), image.shape)
        return {"paths": list(paths["Local Path"]), "shape": list(tpf.shape), "column": int(tpf.column),
                "row": int(tpf.row), "brightest": [int(ix), int(iy)], "cadences": len(lc),
                "finite_flux": bool(np.isfinite(lc.flux.value).all()), "median_flux": float(np.median(lc.flux.value))}

    @section("no_data")
    def _():
        nowhere = SkyCoord(*args["nowhere"], unit="deg")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            cut = Tesscut.get_cutouts(coordinates=nowhere, size=5)
            downloaded = Tesscut.download_cutouts(coordinates=nowhere, size=5, path=args["dir"])
            sectors = Tesscut.get_sectors(coordinates=nowhere)
        return {"cutouts": len(cut), "downloaded": len(downloaded), "sectors": len(sectors),
                "warnings": [[w.category.__name__, str(w.message)] for w in caught
                             if issubclass(w.category, NoResultsWarning)]}

    @section("large")
    def _():
        hduls = Tesscut.get_cutouts(coordinates=shared, size=args["large"])
        return sorted([h.filename, list(h[1].data["FLUX"].shape)] for h in hduls)

    @section("search_tesscut")
    def _():
        every = lk.search_tesscut(star)
        one = lk.search_tesscut(star, sector=sector)
        tpf = one.download(cutout_size=7, download_dir=args["dir"])
        return {"missions": list(every.table["mission"]), "one": list(one.table["mission"]),
                "author": list(one.table["author"]), "shape": list(tpf.shape), "column": int(tpf.column),
                "row": int(tpf.row), "total_flux": float(np.nansum(np.nanmedian(tpf.flux.value, axis=0)))}

    print(json.dumps(out))
''')


def run_clients(sky: TesscutSky, workdir: Path, args: dict) -> dict:
    """Run CLIENT_SCRIPT with cubecut configured as the MAST server; its JSON output."""
    config = workdir / "xdg" / "astropy"
    config.mkdir(parents=True)
    (config / "astroquery.cfg").write_text(f"[mast]\nserver = {sky.api_url}\n")
    (workdir / "home").mkdir()
    env = {**os.environ, "XDG_CONFIG_HOME": str(workdir / "xdg"), "XDG_CACHE_HOME": str(workdir / "cache"),
           "HOME": str(workdir / "home"), "HTTP_PROXY": sky.proxy.url, "http_proxy": sky.proxy.url,
           "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}
    done = subprocess.run([sys.executable, "-c", CLIENT_SCRIPT, json.dumps(args)], env=env, cwd=workdir,
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def clients(tesscut_sky: TesscutSky, tmp_path_factory: pytest.TempPathFactory) -> dict:
    star = tesscut_sky.bright_star("tess-s0062-4-1")
    workdir = tmp_path_factory.mktemp("clients")
    results = run_clients(tesscut_sky, workdir, {
        "shared": SHARED, "star": star.__dict__, "nowhere": NOWHERE, "radius_deg": 0.5, "large": LARGE,
        "dir": str(workdir / "downloads")})
    return {"star": star, **results}


def section(clients: dict, name: str) -> Any:
    result = clients[name]
    assert not (isinstance(result, dict) and "error" in result), result.get("error")
    return result


# -- unmodified clients ---------------------------------------------------------------------
@pytest.mark.slow
def test_astroquery_get_sectors(clients, tesscut_sky):
    sectors = section(clients, "sectors")
    assert sectors["shared"] == tesscut_sky.sector_names
    assert sectors["shared_sector"] == [2, 62, 89]
    assert "tess-s0062-4-1" in sectors["cone"]


@pytest.mark.slow
def test_astroquery_get_cutouts_with_int_tuple_and_quantity_sizes(clients):
    cut, star = section(clients, "get_cutouts"), clients["star"]
    prefix = f"tess-s0062-4-1_{star.ra:.6f}_{star.dec:.6f}"
    assert cut["int"] == [{"name": f"{prefix}_5x5_astrocut.fits", "flux": [30, 5, 5]}]
    # astroquery sizes are (ny, nx): (5, 7) is 7 columns by 5 rows.
    assert cut["tuple"] == [{"name": f"{prefix}_7x5_astrocut.fits", "flux": [30, 5, 7]}]
    # 2 arcmin at TESS's ~20.3 arcsec pixels of this CCD: 6 pixels a side.
    assert cut["quantity"] == [{"name": f"{prefix}_6x6_astrocut.fits", "flux": [30, 6, 6]}]
    assert [name.split("_")[0] for name in cut["all_sectors"]] == ["tess-s0002-4-3", "tess-s0062-4-1",
                                                                     "tess-s0089-4-1"]


@pytest.mark.slow
def test_astroquery_download_then_lightkurve_reads_the_star(clients):
    got, star = section(clients, "download_and_lightkurve"), clients["star"]
    assert len(got["paths"]) == 1 and got["paths"][0].endswith("_9x9_astrocut.fits")
    assert got["shape"] == [30, 9, 9]
    assert got["cadences"] == 30 and got["finite_flux"] and got["median_flux"] > 0
    # tpf.column/row are the 1-based FFI position of the cutout's first pixel.
    brightest_col = got["column"] - 1 + got["brightest"][0]
    brightest_row = got["row"] - 1 + got["brightest"][1]
    assert abs(brightest_col - star.col) <= 1 and abs(brightest_row - star.row) <= 1
    assert abs(got["brightest"][0] - 4) <= 1 and abs(got["brightest"][1] - 4) <= 1, "brightest at the centre"


@pytest.mark.slow
def test_no_data_is_200_msg_and_astroquery_warns(clients):
    got = section(clients, "no_data")
    assert (got["cutouts"], got["downloaded"], got["sectors"]) == (0, 0, 0)
    assert [kind for kind, _ in got["warnings"]] == ["NoResultsWarning"] * 3
    assert got["warnings"][0][1].startswith("No data found for ra=10.000000, dec=10.000000")


@pytest.mark.slow
def test_lightkurve_search_tesscut_download(clients, tesscut_sky):
    got, star = section(clients, "search_tesscut"), clients["star"]
    # Sector 2's footprint also holds this star (the crops overlap on the sky).
    assert got["missions"] == ["TESS Sector 02", "TESS Sector 62"]
    assert got["one"] == ["TESS Sector 62"] and got["author"] == ["TESScut"]
    assert got["shape"] == [30, 7, 7]
    assert (got["column"], got["row"]) == (int(np.round(star.col - 3.5)) + 1, int(np.round(star.row - 3.5)) + 1)
    assert got["total_flux"] > 0.8 * star.flux, "the injected star's light is in the 7x7 cutout"
    assert tesscut_sky.proxy.forwarded, "the name resolver was reached only through the configured proxy"
    assert all("/Santa-war/query?" in url for url in tesscut_sky.proxy.forwarded)


@pytest.mark.slow
def test_large_result_is_a_303_to_a_presigned_url_that_astroquery_follows(clients, tesscut_sky):
    status, headers, body = astrocut(tesscut_sky, ra=SHARED[0], dec=SHARED[1], x=LARGE, y=LARGE)
    assert status == 303 and body == b""
    location = urlparse(headers["location"])
    query = parse_qs(location.query)
    assert location.path.startswith(f"/{BUCKET}/results/tesscut/") and location.path.endswith(".zip")
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"] and query["X-Amz-Expires"] == ["3600"]
    assert "X-Amz-Signature" in query
    status, _, data = http("GET", headers["location"])
    assert status == 200 and len(data) > INLINE_LIMIT
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert len(archive.namelist()) == 3
    print(f"\n[303] {LARGE}x{LARGE} px over 3 cubes x 30 frames: zip of {len(data) / 1e6:.1f} MB via presigned URL")
    expected = sorted([name, [30, LARGE, LARGE]] for name in archive.namelist())
    assert section(clients, "large") == expected


# -- the sector, ffi_wcs, cubes and documentation routes -------------------------------------------
def _wcs(sky: TesscutSky, sector: int, camera: int, ccd: int) -> tuple[WCS, int, int]:
    status, headers, body = http("GET", f"{sky.api_url}{TESSCUT}/ffi_wcs?sector={sector}&camera={camera}&ccd={ccd}")
    assert status == 200 and headers["content-type"] == "application/fits"
    header = fits.Header.fromstring(body[:len(body) - len(body) % 2880].decode("ascii"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)  # astropy fills MJD-OBS from DATE-OBS
        return WCS(header), header["IMAGEW"], header["IMAGEH"]


@pytest.mark.slow
def test_sector_route_answers_in_tesscut_shape_with_cones(tesscut_sky):
    url = f"{tesscut_sky.api_url}{TESSCUT}/sector"
    status, _, body = http("GET", f"{url}?ra={SHARED[0]}&dec={SHARED[1]}&radius=0")
    assert status == 200
    assert json.loads(body) == {"results": [
        {"sectorName": "tess-s0002-4-3", "sector": "0002", "camera": "4", "ccd": "3"},
        {"sectorName": "tess-s0062-4-1", "sector": "0062", "camera": "4", "ccd": "1"},
        {"sectorName": "tess-s0089-4-1", "sector": "0089", "camera": "4", "ccd": "1"}]}
    # Two pixels beyond the last column of s89: out at radius 0, in with a 3-pixel cone.
    wcs, ncols, nrows = _wcs(tesscut_sky, 89, 4, 1)
    ra, dec = wcs.all_pix2world([[ncols + 1.5, nrows / 2]], 0)[0]
    names = []
    for radius in ("0", "3px", "1.1m"):
        status, _, body = http("POST", url, data=urlencode({"ra": ra, "dec": dec, "radius": radius}).encode(),
                               headers={"Content-Type": "application/x-www-form-urlencoded"})
        names.append("tess-s0089-4-1" in [r["sectorName"] for r in json.loads(body)["results"]])
    assert names == [False, True, True]
    status, _, body = http("GET", f"{url}?ra={NOWHERE[0]}&dec={NOWHERE[1]}")
    assert (status, json.loads(body)) == (200, {"results": []})


@pytest.mark.slow
def test_ffi_wcs_and_cube_info(tesscut_sky):
    wcs, ncols, nrows = _wcs(tesscut_sky, 62, 4, 1)
    x, y = wcs.all_world2pix([SHARED], 0)[0]
    assert (ncols, nrows) == (128, 128) and abs(x - 59.0) < 0.05 and abs(y - 79.0) < 0.05
    status, _, body = http("GET", f"{tesscut_sky.api_url}{TESSCUT}/ffi_wcs?sector=61&camera=4&ccd=1")
    assert status == 404 and "msg" in json.loads(body)
    status, _, body = http("GET", f"{tesscut_sky.api_url}{TESSCUT}/cubes")
    cubes = {c["sectorName"]: c for c in json.loads(body)["cubes"]}
    assert status == 200 and set(tesscut_sky.sector_names) <= set(cubes)
    assert cubes["tess-s0002-4-3"]["frames"] == 30 and cubes["tess-s0002-4-3"]["shape"] == [144, 144]


@pytest.mark.slow
def test_openapi_schema_and_swagger_page(tesscut_sky):
    for path in ("/openapi.json", "/swagger?format=json"):
        status, headers, body = http("GET", f"{tesscut_sky.api_url}{path}")
        schema = json.loads(body)
        assert status == 200 and schema["openapi"].startswith("3.")
        assert {f"{TESSCUT}/sector", f"{TESSCUT}/astrocut", f"{TESSCUT}/ffi_wcs", "/api/v0/invoke",
                "/v1/cutouts"} <= set(schema["paths"])
        assert set(schema["paths"][f"{TESSCUT}/astrocut"]) == {"get", "post"}
    status, headers, body = http("GET", f"{tesscut_sky.api_url}/swagger")
    assert status == 200 and headers["content-type"].startswith("text/html") and b"swagger" in body.lower()


# -- cache, concurrency, throttling -----------------------------------------------------------------
def _small_cube(workdir: Path, seed: int) -> tuple[float, float]:
    """(Re-)ingest a 4th, tiny cube (sector 62, camera 1, CCD 1); a star on it."""
    ffis = make_sector(workdir / f"seed{seed}", sector=62, camera=1, ccd=1, frames=12, shape=(40, 96), seed=seed)
    ingest([str(p) for p in ffis], f"s3://{BUCKET}/cubes/")
    stars = star_catalog(sector=62, camera=1, ccd=1, shape=(40, 96), seed=1)
    star = stars[(stars["col"] > 60) & (stars["col"] < 80)][0]
    return float(star["ra"]), float(star["dec"])


@pytest.mark.slow
def test_cache_hit_makes_no_cube_reads_and_a_new_cube_etag_misses(tesscut_sky, tmp_path, monkeypatch):
    from cubecut.cube import catalog

    s3 = boto3.client("s3")
    # This test's own catalog (new settings: a new service), listing again only when its clock
    # is moved past the TTL; the other tests' catalog never sees the moved clock.
    monkeypatch.setenv("CUBECUT_CATALOG_TTL", "60")
    later = [0.0]
    monkeypatch.setattr(catalog, "monotonic", lambda: time.monotonic() + later[0])
    try:
        ra, dec = _small_cube(tmp_path, seed=1)
        later[0] += 3600
        answers = []
        for _ in range(2):
            with CubeGetCounter() as gets:
                status, headers, body = astrocut(tesscut_sky, ra=ra, dec=dec, x=6, sector=62)
            answers.append((status, headers, body, len(gets.keys)))
        (s1, h1, b1, gets1), (s2, h2, b2, gets2) = answers
        assert (s1, s2) == (200, 200) and h1["content-type"] == "application/zip"
        assert h1["x-cubecut-cache"] == "miss" and int(h1["x-cubecut-reads"]) > 0 and gets1 > 0
        assert h2["x-cubecut-cache"] == "hit" and h2["x-cubecut-reads"] == "0" and gets2 == 0
        assert b2 == b1
        print(f"\n[cache] miss: {h1['x-cubecut-reads']} reads ({gets1} cube GETs, {h1['x-cubecut-bytes-read']} B); "
              f"hit: {h2['x-cubecut-reads']} reads ({gets2} cube GETs), identical {len(b2)} B")

        _small_cube(tmp_path, seed=2)  # re-ingested: new pixels, new ETag
        later[0] += 3600
        status, headers, body = astrocut(tesscut_sky, ra=ra, dec=dec, x=6, sector=62)
        assert status == 200 and headers["x-cubecut-cache"] == "miss" and body != b1
    finally:
        for suffix in ("", ".index.json"):
            s3.delete_object(Bucket=BUCKET, Key=f"cubes/tess-s0062-1-1-cube.fits{suffix}")


@pytest.mark.slow
def test_three_sectors_are_cut_concurrently(tesscut_sky):
    started = time.monotonic()
    status, headers, body = astrocut(tesscut_sky, ra=SHARED[0], dec=SHARED[1], x=40, y=40)
    wall = time.monotonic() - started
    assert status == 200 and headers["x-cubecut-cache"] == "miss"
    spans = server_timing(headers["server-timing"])
    assert sorted(spans) == tesscut_sky.sector_names
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        assert len(archive.namelist()) == 3
    # Every cube started before any finished: the three ran at the same time.
    assert max(start for start, _ in spans.values()) < min(stop for _, stop in spans.values())
    per_cube = {name: stop - start for name, (start, stop) in spans.items()}
    served = max(stop for _, stop in spans.values()) - min(start for start, _ in spans.values())
    print(f"\n[concurrency] per cube: " + ", ".join(f"{k} {v:.2f} s" for k, v in per_cube.items())
          + f"; sum {sum(per_cube.values()):.2f} s; cutting took {served:.2f} s; request {wall:.2f} s")


@pytest.mark.slow
def test_over_the_concurrency_cap_is_503_with_retry_after(tesscut_sky, monkeypatch):
    from cubecut_app.settings import cutout_service
    from cubecut_functions import api

    cached = astrocut(tesscut_sky, ra=SHARED[0], dec=SHARED[1], x=3)
    monkeypatch.setenv("CUBECUT_MAX_CONCURRENT", "1")
    service = cutout_service(api.settings())
    assert service.limit.capacity == 1
    with service.limit.slot():
        status, headers, body = astrocut(tesscut_sky, ra=SHARED[0], dec=SHARED[1], x=2, y=3)
        assert status == 503 and headers["retry-after"] == "2"
        assert headers["content-type"] == "application/json" and "retry" in json.loads(body)["msg"]
        again = astrocut(tesscut_sky, ra=SHARED[0], dec=SHARED[1], x=3)
        assert again[0] == 200 and again[1]["x-cubecut-cache"] == "hit" and again[2] == cached[2], \
            "a cached result needs no slot"
    status, headers, _ = astrocut(tesscut_sky, ra=SHARED[0], dec=SHARED[1], x=2, y=3)
    assert status == 200 and headers["x-cubecut-cache"] == "miss"


def test_concurrency_limit_refuses_instead_of_queueing():
    limit = ConcurrencyLimit(2)
    with limit.slot(), limit.slot():
        with pytest.raises(ServiceBusyError):
            with limit.slot():
                pass
    with limit.slot():
        pass


@pytest.mark.slow
def test_inline_limit_measured(tesscut_sky):
    """60x60 px over 3 cubes of 30 frames is returned inline; the 303 threshold is 4 MiB."""
    status, headers, body = astrocut(tesscut_sky, ra=SHARED[0], dec=SHARED[1], x=60, y=60)
    assert status == 200 and headers["content-type"] == "application/zip" and len(body) <= INLINE_LIMIT
    print(f"\n[inline] 60x60 px over 3 cubes x 30 frames: {len(body) / 1e6:.2f} MB zip inline "
          f"(limit {INLINE_LIMIT / 2**20:.0f} MiB)")


# -- malformed requests -------------------------------------------------------------------------------
BAD_REQUESTS: list[tuple[str, str, str, bytes | None, dict[str, str], int]] = [
    # (name, method, path + query, body, headers, status)
    ("missing ra", "GET", f"{TESSCUT}/astrocut?dec=1", None, {}, 400),
    ("missing dec", "GET", f"{TESSCUT}/sector?ra=1", None, {}, 400),
    ("nan ra", "GET", f"{TESSCUT}/astrocut?ra=nan&dec=1", None, {}, 400),
    ("inf dec", "GET", f"{TESSCUT}/sector?ra=1&dec=inf", None, {}, 400),
    ("-inf ra", "GET", f"{TESSCUT}/sector?ra=-inf&dec=1", None, {}, 400),
    ("ra above 360", "GET", f"{TESSCUT}/astrocut?ra=361&dec=1", None, {}, 400),
    ("dec below -90", "GET", f"{TESSCUT}/astrocut?ra=1&dec=-91", None, {}, 400),
    ("ra text", "GET", f"{TESSCUT}/astrocut?ra=abc&dec=1", None, {}, 400),
    ("negative size", "GET", f"{TESSCUT}/astrocut?ra=1&dec=1&x=-5", None, {}, 400),
    ("zero size", "GET", f"{TESSCUT}/astrocut?ra=1&dec=1&x=0&y=0", None, {}, 400),
    ("huge size", "GET", f"{TESSCUT}/astrocut?ra={SHARED[0]}&dec={SHARED[1]}&x=1e9", None, {}, 400),
    ("huge angle", "GET", f"{TESSCUT}/astrocut?ra={SHARED[0]}&dec={SHARED[1]}&x=1e300&units=deg", None, {}, 400),
    ("side above 1000 px", "GET", f"{TESSCUT}/astrocut?ra={SHARED[0]}&dec={SHARED[1]}&x=1200&y=1&sector=2",
     None, {}, 400),
    ("fractional px", "GET", f"{TESSCUT}/astrocut?ra=1&dec=1&x=2.5", None, {}, 400),
    ("size text", "GET", f"{TESSCUT}/astrocut?ra=1&dec=1&x=ten", None, {}, 400),
    ("unknown units", "GET", f"{TESSCUT}/astrocut?ra=1&dec=1&units=furlong", None, {}, 400),
    ("bad product", "GET", f"{TESSCUT}/astrocut?ra=1&dec=1&product=FOO", None, {}, 400),
    ("sector [a", "GET", f"{TESSCUT}/astrocut?ra=1&dec=1&sector=%5Ba", None, {}, 400),
    ("sector 1;2", "GET", f"{TESSCUT}/astrocut?ra=1&dec=1&sector=1%3B2", None, {}, 400),
    ("sector -3", "GET", f"{TESSCUT}/astrocut?ra=1&dec=1&sector=-3", None, {}, 400),
    ("sector huge", "GET", f"{TESSCUT}/astrocut?ra=1&dec=1&sector=99999999999", None, {}, 400),
    ("sector 5000 digits", "GET", f"{TESSCUT}/astrocut?ra=1&dec=1&sector={'9' * 5000}", None, {}, 400),
    ("sector []", "GET", f"{TESSCUT}/astrocut?ra=1&dec=1&sector=%5B%5D", None, {}, 400),
    ("repeated ra", "GET", f"{TESSCUT}/astrocut?ra=1&ra=2&dec=1", None, {}, 400),
    ("repeated radius", "GET", f"{TESSCUT}/sector?ra=1&dec=1&radius=1&radius=2", None, {}, 400),
    ("bad radius", "GET", f"{TESSCUT}/sector?ra=1&dec=1&radius=wide", None, {}, 400),
    ("negative radius", "GET", f"{TESSCUT}/sector?ra=1&dec=1&radius=-1", None, {}, 400),
    ("radius too big", "GET", f"{TESSCUT}/sector?ra=1&dec=1&radius=90d", None, {}, 400),
    ("bad escape", "GET", f"{TESSCUT}/astrocut?ra=%FF&dec=1", None, {}, 400),
    ("ffi_wcs junk", "GET", f"{TESSCUT}/ffi_wcs?sector=x&camera=1&ccd=1", None, {}, 400),
    ("ffi_wcs missing", "GET", f"{TESSCUT}/ffi_wcs?sector=1", None, {}, 400),
    ("PUT", "PUT", f"{TESSCUT}/astrocut?ra=1&dec=1", b"", {}, 405),
    ("DELETE", "DELETE", f"{TESSCUT}/sector", None, {}, 405),
    ("PATCH ffi_wcs", "PATCH", f"{TESSCUT}/ffi_wcs", b"x", {}, 405),
    ("moving target by name only", "GET", f"{TESSCUT}/moving_target/astrocut?obj_id=Ceres", None, {}, 400),
    ("unknown path", "GET", f"{TESSCUT}/moving_target/nowhere", None, {}, 404),
    ("binary form", "POST", f"{TESSCUT}/astrocut", b"\xff\xfe\x00ra=1",
     {"Content-Type": "application/x-www-form-urlencoded"}, 400),
    ("binary octets", "POST", f"{TESSCUT}/astrocut", b"\x00\x01\x02", {"Content-Type": "application/octet-stream"}, 415),
    ("xml body", "POST", f"{TESSCUT}/sector", b"<ra>1</ra>", {"Content-Type": "application/xml"}, 415),
    ("json array", "POST", f"{TESSCUT}/sector", b"[1, 2]", {"Content-Type": "application/json"}, 415),
    ("json nested", "POST", f"{TESSCUT}/sector", b'{"ra": {"a": 1}, "dec": 1}',
     {"Content-Type": "application/json"}, 415),
    ("broken json", "POST", f"{TESSCUT}/astrocut", b'{"ra": ', {"Content-Type": "application/json"}, 400),
    ("too many fields", "GET", f"{TESSCUT}/sector?" + "&".join(f"k{i}=1" for i in range(300)), None, {}, 400),
    ("invoke junk", "POST", "/api/v0/invoke", b"request=%7Bnot", {"Content-Type": "application/x-www-form-urlencoded"},
     400),
    ("invoke unknown service", "POST", "/api/v0/invoke",
     b"request=" + urlencode({"x": json.dumps({"service": "Mast.Nope", "params": {}})}).encode()[2:],
     {"Content-Type": "application/x-www-form-urlencoded"}, 400),
    ("invoke bad position", "POST", "/api/v0/invoke",
     b"request=" + urlencode({"x": json.dumps({"service": "Mast.Caom.Filtered.Position",
                                                "params": {"position": "1, nan, 1", "filters": []}})}).encode()[2:],
     {"Content-Type": "application/x-www-form-urlencoded"}, 400),
    ("unknown column config", "POST", "/portal/Mashup/Mashup.asmx/columnsconfig", b"colConfigId=Mast.Nope",
     {"Content-Type": "application/x-www-form-urlencoded"}, 400),
    ("GET invoke", "GET", "/api/v0/invoke", None, {}, 405),
]


@pytest.mark.slow
@pytest.mark.parametrize("name,method,target,body,headers,expected", BAD_REQUESTS, ids=[r[0] for r in BAD_REQUESTS])
def test_malformed_requests_get_4xx_json(tesscut_sky, name, method, target, body, headers, expected):
    status, answer_headers, answer = http(method, f"{tesscut_sky.api_url}{target}", data=body, headers=headers)
    assert status == expected, answer
    assert answer_headers["content-type"] == "application/json"
    assert isinstance(json.loads(answer)["msg"], str)
    if status == 405:
        assert answer_headers["allow"] in ("GET", "POST", "GET, POST")


_VALUES = st.one_of(
    st.sampled_from(["", " ", "nan", "NaN", "inf", "-inf", "1e999", "-1", "0", "360", "361", "-91", "90.0001",
                     "[a", "1;2", "-3", "99999999999", "[28, 68]", "1,,2", "0x10", "None", "1e9", "5", "px",
                     "arcmin", "d", "SPOC", "tica", "%", "\u00e9", "\x00"]),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(min_value=-10**12, max_value=10**12).map(str),
    st.text(max_size=12))
_KEYS = st.sampled_from(["ra", "dec", "x", "y", "units", "sector", "product", "radius", "camera", "ccd",
                         "request", "colConfigId", "name", "cube", "size", "frame", "stretch", "ephemeris", "junk"])
_PATHS = st.sampled_from([f"{TESSCUT}/sector", f"{TESSCUT}/astrocut", f"{TESSCUT}/ffi_wcs", f"{TESSCUT}/cubes",
                          "/api/v0/invoke", "/portal/Mashup/Mashup.asmx/columnsconfig", "/Santa-war/query",
                          f"{TESSCUT}/moving_target/sector", f"{TESSCUT}/moving_target/astrocut",
                          f"{TESSCUT}/quicklook", "/v1/cutouts", "/v1/quicklook", "/v1/cubes", "/health",
                          f"{TESSCUT}/astrocut/extra"])


@st.composite
def _requests(draw: st.DrawFn) -> tuple[str, str, bytes | None, dict[str, str]]:
    """Junk parameters, half the time after a valid position (NOWHERE: parsed in full, and
    answered without cutting anything), by any method and in any body."""
    valid = [("ra", str(NOWHERE[0])), ("dec", str(NOWHERE[1]))]
    fields = draw(st.sampled_from([[], valid])) + draw(st.lists(st.tuples(_KEYS, _VALUES), max_size=8))
    method = draw(st.sampled_from(["GET", "GET", "POST", "POST", "PUT", "DELETE", "PATCH"]))
    path = draw(_PATHS)
    kind = draw(st.sampled_from(["query", "form", "json", "binary"]))
    if kind == "query" or method == "GET":
        return method, f"{path}?{urlencode(fields)}", None, {}
    if kind == "form":
        return method, path, urlencode(fields).encode(), {"Content-Type": "application/x-www-form-urlencoded"}
    if kind == "json":
        return method, path, json.dumps(dict(fields)).encode(), {"Content-Type": "application/json"}
    return method, path, draw(st.binary(min_size=1, max_size=64)), {
        "Content-Type": draw(st.sampled_from(["application/octet-stream", "application/x-www-form-urlencoded",
                                              "application/json", "text/plain", ""]))}


@pytest.mark.slow
@settings(max_examples=400, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(request=_requests())
def test_fuzzed_requests_never_get_5xx(tesscut_sky, request):
    method, target, body, headers = request
    status, answer_headers, answer = http(method, f"{tesscut_sky.api_url}{target}", data=body, headers=headers)
    event(f"{target.split('?')[0]} -> {status}")
    assert status < 500, (status, answer[:300])
    if status >= 400:
        assert answer_headers["content-type"] == "application/json"
        document = json.loads(answer)
        assert isinstance(document.get("msg", document.get("message")), str)


# -- pure parsing ---------------------------------------------------------------------------------------
def test_collect_params_merges_query_form_and_json():
    form = collect_params("sector=1&ra=2", b"sector=5&dec=3", "application/x-www-form-urlencoded; charset=utf-8")
    assert form == {"sector": ["1", "5"], "ra": ["2"], "dec": ["3"]}
    assert collect_params("", b'{"ra": 1.5, "sector": [1, "2"]}', "application/json") == {
        "ra": ["1.5"], "sector": ["1", "2"]}
    with pytest.raises(UnsupportedBodyError):
        collect_params("", b"ra=1", "text/plain")
    with pytest.raises(UnsupportedBodyError):
        collect_params("", b'{"ra": true}', "application/json")
    with pytest.raises(MalformedParamsError):
        collect_params("ra=%FF", b"", None)


def test_equivalent_requests_share_a_cache_key():
    def key(query: str) -> str:
        return CutoutParams.parse(parse_qs(query, keep_blank_values=True)).request().cache_key(["cube|etag|etag"])

    assert key("ra=10&dec=5&x=5&sector=2&sector=1") == key("dec=5.0&ra=10.0&x=5&y=5&sector=[1, 2]")
    assert key("ra=10&dec=5&x=2&units=arcmin") == key("ra=10&dec=5&x=0.03333333333333333&units=d")
    assert key("ra=10&dec=5&x=5") != key("ra=10&dec=5&x=5&sector=1")
    assert key("ra=10&dec=5&x=5") != key("ra=10.0000001&dec=5&x=5")


def test_resolver_resolves_positions_and_nothing_else():
    decimal, sexagesimal, name, off_sky = (resolve_names([text])["resolvedCoordinate"] for text in
                                           ("132.5, -69.2", "08:50:06.0 -69:12:00", "TIC 261136679", "361, 0"))
    assert (decimal[0]["ra"], decimal[0]["decl"], decimal[0]["searchString"]) == (132.5, -69.2, "132.5, -69.2")
    assert abs(sexagesimal[0]["ra"] - 132.525) < 1e-9 and abs(sexagesimal[0]["decl"] + 69.2) < 1e-9
    assert name == [] and off_sky == []


def test_one_broken_sidecar_does_not_take_the_catalog_down(tmp_path):
    """A corrupt index or an unusable WCS hides that cube only; the others still answer."""
    from cubecut.cube.catalog import CubeCatalog
    from cubecut.cube.index import CubeIndex
    from cubecut.ingest.run import ingest
    from cubecut.synth import make_sector, star_catalog
    from astropy.coordinates import SkyCoord

    ffis = make_sector(tmp_path / "ffis", sector=3, camera=1, ccd=1, frames=3, shape=(40, 90), seed=1)
    ingest([str(p) for p in ffis], str(tmp_path / "cubes" / "tess-s0003-1-1-cube.fits"))
    (tmp_path / "cubes" / "broken-cube.fits.index.json").write_text("{not json")
    good = CubeIndex.from_json((tmp_path / "cubes" / "tess-s0003-1-1-cube.fits.index.json").read_text())
    good.wcs_header = good.wcs_header.replace("RA---TAN-SIP", "RA---XYZ-SIP")
    (tmp_path / "cubes" / "nowcs-cube.fits.index.json").write_bytes(good.to_json())
    catalog = CubeCatalog(str(tmp_path / "cubes"), ttl=0)
    star = star_catalog(sector=3, camera=1, ccd=1, shape=(40, 90), seed=1)
    star = star[star["col"] > 50][0]
    covering = catalog.covering(SkyCoord(star["ra"], star["dec"], unit="deg"))
    assert [e.url.rsplit("/", 1)[-1] for e in covering] == ["tess-s0003-1-1-cube.fits"]
