"""A failing S3-event ingest is visible: ``manifest.error.json`` beside the manifest and an
error log line with the manifest key and the reason (local stack: S3 event -> on_upload ->
state machine -> Abort)."""
from __future__ import annotations

import json

import pytest

from cubecut.errors import ManifestError
from cubecut.ingest.inputs import error_report_url, parse_manifest
from cubecut_infra.local.stack import LocalStack
from stack_fixtures import wait_for_json


@pytest.mark.slow
def test_failed_manifests_are_reported_beside_them_and_logged(caplog):
    with LocalStack(bucket="cubecut-manifests", block_mib=5) as stack:
        s3 = stack.s3.client("s3")
        s3.put_object(Bucket=stack.bucket, Key="ingest/bad/not-a-fits.fits", Body=b"hello, not FITS" * 300)
        s3.put_object(Bucket=stack.bucket, Key="ingest/bad/manifest.json",
                      Body=json.dumps({"ffis": ["not-a-fits.fits", "missing.fits"]}).encode())
        run = stack.wait_for_execution(timeout=120)
        assert run.status == "FAILED"
        report_bad = wait_for_json(s3, stack.bucket, "ingest/bad/manifest.error.json")
        assert report_bad["manifest"] == f"s3://{stack.bucket}/ingest/bad/manifest.json"
        assert report_bad["error"] in {"FFIError", "ObjectNotFoundError"} and report_bad["cause"], report_bad
        assert "hello" not in json.dumps(report_bad), "a report quotes no file content"

        s3.put_object(Bucket=stack.bucket, Key="ingest/garbled/manifest.json", Body=b"{not json")
        report = wait_for_json(s3, stack.bucket, "ingest/garbled/manifest.error.json")
        assert report["error"] == "ManifestError" and "not valid JSON" in report["cause"]
    errors = [(r.getMessage(), getattr(r, "manifest", ""), getattr(r, "reason", ""))
              for r in caplog.records if r.levelname == "ERROR"]
    assert ("ingest of a manifest failed", f"s3://{stack.bucket}/ingest/bad/manifest.json", report_bad["error"]) \
        in errors, errors
    assert any(m == "rejected ingest manifest" and manifest.endswith("ingest/garbled/manifest.json")
               and "not valid JSON" in reason for m, manifest, reason in errors), errors


@pytest.mark.parametrize("body, message", [
    (b"{not json", "not valid JSON"), (b'{"ffis": []}', "non-empty list"), (b'{"ffis": [1]}', "non-empty list"),
    (b'{"ffis": ["a.fits"], "sectr": 1}', "unknown key"), (b"\xff\xfe", "UTF-8"),
])
def test_bad_manifests_get_a_named_error(body, message):
    with pytest.raises(ManifestError, match=message):
        parse_manifest(body, "s3://b/ingest/x/manifest.json")


def test_manifest_format_and_report_location():
    parsed = parse_manifest(b'{"ffis": ["a.fits", "s3://other/b.fits"], "sector": 3}', "s3://b/ingest/x/manifest.json")
    assert parsed == {"ffis": ["s3://b/ingest/x/a.fits", "s3://other/b.fits"], "sector": 3}
    assert parse_manifest(b"# FFIs\na.fits\n", "s3://b/ingest/x/list.txt") == {"ffis": ["s3://b/ingest/x/a.fits"]}
    assert error_report_url("s3://b/ingest/x/manifest.json") == "s3://b/ingest/x/manifest.error.json"
    assert not error_report_url("s3://b/ingest/x/manifest.json").endswith("/manifest.json")


def _failing(step: str, action):
    """A LocalStack wrap: runs ``action(event)`` before the real handler of ``step``."""
    def wrap(name, handler):
        if name != step:
            return handler

        def wrapped(event, context):
            action(event)
            return handler(event, context)

        return wrapped

    return wrap


@pytest.mark.slow
@pytest.mark.parametrize("step, error", [("Block", "States.ExceedToleratedFailureThreshold"),
                                         ("Finalize", "ConcurrentWriteError")])
def test_a_manifest_ingest_failing_after_plan_is_reported_beside_it(tmp_path, step, error):
    """A block failure, and a lost race (another writer commits the cube between Plan and
    Finalize): both after Plan, both reported in manifest.error.json (issue 25, finding 5)."""
    from cubecut.errors import FFIError
    from cubecut.synth import make_sector

    ffis = make_sector(tmp_path / "ffis", sector=7, camera=2, ccd=3, frames=3, shape=(40, 60), seed=4)
    bucket = f"cubecut-after-plan-{step.lower()}"

    def act(event):
        if step == "Block":
            raise FFIError("this block's FFI went bad")
        import boto3

        boto3.client("s3").put_object(Bucket=bucket, Key="cubes/tess-s0007-2-3-cube.fits", Body=b"another writer")

    with LocalStack(bucket=bucket, block_mib=5, wrap=_failing(step, act)) as stack:
        stack.submit_ingest(ffis, "race")
        run = stack.wait_for_execution(timeout=120)
        assert (run.status, run.error) == ("FAILED", error), run
        report = wait_for_json(stack.s3.client("s3"), stack.bucket, "ingest/race/manifest.error.json")
    assert report["error"] == error and report["cause"], report
    assert report["cube"] == f"s3://{bucket}/cubes/tess-s0007-2-3-cube.fits"
