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
    with LocalStack(bucket="cubecut-bulk", max_concurrency=2, bulk_tiles_per_batch=2) as running:
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
            diff = fits.FITSDiff(ours, expected, ignore_keywords=["CHECKSUM", "DATASUM"])
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
        diff = fits.FITSDiff(ours, expected, ignore_keywords=["CHECKSUM", "DATASUM"])
        assert diff.identical, diff.report()
    assert main(["bulk", str(tmp_path / "cat.csv"), "--cubes", cube, "--out", out, "--stack", "--shards",
                 "--quiet"]) == 0
    assert "3 malformed, 2 off_footprint, 11 skipped" in capsys.readouterr().out
