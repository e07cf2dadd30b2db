"""Bulk jobs end to end on the local stack: ``cubecut bulk --stack`` -> the real bulk ASL
(Distributed Map with ItemReader, ItemBatcher, ResultWriter) -> the real handlers -> S3."""
from __future__ import annotations

import csv
import io
import json
import tarfile

import boto3
import pytest
from astropy.coordinates import SkyCoord
from astropy.io import fits

import cubecut
from cubecut.cutout import ffi_wcs, load_index
from cubecut.ingest.run import ingest
from cubecut.synth import make_sector
from cubecut_infra.cli import main
from cubecut_infra.local.stack import LocalStack

pytestmark = pytest.mark.slow
SHAPE = (60, 90)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    ffis = make_sector(tmp_path_factory.mktemp("bulk-ffis"), sector=7, camera=2, ccd=3, frames=6, shape=SHAPE,
                       seed=2)
    # Anonymous callers may start jobs here (BulkAllowAnonymous): the routes' own checks are tested.
    with LocalStack(bucket="cubecut-bulk", max_concurrency=2, bulk_tiles_per_batch=2,
                    parameters={"BulkAllowAnonymous": "true"}) as running:
        cube = ingest([str(p) for p in ffis], f"s3://{running.bucket}/cubes/", workers=1).cube
        yield running, cube


def _catalog(cube: str) -> str:
    wcs = ffi_wcs(load_index(cube))

    def at(x: float, y: float) -> str:
        ra, dec = wcs.all_pix2world([[x, y]], 0)[0]
        return f"{float(ra)!r},{float(dec)!r}"

    rows = ["id,ra,dec,size"]
    rows += [f"on{i},{at(50 + 3 * i, 4 + 5 * i)}," for i in range(10)]  # 10 on the image, in rows 4..49
    rows += [f"edge,{at(0.3, 59.4)},5x7", f"off,{at(140, 30)},", "far,200.0,-10.0,"]
    rows += ["bad-ra,north,3,", "bad-size,1,1,big", "short,1"]
    return "\n".join(rows) + "\n"


def _results(stack: LocalStack, key: str) -> list[dict]:
    body = boto3.client("s3").get_object(Bucket=stack.bucket, Key=key)["Body"].read().decode()
    return list(csv.DictReader(io.StringIO(body)))


def test_bulk_job_on_the_state_machine_accounts_for_every_row(stack, tmp_path, capsys, monkeypatch):
    running, cube = stack
    monkeypatch.setenv("CUBECUT_BULK_TILE_TARGETS", "3")  # 11 targets: 4 tiles, 2 batches of 2 tiles
    (tmp_path / "cat.csv").write_text(_catalog(cube))
    out = f"s3://{running.bucket}/results/bulk/job1"
    assert main(["bulk", str(tmp_path / "cat.csv"), "--cubes", cube, "--out", out, "--stack", "--quiet"]) == 0
    assert "16 catalog rows: 3 malformed, 2 off_footprint, 11 written" in capsys.readouterr().out
    rows = _results(running, "results/bulk/job1/results.csv")
    assert [int(r["row"]) for r in rows] == list(range(1, 17)), "every catalog row exactly once"
    status = {r["id"]: r["status"] for r in rows}
    assert status["edge"] == "written" and status["off"] == status["far"] == "off_footprint"
    assert {status[k] for k in ("bad-ra", "bad-size", "short")} == {"malformed"}
    s3 = boto3.client("s3")
    for row in rows:
        if row["status"] != "written":
            assert row["error"], row
            continue
        size = (5, 7) if row["id"] == "edge" else (11, 11)
        (single,) = cubecut.cutout(cube, SkyCoord(float(row["ra"]), float(row["dec"]), unit="deg"), size,
                                   output_dir=tmp_path / "single")
        key = row["key"].removeprefix(f"s3://{running.bucket}/")
        ours = fits.open(io.BytesIO(s3.get_object(Bucket=running.bucket, Key=key)["Body"].read()))
        with ours, fits.open(single) as expected:
            diff = fits.FITSDiff(ours, expected, ignore_keywords=["CHECKSUM", "DATASUM", "OBJECT"])
            assert diff.identical, diff.report()
    # The Distributed Map ran 4 tiles in 2 ItemBatcher batches and wrote its results to S3.
    invocations, _ = running.sfn.lambdas.counts()
    assert sum(n for arn, n in invocations.items() if arn.endswith("bulk-batch")) == 2, invocations
    manifest_keys = [o["Key"] for o in s3.list_objects_v2(Bucket=running.bucket,
                                                          Prefix="results/bulk/job1/runs/")["Contents"]]
    assert any(k.endswith("/manifest.json") and "/map/" in k for k in manifest_keys)


def test_rerun_on_the_stack_skips_done_targets_and_every_cube_mode_finds_the_cube(stack, tmp_path, capsys):
    running, cube = stack
    (tmp_path / "cat.csv").write_text(_catalog(cube))
    out = f"s3://{running.bucket}/results/bulk/job2"
    assert main(["bulk", str(tmp_path / "cat.csv"), "--out", out, "--stack", "--quiet"]) == 0  # no --cubes
    assert "11 written" in capsys.readouterr().out
    assert main(["bulk", str(tmp_path / "cat.csv"), "--out", out, "--stack", "--quiet"]) == 0
    assert "3 malformed, 2 off_footprint, 11 skipped" in capsys.readouterr().out
    summary = json.loads(boto3.client("s3").get_object(Bucket=running.bucket,
                                                       Key="results/bulk/job2/summary.json")["Body"].read())
    assert summary["counts"] == {"malformed": 3, "off_footprint": 2, "skipped": 11}


def test_a_job_over_the_caps_is_refused_with_the_numbers(stack, tmp_path, capsys, monkeypatch):
    running, cube = stack
    (tmp_path / "cat.csv").write_text(_catalog(cube))
    monkeypatch.setenv("CUBECUT_BULK_MAX_PIXEL_FRAMES", "1000")
    code = main(["bulk", str(tmp_path / "cat.csv"), "--cubes", cube, "--out",
                 f"s3://{running.bucket}/results/bulk/job3", "--stack", "--quiet"])
    assert code == 2
    error = capsys.readouterr().err
    assert "BulkCapError" in error and "come to 7,470 pixel-frames, above the cap of 1,000" in error


def test_shards_on_the_state_machine(stack, tmp_path, capsys, monkeypatch):
    running, cube = stack
    monkeypatch.setenv("CUBECUT_BULK_TILE_TARGETS", "4")  # 11 targets: 3 tiles, so 3 shards
    (tmp_path / "cat.csv").write_text(_catalog(cube))
    out = f"s3://{running.bucket}/results/bulk/job4"
    assert main(["bulk", str(tmp_path / "cat.csv"), "--cubes", cube, "--out", out, "--stack", "--shards",
                 "--quiet"]) == 0
    assert "11 written" in capsys.readouterr().out
    written = [r for r in _results(running, "results/bulk/job4/results.csv") if r["status"] == "written"]
    assert len({r["key"] for r in written}) == 3 and all(r["key"].endswith(".tar") and r["member"] for r in written)
    s3 = boto3.client("s3")
    row = next(r for r in written if r["id"] == "edge")
    body = s3.get_object(Bucket=running.bucket, Key=row["key"].removeprefix(f"s3://{running.bucket}/"))["Body"]
    with tarfile.open(fileobj=io.BytesIO(body.read())) as tar:
        data = tar.extractfile(row["member"]).read()
    (single,) = cubecut.cutout(cube, SkyCoord(float(row["ra"]), float(row["dec"]), unit="deg"), (5, 7),
                               output_dir=tmp_path / "single")
    with fits.open(io.BytesIO(data)) as ours, fits.open(single) as expected:
        diff = fits.FITSDiff(ours, expected, ignore_keywords=["CHECKSUM", "DATASUM", "OBJECT"])
        assert diff.identical, diff.report()
    assert main(["bulk", str(tmp_path / "cat.csv"), "--cubes", cube, "--out", out, "--stack", "--shards",
                 "--quiet"]) == 0
    assert "3 malformed, 2 off_footprint, 11 skipped" in capsys.readouterr().out


# --- the HTTP route: POST /v1/bulk starts a job, GET /v1/bulk?job= follows it -------------

def _api(running: LocalStack, method: str, path: str, payload: dict | None = None) -> tuple[int, dict]:
    from test_tesscut_api import http

    data = None if payload is None else json.dumps(payload).encode()
    status, _, body = http(method, running.api_url + path, data=data, headers={"Content-Type": "application/json"})
    return status, json.loads(body)


def test_bulk_job_over_http_runs_on_the_state_machine_and_reports_its_results(stack, tmp_path):
    import re
    import time
    import urllib.request

    from cubecut.bulk.submit import JOB_ID, new_job_id
    from cubecut_app.models import BulkStatusParams

    running, cube = stack
    assert BulkStatusParams.parse({"job": [new_job_id()]}).job.startswith("bulk-")  # checked by JOB_ID
    name = load_index(cube).sector_name
    status, started = _api(running, "POST", "/v1/bulk", {"catalog": _catalog(cube), "cubes": [name], "size": "11"})
    assert status == 202, started
    job = started["job"]
    assert re.match(JOB_ID, job) and started["status_url"] == f"/v1/bulk?job={job}&token={started['token']}"
    assert (started["targets"], started["malformed"]) == (13, 3)  # 16 rows; off-footprint ones are placed later
    deadline = time.monotonic() + 300
    while True:
        status, report = _api(running, "GET", started["status_url"])
        assert status == 200, report
        if report["status"] != "RUNNING" or time.monotonic() > deadline:
            break
        assert report["total"] is None or 0 <= report["done"] <= report["total"]
        time.sleep(0.5)
    assert report["status"] == "SUCCEEDED", report
    assert report["done"] == report["total"] == 11
    assert report["summary"] == {"catalog_rows": 16, "counts": {"malformed": 3, "off_footprint": 2, "written": 11}}
    with urllib.request.urlopen(report["results"], timeout=30) as response:  # the presigned URL
        rows = list(csv.DictReader(io.StringIO(response.read().decode())))
    assert [int(r["row"]) for r in rows] == list(range(1, 17)), "every catalog row exactly once"
    prefix = f"s3://{running.bucket}/results/bulk/{job}/tpfs/"
    written = [r for r in rows if r["status"] == "written"]
    assert len(written) == 11 and all(r["key"].startswith(prefix) for r in written)  # under the job's own prefix
    row = next(r for r in written if r["id"] == "on3")
    (single,) = cubecut.cutout(cube, SkyCoord(float(row["ra"]), float(row["dec"]), unit="deg"), 11,
                               output_dir=tmp_path / "single")
    body = boto3.client("s3").get_object(Bucket=running.bucket, Key=row["key"].removeprefix(f"s3://{running.bucket}/"))
    with fits.open(io.BytesIO(body["Body"].read())) as ours, fits.open(single) as expected:
        diff = fits.FITSDiff(ours, expected, ignore_keywords=["CHECKSUM", "DATASUM", "OBJECT"])
        assert diff.identical, diff.report()
    # An HTTP-only user gets every file as a presigned URL, page by page; the pages' URLs
    # carry the token the request showed.
    assert report["files_url"] == f"{started['status_url']}&files=0"
    status, page = _api(running, "GET", report["files_url"])
    assert status == 200 and "next_files" not in page
    assert sorted(int(f["row"]) for f in page["files"]) == sorted(int(r["row"]) for r in written)
    mine = next(f for f in page["files"] if f["id"] == "on3")
    with urllib.request.urlopen(mine["url"], timeout=30) as response:  # no credentials: the URL is signed
        with fits.open(io.BytesIO(response.read())) as ours, fits.open(single) as expected:
            assert fits.FITSDiff(ours, expected, ignore_keywords=["CHECKSUM", "DATASUM", "OBJECT"]).identical
    status, later = _api(running, "GET", f"{started['status_url']}&files=10")
    assert status == 200 and len(later["files"]) == 1
    assert _api(running, "GET", f"{started['status_url']}&files=-1")[0] == 400
    assert _api(running, "GET", f"/v1/bulk?job={job}&files=0")[0] == 404, "no token, no owner: no files"


@pytest.mark.parametrize("payload, code, text", [
    ({}, 400, "'catalog' is required"),
    ({"catalog": "name,mag\na,3\n"}, 400, "target catalog in the request has no ra or dec column"),
    ({"catalog": "ra,dec\nnorth,south\n"}, 400, "no usable row (row 1:"),
    ({"catalog": "ra,dec\n1,2\n", "size": "0"}, 400, "cutout size must be positive and finite, got 0"),
    ({"catalog": "ra,dec\n1,2\n", "size": "101"}, 400, "cutout size 101 is above the limit of 100 pixels"),
    ({"catalog": "ra,dec\n1,2\n", "cubes": ["tess-s0099-1-1"]}, 404, "no such cube"),
    ({"catalog": "ra,dec\n1,2\n", "cubes": ["s3://elsewhere/cube.fits"]}, 404, "no such cube"),
    ({"catalog": "ra,dec,id\n1,2," + "x" * (4 * 1024 * 1024)}, 400, "'catalog' must be at most 4194304 characters"),
    ({"catalog": "ra,dec\n1,2\n", "cubes": ["tess-s0007-2-3"] * 51}, 400, "'cubes' may be given at most 50 times"),
    ({"catalog": "# %ECSV 1.0\n# " + "[" * 5000 + "\nra dec\n1 2\n"}, 400, "unreadable ECSV header"),
])
def test_bad_bulk_requests_are_4xx_json_and_start_nothing(stack, payload, code, text):
    running, _ = stack
    before = running.sfn.client().list_executions(stateMachineArn=running.bulk_state_machine_arn)["executions"]
    status, answer = _api(running, "POST", "/v1/bulk", payload)
    assert (status, text in answer["message"]) == (code, True), answer
    after = running.sfn.client().list_executions(stateMachineArn=running.bulk_state_machine_arn)["executions"]
    assert len(after) == len(before)


def test_bulk_catalog_over_the_target_cap_is_refused_with_the_numbers(stack, monkeypatch):
    running, cube = stack
    monkeypatch.setenv("CUBECUT_BULK_MAX_TARGETS", "5")
    status, answer = _api(running, "POST", "/v1/bulk", {"catalog": _catalog(cube)})
    assert status == 400 and "13 targets, above this service's cap of 5 per job" in answer["message"], answer


def test_a_catalog_with_a_utf8_bom_starts_a_job(stack):
    running, cube = stack
    status, answer = _api(running, "POST", "/v1/bulk", {"catalog": "\ufeff" + _catalog(cube)})
    assert status == 202 and answer["targets"] == 13, answer


def test_bulk_status_of_unknown_or_malformed_jobs(stack):
    running, _ = stack
    assert _api(running, "GET", "/v1/bulk?job=bulk-20260101T000000-00000000")[0] == 404
    status, answer = _api(running, "GET", "/v1/bulk?job=../../cubes")
    assert status == 400 and "'job'" in answer["message"]
    assert _api(running, "GET", "/v1/bulk")[0] == 400


def test_without_a_bulk_state_machine_the_bulk_routes_answer_503(stack, monkeypatch):
    running, cube = stack
    monkeypatch.setenv("CUBECUT_BULK_JOBS_STATE_MACHINE_ARN", "")
    status, answer = _api(running, "POST", "/v1/bulk", {"catalog": _catalog(cube)})
    assert status == 503 and "no bulk state machine" in answer["message"]
    assert _api(running, "GET", "/v1/bulk?job=bulk-20260101T000000-00000000")[0] == 503


# --- one budget for all cutting work (issue 25, finding 1) --------------------------------

def _no_new_job(running: LocalStack, before: list) -> bool:
    after = running.sfn.client().list_executions(stateMachineArn=running.bulk_state_machine_arn)["executions"]
    return len(after) == len(before)


@pytest.mark.parametrize("setting, row_size, text", [
    ({}, "1000x1000", "1 cutout(s) above the per-cutout limits of 100 pixels per side and 18,750,000 pixel-frames "
                      "(row 1: 1000x1000 pixels x 6 frames = 6,000,000 pixel-frames)"),
    ({"CUBECUT_MAX_PIXEL_FRAMES": "500"}, "", "row 1: 11x11 pixels x 6 frames = 726 pixel-frames"),
    ({"CUBECUT_BULK_MAX_PIXEL_FRAMES": "1000"}, "", "cutouts come to at least 1,452 pixel-frames (6 frames per "
                                                    "cube), above this service's cap of 1,000 per job"),
])
def test_bulk_requests_above_the_cutout_budget_are_refused_with_the_numbers(stack, monkeypatch, setting, row_size,
                                                                           text):
    """The audit's 1000x1000 catalog row, a row above the per-request pixel-frames, and a
    job above the job cap: 400 before anything starts (the cube has 6 frames)."""
    running, cube = stack
    for name, value in setting.items():
        monkeypatch.setenv(name, value)
    wcs = ffi_wcs(load_index(cube))
    ra, dec = (float(v) for v in wcs.all_pix2world([[45, 30]], 0)[0])
    catalog = f"ra,dec,size\n{ra!r},{dec!r},{row_size}\n{ra!r},{dec!r},\n"
    before = running.sfn.client().list_executions(stateMachineArn=running.bulk_state_machine_arn)["executions"]
    status, answer = _api(running, "POST", "/v1/bulk", {"catalog": catalog})
    assert status == 400 and text in answer["message"], answer
    assert _no_new_job(running, before)


def test_the_bulk_plan_applies_the_request_limits_before_writing(stack):
    """A job whose request carries the API's per-cutout limits (as POST /v1/bulk stages it)
    fails in Plan with the numbers, and writes no TPF."""
    from cubecut.bulk.plan import Limits
    from cubecut.bulk.submit import stage_job

    running, cube = stack
    wcs = ffi_wcs(load_index(cube))
    ra, dec = (float(v) for v in wcs.all_pix2world([[45, 30]], 0)[0])
    out = f"s3://{running.bucket}/results/bulk/limited"
    request = stage_job(out, f"ra,dec,size\n{ra!r},{dec!r},200x200\n", (11, 11), [cube],
                        limits=Limits(max_side=100, max_cutout_pixel_frames=15_000_000))
    sfn = running.sfn.client()
    arn = sfn.start_execution(stateMachineArn=running.bulk_state_machine_arn, name="limited",
                              input=json.dumps(request))["executionArn"]
    result = running.sfn.wait(arn, 120)
    assert result.status == "FAILED" and result.error == "BulkCapError", result
    assert "row 1: 200x200 pixels x 6 frames" in result.cause
    listed = boto3.client("s3").list_objects_v2(Bucket=running.bucket, Prefix="results/bulk/limited/tpfs/")
    assert listed.get("KeyCount", 0) == 0
