"""Crash safety: ingests killed mid-way, the janitor, re-runs, and atomic cube replacement.

A killed ingest must leave nothing a reader can see, everything it did leave must be
removable by the janitor (in AWS also by the bucket's lifecycle rule), and a re-run must
give the same cube byte for byte. A re-ingest replaces a cube atomically: a reader sees
the old cube or the new one, never a mix.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import boto3
import numpy as np
import pytest
import yaml

from cubecut import storage
from cubecut.cutout import clear_cache, cutout, load_index
from cubecut.cutout import engine as cutout_engine
from cubecut.errors import FFIError, StorageError
from cubecut.ingest import run as ingest_run
from cubecut.ingest.janitor import parse_age, sweep
from cubecut_infra.cli import main as cli_main
from cubecut.ingest.transpose import write_block
from cubecut.ingest.finalize import finalize_ingest, finalized_result
from cubecut.ingest.plan import make_plan
from cubecut.ingest.run import ingest
from cubecut.storage import StaleObjectError
from cubecut_infra.local.stack import LocalStack
from test_faults import CUBE_KEY, MIB, ROOT, assert_same_cube, keys, synth_ffis, targets, upload, uploads

CUT = 11


@pytest.fixture(scope="module")
def ffis(tmp_path_factory) -> list[Path]:
    return synth_ffis(tmp_path_factory)


@pytest.fixture(scope="module")
def reference(ffis, s3_endpoint) -> bytes:
    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    bucket = "crash-reference-" + os.urandom(4).hex()
    s3.create_bucket(Bucket=bucket)
    ingest(upload(s3, bucket, ffis), f"s3://{bucket}/{CUBE_KEY}", block_bytes=5 * MIB)
    return s3.get_object(Bucket=bucket, Key=CUBE_KEY)["Body"].read()


@pytest.fixture
def s3(s3_endpoint):
    storage.reset_clients()
    clear_cache()
    return boto3.client("s3", endpoint_url=s3_endpoint)


def cube_bytes(s3, bucket: str) -> bytes:
    return s3.get_object(Bucket=bucket, Key=CUBE_KEY)["Body"].read()


# ----------------------------------------------------------------------------- killed ingests
def block_1_raises(monkeypatch, error: BaseException) -> None:
    """Make the ingest's block worker raise ``error`` on block 1 (0-based) and work on the others."""
    real = ingest_run.write_block

    def dies_on_block_1(plan, index, **kwargs):
        if index == 1:
            raise error
        return real(plan, index, **kwargs)

    monkeypatch.setattr(ingest_run, "write_block", dies_on_block_1)


def test_a_failing_block_worker_aborts_and_a_rerun_is_identical(ffis, reference, bucket, s3, monkeypatch):
    urls = upload(s3, bucket, ffis)
    block_1_raises(monkeypatch, FFIError("injected: block worker died"))
    with pytest.raises(FFIError):
        ingest(urls, f"s3://{bucket}/{CUBE_KEY}", block_bytes=5 * MIB, workers=2)
    assert not uploads(s3, bucket) and not keys(s3, bucket, "cubes/")
    monkeypatch.undo()
    ingest(urls, f"s3://{bucket}/{CUBE_KEY}", block_bytes=5 * MIB, workers=2)
    assert_same_cube(cube_bytes(s3, bucket), reference)
    assert keys(s3, bucket, "cubes/") == {CUBE_KEY, CUBE_KEY + ".index.json"} and not uploads(s3, bucket)


KILLED_INGEST = textwrap.dedent("""
    import json, sys, time
    from cubecut.ingest.run import ingest

    def progress(done, total):
        print(f"block {done}/{total}", flush=True)
        time.sleep(120)  # the parent kills us here, with the upload open

    args = json.loads(sys.argv[1])
    ingest(args["urls"], args["cube"], block_bytes=5 * 1024 * 1024, workers=1, on_block=progress)
    print("finished", flush=True)
""")


@pytest.mark.slow
def test_a_killed_ingest_process_is_cleaned_by_the_janitor_and_rerun_identically(ffis, reference, bucket, s3,
                                                                                 s3_endpoint, capsys):
    urls = upload(s3, bucket, ffis)
    env = {**os.environ, "AWS_ENDPOINT_URL": s3_endpoint, "PYTHONUNBUFFERED": "1"}
    child = subprocess.Popen([sys.executable, "-c", KILLED_INGEST,
                              json.dumps({"urls": urls, "cube": f"s3://{bucket}/{CUBE_KEY}"})],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(child.stdout), daemon=True)
    reader.start()
    deadline = time.monotonic() + 90
    while not any(line.startswith("block 1/") for line in lines):
        assert child.poll() is None, child.stderr.read()
        assert time.monotonic() < deadline, "the child never finished its first block"
        time.sleep(0.05)
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL

    (upload_left,) = uploads(s3, bucket)
    parts = s3.list_parts(Bucket=bucket, Key=CUBE_KEY, UploadId=upload_left["UploadId"]).get("Parts", [])
    assert len(parts) >= 1, "killed after at least one part was uploaded"
    staging = {k for k in keys(s3, bucket, "cubes/") if ".ingest/" in k}
    assert staging and keys(s3, bucket, "cubes/") == staging, "no cube is visible, only staging objects"

    assert cli_main(["janitor", f"s3://{bucket}/cubes/", "--older-than", "0s", "--dry-run"]) == 0
    assert uploads(s3, bucket), "a dry run removes nothing"
    assert cli_main(["janitor", f"s3://{bucket}/cubes/", "--older-than", "0s"]) == 0
    printed = capsys.readouterr().out
    assert "aborted 1 multipart upload" in printed and f"deleted {len(staging)} staging object" in printed
    assert not uploads(s3, bucket) and not keys(s3, bucket, "cubes/")

    ingest(urls, f"s3://{bucket}/{CUBE_KEY}", block_bytes=5 * MIB)
    assert_same_cube(cube_bytes(s3, bucket), reference)
    assert keys(s3, bucket, "cubes/") == {CUBE_KEY, CUBE_KEY + ".index.json"} and not uploads(s3, bucket)


def test_a_killed_local_ingest_leaves_hidden_files_the_janitor_removes(ffis, tmp_path, monkeypatch):
    """A local cube is built in a hidden .partial file as large as the cube: a kill (simulated:
    the block fails and the clean-up never runs) leaves it, the receipts and the staging."""
    cube = tmp_path / "cubes" / "tess-s0007-2-1-cube.fits"
    block_1_raises(monkeypatch, KeyboardInterrupt("injected: killed"))
    monkeypatch.setattr(ingest_run, "abort_ingest", lambda plan: None)
    with pytest.raises(KeyboardInterrupt):
        ingest([str(p) for p in ffis], str(cube), block_bytes=5 * MIB, workers=1)
    left = sorted(p.name for p in cube.parent.iterdir())
    assert not cube.exists() and len(left) == 3, left  # .partial, .parts/, .staging/
    young = sweep(cube.parent, older_than="1h")
    assert young.nothing_done and young.kept_uploads == 1 and young.kept_staging > 0, "younger: kept"
    report = sweep(cube.parent, older_than=0)
    assert len(report.aborted_uploads) == 1 and len(report.deleted_objects) == young.kept_staging
    assert not list(cube.parent.iterdir())


def test_the_janitor_removes_receipts_a_killed_local_completion_left(tmp_path):
    """A local completion renames the file into place, then removes its receipts: a kill
    between the two leaves a ``.parts/`` folder with no ``.partial`` file, which is swept."""
    cube = tmp_path / "cubes" / "tess-s0007-2-1-cube.fits"
    cube.parent.mkdir()
    cube.write_bytes(b"the completed cube")
    receipts = cube.parent / f".{cube.name}.0123456789abcdef.parts"
    receipts.mkdir()
    (receipts / "00001.json").write_text('{"part": 1, "size": 18}')
    assert sweep(cube.parent, older_than="1h").kept_uploads == 1, "younger: kept"
    report = sweep(cube.parent, older_than=0)
    assert len(report.aborted_uploads) == 1
    assert sorted(p.name for p in cube.parent.iterdir()) == [cube.name] and cube.read_bytes() == b"the completed cube"


def test_the_janitor_keeps_what_is_younger_than_the_threshold(ffis, bucket, s3):
    """The local S3 server reports when each upload was really initiated (moto alone says
    2010 for all, which would make the default janitor abort a running ingest)."""
    urls = upload(s3, bucket, ffis[:3])
    plan = make_plan(urls, f"s3://{bucket}/{CUBE_KEY}", block_bytes=5 * MIB)
    (open_upload,) = uploads(s3, bucket)
    initiated = open_upload["Initiated"]
    assert abs((datetime.now(timezone.utc) - initiated).total_seconds()) < 120
    assert sweep(f"s3://{bucket}/cubes/", older_than="1h").nothing_done, "a running ingest is kept"
    kept = sweep(f"s3://{bucket}/cubes/", older_than="1h", now=initiated + timedelta(minutes=10))
    assert kept.nothing_done and kept.kept_uploads == 1 and kept.kept_staging == 5
    assert sweep(f"s3://{bucket}/other/", older_than=0).nothing_done, "only under the prefix"
    gone = sweep(f"s3://{bucket}/cubes/", older_than="1h", now=initiated + timedelta(hours=2))
    assert gone.aborted_uploads == [(CUBE_KEY, plan.upload_id)] and len(gone.deleted_objects) == 5
    assert sweep(f"s3://{bucket}/cubes/", older_than=0).nothing_done
    assert not uploads(s3, bucket) and not keys(s3, bucket, "cubes/")
    assert parse_age("90s") == timedelta(seconds=90) and parse_age("2d") == timedelta(days=2)
    with pytest.raises(ValueError):
        parse_age("soon")


def test_template_lifecycle_rule_aborts_incomplete_uploads():
    class Loader(yaml.SafeLoader):
        pass

    Loader.add_multi_constructor("!", lambda loader, suffix, node: None)
    template = yaml.load((ROOT / "template.yaml").read_text(), Loader=Loader)
    rules = template["Resources"]["DataBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
    abort = [r for r in rules if "AbortIncompleteMultipartUpload" in r]
    assert abort and abort[0]["Status"] == "Enabled" and "Prefix" not in abort[0]
    assert 1 <= abort[0]["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"] <= 7


# ----------------------------------------------------------------------------- state machine
class FinalizeFailsOnce:
    """A ``wrap`` whose first Finalize call fails: ``before`` doing anything, or ``after``
    the work (the answer is lost, as when a Lambda times out just after finishing)."""

    def __init__(self, when: str) -> None:
        self.when, self.calls = when, 0

    def __call__(self, name, handler):
        if name != "Finalize":
            return handler

        def finalize(event, context):
            self.calls += 1
            if self.calls == 1 and self.when == "before":
                raise RuntimeError("injected: Finalize crashed")
            result = handler(event, context)
            if self.calls == 1:
                raise StorageError("injected: Finalize's answer was lost")
            return result

        return finalize


def _stack_run(ffis, when: str, bucket: str):
    hook = FinalizeFailsOnce(when)
    stack = LocalStack(bucket=bucket, block_mib=5, max_concurrency=2, wrap=hook).start()
    try:
        stack.submit_ingest(ffis, "first")
        first = stack.wait_for_execution(timeout=120)
        s3 = stack.s3.client("s3")
        state = {"keys": keys(s3, bucket, "cubes/"), "uploads": uploads(s3, bucket)}
        return stack, hook, first, state, s3
    except BaseException:
        stack.stop()
        raise


@pytest.mark.slow
def test_state_machine_finalize_failure_aborts_and_a_rerun_is_identical(ffis, reference):
    stack, hook, first, state, s3 = _stack_run(ffis, "before", "crash-finalize-" + os.urandom(3).hex())
    try:
        assert first.status == "FAILED" and "Finalize crashed" in (first.cause or ""), (first.error, first.cause)
        assert state == {"keys": set(), "uploads": []}, "Abort removed the upload and the staging objects"
        again = {"ffis": [f"s3://{stack.bucket}/ingest/first/{p.name}" for p in ffis]}
        s3.put_object(Bucket=stack.bucket, Key="ingest/again/manifest.json", Body=json.dumps(again).encode())
        second = stack.wait_for_execution(timeout=120)
        assert second.status == "SUCCEEDED", (second.error, second.cause)
        assert_same_cube(cube_bytes(s3, stack.bucket), reference)
        assert keys(s3, stack.bucket, "cubes/") == {CUBE_KEY, CUBE_KEY + ".index.json"}
        assert not uploads(s3, stack.bucket)
    finally:
        stack.stop()


@pytest.mark.slow
def test_state_machine_finalize_retried_after_it_completed(ffis, reference):
    """Finalize did its work but its answer was lost; the state machine retries it. The cube
    is complete and intact either way; the execution should succeed too."""
    stack, hook, first, state, s3 = _stack_run(ffis, "after", "crash-lost-" + os.urandom(3).hex())
    try:
        assert hook.calls >= 2, "the Finalize retrier ran it again"
        assert state["keys"] == {CUBE_KEY, CUBE_KEY + ".index.json"} and not state["uploads"]
        assert_same_cube(cube_bytes(s3, stack.bucket), reference)
        assert first.status == "SUCCEEDED", (first.error, first.cause)
    finally:
        stack.stop()


def test_finalized_result_recognises_a_completed_upload_only(ffis, bucket, s3):
    urls = upload(s3, bucket, ffis[:3])
    url = f"s3://{bucket}/{CUBE_KEY}"
    plan = make_plan(urls, url, block_bytes=5 * MIB)
    assert finalized_result(url, plan.upload_id, plan.plan_id) is None, "still open"
    for block in plan.blocks:
        write_block(plan, block.index)
    result = finalize_ingest(plan)
    again = finalized_result(url, plan.upload_id, plan.plan_id)
    assert again == result
    assert finalized_result(url, plan.upload_id, "another-plan") is None, "not that plan's cube"
    s3.put_object(Bucket=bucket, Key=CUBE_KEY, Body=b"replaced")
    assert finalized_result(url, plan.upload_id, plan.plan_id) is None, "the object is no longer the plan's"


# ----------------------------------------------------------------------------- atomic replacement
@pytest.fixture(scope="module")
def two_cubes(ffis, s3_endpoint) -> dict:
    """The cube of all FFIs (A) and of the first 18 (B, other size and layout), as bytes,
    and the reference TPF flux of each at a few targets."""
    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    bucket = "two-cubes-" + os.urandom(4).hex()
    s3.create_bucket(Bucket=bucket)
    urls = upload(s3, bucket, ffis)
    out = {"coords": targets(3)}
    for name, subset in (("A", urls), ("B", urls[:18])):
        ingest(subset, f"s3://{bucket}/{name}/{CUBE_KEY}", block_bytes=5 * MIB)
        out[name] = s3.get_object(Bucket=bucket, Key=f"{name}/{CUBE_KEY}")["Body"].read()
        out[name + "-sidecar"] = s3.get_object(Bucket=bucket, Key=f"{name}/{CUBE_KEY}.index.json")["Body"].read()
        clear_cache()
        out[name + "-flux"] = [cutout(f"s3://{bucket}/{name}/{CUBE_KEY}", f"{ra} {dec}", CUT)[0][1].data["FLUX"]
                               for ra, dec in out["coords"]]
    out["ffi_urls"] = urls
    clear_cache()
    return out


def _which(flux: np.ndarray, cubes: dict, i: int) -> str:
    for name in ("A", "B"):
        expected = cubes[name + "-flux"][i]
        if flux.shape == expected.shape and np.array_equal(flux, expected, equal_nan=True):
            return name
    return "mix"


def test_a_cube_replaced_between_index_and_row_reads_is_reloaded(two_cubes, bucket, s3, monkeypatch):
    """The index says A; the cube is swapped for B before the rows are read: the If-Match
    reads fail with StaleObjectError, the index is rebuilt from the cube, the result is B."""
    url = f"s3://{bucket}/{CUBE_KEY}"
    s3.put_object(Bucket=bucket, Key=CUBE_KEY, Body=two_cubes["A"])
    s3.put_object(Bucket=bucket, Key=CUBE_KEY + ".index.json",
                  Body=json.dumps({**json.loads(two_cubes["A-sidecar"]),
                                   "cube_etag": s3.head_object(Bucket=bucket, Key=CUBE_KEY)["ETag"]}).encode())
    assert load_index(url).nt == 24
    real, swaps, stale = cutout_engine.start_chunks, [], []

    def swap_then_read(source, index, boxes, threads, arrived):
        if not swaps:
            swaps.append(s3.put_object(Bucket=bucket, Key=CUBE_KEY, Body=two_cubes["B"]))  # sidecar still says A
        pending = real(source, index, boxes, threads, arrived)

        def wait():
            try:
                return pending()
            except StaleObjectError as exc:
                stale.append(exc)
                raise

        return wait

    monkeypatch.setattr(cutout_engine, "start_chunks", swap_then_read)
    ra, dec = two_cubes["coords"][0]
    flux = cutout(url, f"{ra} {dec}", CUT)[0][1].data["FLUX"]
    assert len(stale) == 1 and _which(flux, two_cubes, 0) == "B"
    assert load_index(url).nt == 18, "the cached index is the rebuilt one"


@pytest.mark.slow
def test_readers_during_a_reingest_see_the_old_or_the_new_cube_never_a_mix(two_cubes, bucket, s3):
    url = f"s3://{bucket}/{CUBE_KEY}"
    ingest(two_cubes["ffi_urls"], url, block_bytes=5 * MIB)  # A is in place, with its sidecar
    seen: list[str] = []
    errors: list[BaseException] = []
    done = threading.Event()

    def reader(offset: int) -> None:
        i = offset
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (not done.is_set() or i < offset + 6):
            k = i % len(two_cubes["coords"])
            ra, dec = two_cubes["coords"][k]
            try:
                seen.append(_which(cutout(url, f"{ra} {dec}", CUT)[0][1].data["FLUX"], two_cubes, k))
            except StaleObjectError:
                seen.append("stale-twice")  # replaced again during the reload: a named error, never a mix
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)
                return
            i += 1

    threads = [threading.Thread(target=reader, args=(n,)) for n in range(3)]
    for thread in threads:
        thread.start()
    try:
        ingest(two_cubes["ffi_urls"][:18], url, block_bytes=5 * MIB)  # A -> B
    finally:
        done.set()
        for thread in threads:
            thread.join(timeout=90)
    assert not errors, errors
    assert "mix" not in seen, seen
    assert set(seen) <= {"A", "B", "stale-twice"} and seen[-1] == "B", seen
    clear_cache()
    ra, dec = two_cubes["coords"][0]
    assert _which(cutout(url, f"{ra} {dec}", CUT)[0][1].data["FLUX"], two_cubes, 0) == "B"
    print(f"\nreaders during re-ingest: {len(seen)} cutouts, {seen.count('A')} old, {seen.count('B')} new")
