"""The web page, the quick-look routes and target resolution, over real HTTP; the page is
also driven in headless Chromium (skipped where Chromium is not installed).

Name resolution never leaves the machine: ``CUBECUT_SESAME_URLS`` points the API either
at a stand-in Sesame on 127.0.0.1 or at a closed port (an unreachable resolver).
"""
from __future__ import annotations

import io
import json
import re
import shutil
import socket
import time
import zipfile
from pathlib import Path
from typing import Iterator
from urllib.parse import unquote, urlencode, urljoin

import boto3
import pytest
from astropy.io import fits
from PIL import Image

from cubecut.images import quicklook_png
from stack_fixtures import BUCKET, SHARED, LoopbackServer, tesscut_sky  # noqa: F401 - the fixture
from test_tesscut_api import http

TESSCUT = "/tesscut/api/v0.1"
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
#: The quick-look panel's size (cubecut.images).
PANEL = (980, 420)


def png_size(body: bytes) -> tuple[int, int]:
    return Image.open(io.BytesIO(body)).size


def zip_members(body: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def closed_port() -> int:
    """A 127.0.0.1 port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class FakeSesame(LoopbackServer):
    """A Sesame stand-in on 127.0.0.1 that knows the names in ``known`` (name → ra, dec)."""

    def __init__(self, known: dict[str, tuple[float, float]]) -> None:
        self.known = known
        super().__init__("fake-sesame")

    def answer(self, method: str, path: str) -> tuple[int, str, bytes]:
        name = unquote(path.rsplit("?", 1)[-1])
        position = self.known.get(name)
        text = f"# {name}\n" + (f"%J {position[0]:.6f} {position[1]:+.6f}\n" if position else "#! nothing\n")
        return 200, "text/plain", text.encode()

    @property
    def url(self) -> str:
        return f"{super().url}/sesame/"


@pytest.fixture
def sesame(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeSesame]:
    server = FakeSesame({"Synthetic Star": SHARED})
    monkeypatch.setenv("CUBECUT_SESAME_URLS", server.url)
    yield server
    server.stop()


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUBECUT_SESAME_URLS", f"http://127.0.0.1:{closed_port()}/")


# -- quick looks -----------------------------------------------------------------------------
@pytest.mark.slow
def test_v1_quicklook_is_the_png_of_the_cached_cutout(tesscut_sky):
    star = tesscut_sky.bright_star("tess-s0062-4-1")
    query = urlencode({"cube": "tess-s0062-4-1", "ra": star.ra, "dec": star.dec, "size": 9})
    status, headers, png = http("GET", f"{tesscut_sky.api_url}/v1/quicklook?{query}")
    assert status == 200 and headers["content-type"] == "image/png" and headers["x-cubecut-cache"] == "miss"
    assert png_size(png) == PANEL
    status, headers, again = http("GET", f"{tesscut_sky.api_url}/v1/quicklook?{query}")
    assert (status, headers["x-cubecut-cache"], again) == (200, "hit", png)
    # The zip behind it is astrocut's for the same request: already cached, and the PNG is
    # exactly the library's quick look of its TPF.
    cut = urlencode({"ra": star.ra, "dec": star.dec, "x": 9, "sector": 62})
    status, headers, body = http("GET", f"{tesscut_sky.api_url}{TESSCUT}/astrocut?{cut}")
    assert status == 200 and headers["x-cubecut-cache"] == "hit" and headers["x-cubecut-reads"] == "0"
    (tpf_bytes,) = zip_members(body).values()
    with fits.open(io.BytesIO(tpf_bytes)) as tpf:
        assert quicklook_png(tpf, frame="median") == png
    keys = [o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket=BUCKET, Prefix="results/tesscut/")["Contents"]]
    assert any(k.endswith(".median-asinh.png") for k in keys)
    status, headers, first = http("GET", f"{tesscut_sky.api_url}/v1/quicklook?{query}&frame=first&stretch=linear")
    assert status == 200 and headers["x-cubecut-cache"] == "miss" and first != png


@pytest.mark.slow
def test_tesscut_style_quicklook_stacks_one_panel_per_cube(tesscut_sky):
    query = urlencode({"ra": SHARED[0], "dec": SHARED[1], "x": 6})
    status, headers, png = http("GET", f"{tesscut_sky.api_url}{TESSCUT}/quicklook?{query}")
    assert status == 200 and headers["content-type"] == "image/png"
    assert png_size(png) == (PANEL[0], 3 * PANEL[1])
    status, headers, _ = http("GET", f"{tesscut_sky.api_url}{TESSCUT}/astrocut?{query}")
    assert status == 200 and headers["x-cubecut-cache"] == "hit", "the preview's zip is the download"
    status, headers, body = http("GET", f"{tesscut_sky.api_url}{TESSCUT}/quicklook?ra=10&dec=10")
    assert status == 200 and json.loads(body)["msg"].startswith("No data found for ra=10.000000")


QUICKLOOK_ERRORS = [
    ("/v1/quicklook?ra=1&dec=1", 400, "message", "'cube' is required"),
    ("/v1/quicklook?cube=tess-s0061-4-1&ra=1&dec=1", 404, "message", "no such cube"),
    (f"/v1/quicklook?cube=tess-s0062-4-1&ra=10&dec=10", 400, "message", "is not on tess-s0062-4-1"),
    (f"/v1/quicklook?cube=tess-s0062-4-1&ra={SHARED[0]}&dec={SHARED[1]}&size=0", 400, "message", "size"),
    (f"/v1/quicklook?cube=tess-s0062-4-1&ra={SHARED[0]}&dec={SHARED[1]}&size=a,b", 400, "message", "size"),
    (f"/v1/quicklook?cube=tess-s0062-4-1&ra={SHARED[0]}&dec={SHARED[1]}&frame=last", 400, "message", "frame"),
    ("/v1/quicklook?cube=tess-s0062-4-1&ra=nan&dec=1", 400, "message", "finite"),
    (f"{TESSCUT}/quicklook?ra={SHARED[0]}&dec={SHARED[1]}&stretch=cubic", 400, "msg", "stretch"),
    (f"{TESSCUT}/quicklook?ra={SHARED[0]}&dec={SHARED[1]}&x=-1", 400, "msg", "positive"),
    ("/v1/resolve", 400, "message", "give a target"),
    ("/v1/resolve?target=" + "x" * 201, 400, "message", "at most 200"),
]


@pytest.mark.slow
@pytest.mark.parametrize("target,status,key,text", QUICKLOOK_ERRORS, ids=[e[0][:60] for e in QUICKLOOK_ERRORS])
def test_quicklook_and_resolve_errors(tesscut_sky, target, status, key, text):
    got, headers, body = http("GET", f"{tesscut_sky.api_url}{target}")
    assert got == status and headers["content-type"] == "application/json"
    assert text in json.loads(body)[key]


# -- names -----------------------------------------------------------------------------------------
@pytest.mark.slow
def test_resolve_reads_coordinates_without_any_resolver(tesscut_sky, offline):
    for text, expected in (("132.5 -69.2", (132.5, -69.2)), ("132.5, -69.2", (132.5, -69.2)),
                           ("08:50:06 -69:12:00", (132.525, -69.2)), ("08:50:06, -69:12:00", (132.525, -69.2))):
        status, _, body = http("GET", f"{tesscut_sky.api_url}/v1/resolve?{urlencode({'target': text})}")
        answer = json.loads(body)
        assert status == 200 and answer["resolver"] == "coordinates", answer
        assert (round(answer["ra"], 9), round(answer["dec"], 9)) == expected


@pytest.mark.slow
def test_resolve_names_through_a_reachable_sesame(tesscut_sky, sesame):
    status, _, body = http("GET", f"{tesscut_sky.api_url}/v1/resolve?target=Synthetic%20Star")
    answer = json.loads(body)
    assert status == 200 and answer["resolver"] == "sesame"
    assert abs(answer["ra"] - SHARED[0]) < 1e-6 and abs(answer["dec"] - SHARED[1]) < 1e-6
    status, _, body = http("GET", f"{tesscut_sky.api_url}/v1/resolve?target=Nothing%20Here")
    assert status == 404 and "no object named 'Nothing Here'" in json.loads(body)["message"]


@pytest.mark.slow
def test_resolve_without_a_reachable_resolver_says_to_use_coordinates(tesscut_sky, offline):
    started = time.monotonic()
    status, headers, body = http("GET", f"{tesscut_sky.api_url}/v1/resolve?target=pi%20Men")
    message = json.loads(body)["message"]
    assert status == 503 and "retry-after" not in headers
    assert "no name resolver" in message and "enter coordinates" in message
    assert time.monotonic() - started < 10


# -- the page, without a browser -------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("path", ["/", "/web"])
def test_page_is_self_contained_html_with_the_form(tesscut_sky, path):
    status, headers, body = http("GET", f"{tesscut_sky.api_url}{path}")
    html = body.decode()
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in headers["content-security-policy"]
    for element in ('<form id="cutout-form"', 'id="target"', 'id="size"', 'id="sectors"', 'id="preview"',
                    'id="download"', 'src="web/app.js"', 'href="web/style.css"'):
        assert element in html
    assets = {"": html}
    for name, kind in (("web/app.js", "text/javascript"), ("web/style.css", "text/css")):
        status, headers, asset = http("GET", urljoin(f"{tesscut_sky.api_url}{path}", name))
        assert status == 200 and headers["content-type"].startswith(kind)
        assets[name] = asset.decode()
    for name, text in assets.items():
        assert not re.search(r"(https?:)?//[\w.-]+\.\w", text), f"{name or 'the page'} names another host"
        assert "@import" not in text and "url(" not in text
    status, headers, _ = http("POST", f"{tesscut_sky.api_url}{path}", data=b"")
    assert status == 405 and headers["allow"] == "GET"


# -- the page, in a browser --------------------------------------------------------------------
NO_CHROMIUM = shutil.which("chromium") is None or shutil.which("chromedriver") is None


def _browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1100,1500", "--no-proxy-server"):
        options.add_argument(argument)
    return webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)


def _submit(driver, target: str, size: int, sectors: str) -> str:
    """Fill the form, submit, wait for the page to settle; its final state."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    for field, value in (("target", target), ("size", str(size)), ("sectors", sectors)):
        element = driver.find_element(By.ID, field)
        element.clear()
        element.send_keys(value)
    driver.find_element(By.ID, "submit").click()
    WebDriverWait(driver, 60).until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-state")
                                    in ("done", "empty", "error"))
    return driver.find_element(By.TAG_NAME, "body").get_attribute("data-state")


@pytest.mark.slow
@pytest.mark.skipif(NO_CHROMIUM, reason="headless Chromium is not installed "
                                        "(Debian: apt-get install chromium chromium-driver)")
def test_page_in_headless_chromium_shows_sectors_preview_and_download(tesscut_sky, offline):
    from selenium.webdriver.common.by import By

    star = tesscut_sky.bright_star("tess-s0062-4-1")
    driver = _browser()
    try:
        driver.get(f"{tesscut_sky.api_url}/")
        assert driver.title.startswith("cubecut")

        # A name, with no resolver reachable: a clear error asking for coordinates.
        assert _submit(driver, "pi Men", 9, "") == "error"
        assert "enter coordinates" in driver.find_element(By.ID, "status").text

        # Coordinates of an injected star: its sectors, its preview and the download link.
        assert _submit(driver, f"{star.ra:.6f} {star.dec:.6f}", 11, "") == "done"
        rows = [[td.text for td in tr.find_elements(By.TAG_NAME, "td")]
                for tr in driver.find_elements(By.CSS_SELECTOR, "#sector-table tbody tr")]
        assert rows == [["tess-s0002-4-3", "2", "4", "3"], ["tess-s0062-4-1", "62", "4", "1"]]
        preview = driver.find_element(By.ID, "preview")
        assert driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth", preview) == PANEL[0]
        assert driver.execute_script("return arguments[0].naturalHeight", preview) == 2 * PANEL[1]
        link = driver.find_element(By.ID, "download")
        assert link.is_displayed() and "/tesscut/api/v0.1/astrocut?" in link.get_attribute("href")
        ARTIFACTS.mkdir(exist_ok=True)
        shot = ARTIFACTS / "web-page.png"
        driver.set_window_size(1100, driver.execute_script("return document.documentElement.scrollHeight") + 120)
        driver.save_screenshot(str(shot))
        assert png_size(shot.read_bytes())[1] > 800
        href = link.get_attribute("href")

        # One sector only: the table and the link follow the field.
        assert _submit(driver, f"{star.ra:.6f} {star.dec:.6f}", 11, "62") == "done"
        assert len(driver.find_elements(By.CSS_SELECTOR, "#sector-table tbody tr")) == 1
        assert "sector=62" in driver.find_element(By.ID, "download").get_attribute("href")
    finally:
        driver.quit()

    # The link is the zip the preview was drawn from: served from the cache.
    status, headers, body = http("GET", href)
    assert status == 200 and headers["x-cubecut-cache"] == "hit"
    assert sorted(zip_members(body)) == [f"{name}_{star.ra:.6f}_{star.dec:.6f}_11x11_astrocut.fits"
                                         for name in ("tess-s0002-4-3", "tess-s0062-4-1")]
    print(f"\n[web] screenshot: {shot}")
