"""Load: N concurrent clients against the local API for a fixed time (127.0.0.1 only).

Clients alternate ``POST /v1/cutouts`` (a TPF behind a presigned URL, computed every time)
and TESScut ``GET astrocut`` (a zip; repeated requests are served from the result cache),
at random positions and sizes on one cube. The test records requests served, latency
percentiles, errors by status and the growth of the server process's memory (the stack
runs in this process), prints them and, with CUBECUT_RECORD_FIGURES=1, writes them to
docs/reliability.md. It asserts correctness only: every answer is 200/303 and belongs to
its request, or is a deliberate 503 with Retry-After; never another 4xx or any 5xx.

CUBECUT_LOAD_CLIENTS (default 8) and CUBECUT_LOAD_SECONDS (default 10) size the run.
"""
from __future__ import annotations

import io
import json
import os
import random
import threading
import time
import urllib.error
import urllib.request
import zipfile
from collections import Counter
from urllib.parse import urlencode

import numpy as np
import pytest

from cubecut import storage
from cubecut.cutout import clear_cache
from cubecut.ingest.run import ingest
from test_faults import MIB, record_figures, synth_ffis, targets

pytestmark = pytest.mark.slow
CLIENTS = int(os.environ.get("CUBECUT_LOAD_CLIENTS", "8"))
SECONDS = float(os.environ.get("CUBECUT_LOAD_SECONDS", "10"))
REQUEST_TIMEOUT = 60.0


def rss_kib(field: str = "VmRSS") -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _request(url: str, data: bytes | None = None) -> tuple[int, bytes, dict]:
    request = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET",
                                     headers={"Content-Type": "application/json"} if data is not None else {})

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(request, timeout=REQUEST_TIMEOUT) as response:
            return response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, error.read(), dict(error.headers)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    from cubecut_infra.local.stack import LocalStack

    ffis = synth_ffis(tmp_path_factory)
    running = LocalStack(bucket="cubecut-load").start()
    try:
        storage.reset_clients()
        clear_cache()
        ingest([str(p) for p in ffis], f"s3://{running.bucket}/cubes/tess-s0007-2-1-cube.fits", block_bytes=5 * MIB)
        yield running
    finally:
        running.stop()
        storage.reset_clients()
        clear_cache()


def test_concurrent_clients_get_correct_answers_or_deliberate_503s(stack):
    positions = targets(6)
    base = stack.api_url
    # warm up: the catalog, the index cache, astropy's first calls
    for ra, dec in positions[:2]:
        assert _request(f"{base}/v1/cutouts", json.dumps({"cube": "tess-s0007-2-1", "ra": ra, "dec": dec,
                                                          "size": 5}).encode())[0] == 200
    rss_before, start = rss_kib(), time.monotonic()
    records: list[tuple[str, int, float]] = []
    problems: list[str] = []
    lock = threading.Lock()
    stop_at = start + SECONDS

    def client(number: int) -> None:
        rng = random.Random(number)
        i = 0
        while time.monotonic() < stop_at:
            ra, dec = positions[rng.randrange(len(positions))]
            size = rng.choice([5, 7, 9, 11, 15])
            t0 = time.monotonic()
            if i % 2 == 0:
                kind = "POST /v1/cutouts"
                status, body, headers = _request(f"{base}/v1/cutouts", json.dumps(
                    {"cube": "tess-s0007-2-1", "ra": ra, "dec": dec, "size": size}).encode())
                problem = _check_v1(status, body, headers, ra, size)
            else:
                kind = "GET astrocut"
                query = urlencode({"ra": ra, "dec": dec, "x": size, "y": size, "sector": 7})
                status, body, headers = _request(f"{base}/tesscut/api/v0.1/astrocut?{query}")
                problem = _check_astrocut(status, body, headers, ra, size)
            with lock:
                records.append((kind, status, time.monotonic() - t0))
                if problem:
                    problems.append(f"{kind} {ra:.4f} {size}: {problem}")
            i += 1

    samples: list[int] = []

    def sample() -> None:  # RSS once a second: growth that levels off is caches, not a leak
        while time.monotonic() < stop_at:
            samples.append(rss_kib())
            time.sleep(1.0)

    threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(CLIENTS)]
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(SECONDS + 2 * REQUEST_TIMEOUT)
    sampler.join(5)
    elapsed = time.monotonic() - start
    assert not any(t.is_alive() for t in threads), "a client hung"
    rss_after, rss_peak = rss_kib(), rss_kib("VmHWM")

    statuses = Counter(status for _, status, _ in records)
    lines = [f"- {CLIENTS} clients x {SECONDS:.0f} s against the local API (one process, 2 cores): "
             f"{len(records)} requests in {elapsed:.1f} s ({len(records) / elapsed:.1f}/s); "
             f"statuses {dict(sorted(statuses.items()))}"]
    for kind in ("POST /v1/cutouts", "GET astrocut"):
        times = [t for k, s, t in records if k == kind and s in (200, 303)]
        if times:
            lines.append(f"- {kind}: {len(times)} served, p50 {np.percentile(times, 50) * 1000:.0f} ms, "
                         f"p95 {np.percentile(times, 95) * 1000:.0f} ms, max {max(times) * 1000:.0f} ms")
    half = samples[len(samples) // 2] if samples else rss_before
    lines.append(f"- server process RSS: {rss_before / 1024:.0f} MiB after warm-up, {half / 1024:.0f} MiB half way, "
                 f"{rss_after / 1024:.0f} MiB at the end (growth {(half - rss_before) / 1024:+.0f} MiB in the first "
                 f"half, {(rss_after - half) / 1024:+.0f} MiB in the second), peak {rss_peak / 1024:.0f} MiB")
    record_figures("load", "\n".join(lines))

    assert not problems, problems[:10]
    assert set(statuses) <= {200, 303, 503}, statuses
    assert statuses[200] + statuses[303] >= CLIENTS, "the API served requests"


def _check_v1(status: int, body: bytes, headers: dict, ra: float, size: int) -> str | None:
    if status == 503:
        return None if headers.get("Retry-After") else "503 without Retry-After"
    if status != 200:
        return f"status {status}: {body[:200]!r}"
    answer = json.loads(body)
    expected = f"_{ra:.6f}_"
    if expected not in answer["name"] or not answer["name"].endswith(f"_{size}x{size}_astrocut.fits"):
        return f"answer for another request: {answer['name']}"
    if "X-Amz-Signature=" not in answer["url"]:
        return "no presigned URL"
    return None


def _check_astrocut(status: int, body: bytes, headers: dict, ra: float, size: int) -> str | None:
    if status == 503:
        return None if headers.get("Retry-After") else "503 without Retry-After"
    if status == 303:
        return None if "X-Amz-Signature=" in headers.get("Location", "") else "303 without a presigned URL"
    if status != 200:
        return f"status {status}: {body[:200]!r}"
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        names = archive.namelist()
    if len(names) != 1 or f"_{ra:.6f}_" not in names[0] or f"_{size}x{size}_" not in names[0]:
        return f"answer for another request: {names}"
    return None
