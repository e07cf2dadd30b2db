"""Streamed TPFs through the HTTP API (issue 27), over real HTTP on 127.0.0.1.

With the service's streaming threshold lowered, ``/v1/cutouts`` writes its TPF to S3 as it
is built and answers its presigned URL, and ``astrocut`` stores it uncompressed in its zip:
both byte for byte the in-memory TPF. The memory budget is charged on every route that cuts
or renders (400 JSON with the numbers before any cube read), and a request that does not fit
beside the work in progress is answered 503 with ``Retry-After``.
"""
from __future__ import annotations

import io
import json
import zipfile
from urllib.parse import urlencode

import pytest
from astropy.coordinates import SkyCoord

from cubecut import fitswrite
from cubecut.cutout import engine
from cubecut.tesscut import service as service_module
from stack_fixtures import BUCKET, SHARED, tesscut_sky  # noqa: F401 - the fixture
from test_api_limits import CUBE, FORM, JSON, _path_over, cutout, post
from test_tesscut_api import TESSCUT, CubeGetCounter, http

WHEN = "2026-01-02T03:04:05"
CUBE_URL = f"s3://{BUCKET}/cubes/{CUBE}-cube.fits"


@pytest.fixture
def streaming(monkeypatch) -> list[str]:
    """Every TPF above 1 KiB streamed, checksum times frozen; the cubes streamed, in order."""
    monkeypatch.setattr(service_module, "STREAM_ABOVE_BYTES", 1024)
    monkeypatch.setattr(fitswrite, "checksum_timestamp", lambda: WHEN)
    calls: list[str] = []
    real = engine.cutout_stream

    def spy(cube, *args, **kwargs):
        calls.append(str(cube))
        return real(cube, *args, **kwargs)

    monkeypatch.setattr(engine, "cutout_stream", spy)
    return calls


def _in_memory(size: int) -> bytes:
    (tpf,) = engine.cutout_files(CUBE_URL, SkyCoord(*SHARED, unit="deg"), size)
    return bytes(tpf.data)


@pytest.mark.slow
def test_v1_cutout_streamed_to_s3_is_the_in_memory_tpf(tesscut_sky, streaming):
    status, _, answer = post(tesscut_sky, "/v1/cutouts", cutout(size=[21, 17]))
    assert status == 200, answer
    assert streaming == [CUBE_URL], "the TPF was streamed"
    got_status, _, body = http("GET", answer["url"])
    assert got_status == 200 and answer["bytes"] == len(body) and answer["shape"] == [30, 17, 21]
    (expected,) = engine.cutout_files(CUBE_URL, SkyCoord(*SHARED, unit="deg"), (21, 17))
    assert body == bytes(expected.data)


@pytest.mark.slow
def test_astrocut_zip_stores_streamed_tpfs_byte_for_byte(tesscut_sky, streaming):
    query = urlencode({"ra": SHARED[0], "dec": SHARED[1], "x": 19, "sector": 62})
    status, headers, body = http("GET", f"{tesscut_sky.api_url}{TESSCUT}/astrocut?{query}", follow=True)
    assert status == 200 and headers["content-type"] == "application/zip"
    assert streaming == [CUBE_URL]
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        (info,) = archive.infolist()
        assert info.compress_type == zipfile.ZIP_STORED
        assert archive.read(info) == _in_memory(19)


def _cases(size: int) -> list[tuple[str, str, bytes | None, dict[str, str], str]]:
    ra, dec = SHARED
    return [
        ("GET", f"{TESSCUT}/astrocut?" + urlencode({"ra": ra, "dec": dec, "x": size}), None, {}, "msg"),
        ("POST", f"{TESSCUT}/astrocut", urlencode({"ra": ra, "dec": dec, "x": size}).encode(), FORM, "msg"),
        ("GET", f"{TESSCUT}/quicklook?" + urlencode({"ra": ra, "dec": dec, "x": size}), None, {}, "msg"),
        ("GET", "/v1/quicklook?" + urlencode({"cube": CUBE, "ra": ra, "dec": dec, "size": size}), None, {}, "message"),
        ("POST", "/v1/cutouts", cutout(size=size), JSON, "message"),
    ]


@pytest.mark.slow
def test_every_route_that_cuts_or_renders_keeps_the_memory_budget(tesscut_sky, monkeypatch):
    """13 x 13 px x 30 frames built in memory is 324 KB, over a 100 KB budget."""
    monkeypatch.setenv("CUBECUT_MAX_WORK_BYTES", "100000")
    cases = _cases(13) + [("GET", f"{TESSCUT}/moving_target/astrocut?" + urlencode(
        {"ephemeris": _path_over(tesscut_sky, CUBE), "x": 13, "sector": 62}), None, {}, "msg")]
    for method, target, body, headers, key in cases:
        with CubeGetCounter() as gets:
            status, answer_headers, answer = http(method, f"{tesscut_sky.api_url}{target}", data=body, headers=headers)
        assert status == 400 and answer_headers["content-type"] == "application/json", (target, answer[:300])
        message = json.loads(answer)[key]
        assert "pixel-frames" in message and "GB of memory" in message and "100,000 bytes" in message, message
        assert gets.keys == [], f"{target}: refused before any cube read"


@pytest.mark.slow
def test_work_that_does_not_fit_beside_the_work_in_progress_is_503(tesscut_sky, monkeypatch):
    from cubecut_app.settings import cutout_service
    from cubecut_functions import api

    monkeypatch.setenv("CUBECUT_MAX_WORK_BYTES", "10000000")
    service = cutout_service(api.settings())
    assert service.max_work_bytes == 10_000_000
    with service.limit.slot(9_800_000):  # another cutout holds most of the memory
        for method, target, body, headers, key in _cases(12):  # 12 x 12 x 30 x 64 bytes: 276 KB
            status, answer_headers, answer = http(method, f"{tesscut_sky.api_url}{target}", data=body,
                                                  headers=headers)
            assert status == 503 and answer_headers["retry-after"] == "2", (target, answer[:300])
            assert "GB" in json.loads(answer)[key]
    status, _, answer = post(tesscut_sky, "/v1/cutouts", cutout(size=12))
    assert status == 200, answer


def test_bulk_cutouts_the_api_starts_are_held_to_what_its_memory_holds_of_a_tpf_built_whole():
    from cubecut.tesscut.service import IN_MEMORY_BYTES_PER_PIXEL_FRAME, MAX_WORK_BYTES
    from cubecut_app.settings import AppSettings

    defaults = AppSettings.from_env({"CUBECUT_BUCKET": "b"})
    assert defaults.bulk_cutout_pixel_frames == MAX_WORK_BYTES // IN_MEMORY_BYTES_PER_PIXEL_FRAME == 18_750_000
    assert AppSettings.from_env({"CUBECUT_BUCKET": "b", "CUBECUT_MAX_PIXEL_FRAMES": "500"}).bulk_cutout_pixel_frames == 500
