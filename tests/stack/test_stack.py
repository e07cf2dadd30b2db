"""End to end on the local serverless stack: S3 event → state machine → cube → HTTP API.

Everything here is the real thing a deployment runs, on 127.0.0.1: moto's S3 HTTP API
with real multipart uploads, the S3 event JSON that S3 sends to Lambda, the real ASL
definition executed step by step, the real Lambda handlers, and HTTP requests to the
API Gateway (payload v2) adapter in front of the real API handler.
"""
from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import boto3
import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.io import fits

import cubecut
from cubecut.errors import FFIError, StorageError
from cubecut.ingest.run import ingest
from cubecut.synth import make_sector, star_catalog
from cubecut_infra.local.stack import LocalStack

pytestmark = pytest.mark.slow
SHAPE = (200, 120)  # 200 rows x 120 cols x 60 frames x 8 B = 11.5 MB: three 5 MiB blocks


class FirstAttemptFails:
    """A ``wrap`` that kills the first attempt of block 1 (a transient StorageError) and
    records every Block call, so tests see retries and concurrency from the outside."""

    def __init__(self) -> None:
        self.calls: list[int] = []
        self.lock = threading.Lock()

    def __call__(self, name: str, handler):
        if name != "Block":
            return handler

        def block(event, context):
            with self.lock:
                self.calls.append(event["block"])
                first = self.calls.count(1) == 1 and event["block"] == 1
            if first:
                raise StorageError("injected: connection reset during the first attempt")
            return handler(event, context)

        return block


@pytest.fixture(scope="module")
def ffis(tmp_path_factory) -> list[Path]:
    return make_sector(tmp_path_factory.mktemp("ffis"), sector=1, camera=1, ccd=1, frames=60, shape=SHAPE, seed=4)


@pytest.fixture(scope="module")
def stack_run(ffis):
    hook = FirstAttemptFails()
    with LocalStack(bucket="cubecut-stack-run", block_mib=5, max_concurrency=3, wrap=hook) as stack:
        stack.submit_ingest(ffis, "tess-s0001-1-1")
        execution = stack.wait_for_execution(timeout=300)
        yield stack, execution, hook


def test_s3_event_runs_the_state_machine_to_a_cube(stack_run, ffis, tmp_path):
    stack, execution, hook = stack_run
    assert execution.status == "SUCCEEDED", (execution.error, execution.cause)
    s3 = boto3.client("s3")
    key = "cubes/tess-s0001-1-1-cube.fits"
    ours = s3.get_object(Bucket=stack.bucket, Key=key)["Body"].read()
    ingest([str(p) for p in ffis], str(tmp_path / "library.fits"))
    library = (tmp_path / "library.fits").read_bytes()
    primary = len(fits.Header.fromstring(library[:2880 * 20].decode("ascii", "replace")).tostring())
    assert ours[primary:] == library[primary:], "same cube as `cubecut ingest` after the dated primary header"
    assert execution.output["cube"] == f"s3://{stack.bucket}/{key}"
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=stack.bucket, Prefix="cubes/")["Contents"]}
    assert keys == {key, key + ".index.json"}, "no staging objects left"
    assert not s3.list_multipart_uploads(Bucket=stack.bucket).get("Uploads")


def test_fan_out_is_real_and_retried_blocks_are_idempotent(stack_run):
    _, execution, hook = stack_run
    blocks = sorted(set(hook.calls))
    assert blocks == [0, 1, 2], "one invocation per row block"
    assert hook.calls.count(1) == 2, "block 1 failed once and was retried"
    block_arn = next(arn for arn in execution.invocations if arn.endswith("-block"))
    assert execution.invocations[block_arn] == 4
    assert 2 <= execution.max_concurrency[block_arn] <= 3, "concurrent, bounded by MaxConcurrency"


def _post(url: str, payload: object) -> tuple[int, dict]:
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    request = urllib.request.Request(url, data=data, method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_cutout_over_http_through_a_presigned_url_equals_the_library(stack_run, tmp_path):
    stack, execution, _ = stack_run
    stars = star_catalog(sector=1, camera=1, ccd=1, shape=SHAPE, seed=4)
    star = stars[(stars["col"] > 60) & (stars["col"] < 110) & (stars["row"] > 20) & (stars["row"] < 180)][0]
    status, answer = _post(f"{stack.api_url}/v1/cutouts", {"cube": "tess-s0001-1-1", "ra": float(star["ra"]),
                                                           "dec": float(star["dec"]), "size": [9, 7]})
    assert status == 200, answer
    url = urlparse(answer["url"])
    query = parse_qs(url.query)
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"] and int(query["X-Amz-Expires"][0]) <= 7 * 24 * 3600
    with urllib.request.urlopen(answer["url"], timeout=60) as response:
        (tmp_path / answer["name"]).write_bytes(response.read())
    (expected,) = cubecut.cutout(execution.output["cube"], SkyCoord(star["ra"], star["dec"], unit="deg"), (9, 7))
    with fits.open(tmp_path / answer["name"]) as tpf:
        for column in ("FLUX", "FLUX_ERR", "TIME", "QUALITY"):
            np.testing.assert_array_equal(tpf[1].data[column], expected[1].data[column])
        assert tpf[1].data["FLUX"].shape == (60, 7, 9)
    assert answer["reads"]["requests"] <= 7 + 2


@pytest.mark.parametrize("payload, status", [
    (b"not json", 400), ({"cube": "tess-s0001-1-1"}, 400), ({"cube": "tess-s0001-1-1", "ra": "x", "dec": 1}, 400),
    ({"cube": "tess-s0009-9-9", "ra": 1, "dec": 1}, 404), ({"cube": "s3://elsewhere/cube.fits", "ra": 1, "dec": 1}, 404),
    ({"cube": "tess-s0001-1-1", "ra": 10, "dec": 95}, 400), ({"cube": "tess-s0001-1-1", "ra": 0, "dec": 0}, 400),
    ({"cube": "tess-s0001-1-1", "ra": 1, "dec": 1, "size": -3}, 400),
    ([1, 2], 415),  # a JSON body must be an object of parameters, as on every route
])
def test_bad_requests_get_4xx_json_not_500(stack_run, payload, status):
    stack, _, _ = stack_run
    code, answer = _post(f"{stack.api_url}/v1/cutouts", payload)
    assert code == status and "message" in answer, answer


def test_failed_ingest_leaves_no_cube_and_no_upload(ffis, tmp_path):
    def broken_block(name, handler):
        if name != "Block":
            return handler

        def block(event, context):
            if event["block"] == 2:
                raise FFIError("injected: an FFI turned out unreadable")
            return handler(event, context)

        return block

    with LocalStack(bucket="cubecut-failing", block_mib=5, max_concurrency=2, wrap=broken_block) as stack:
        stack.submit_ingest(ffis, "tess-s0001-1-1")
        execution = stack.wait_for_execution(timeout=300)
        assert execution.status == "FAILED"
        s3 = boto3.client("s3")
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket=stack.bucket).get("Contents", [])]
        assert not [k for k in keys if k.startswith("cubes/")], keys
        assert not s3.list_multipart_uploads(Bucket=stack.bucket).get("Uploads")
