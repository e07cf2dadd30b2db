"""Manifests name data, never places (issue 25, finding 3).

A deployment's ingest reads FFIs only under its ingest prefix or an operator-allowed
``s3://`` prefix, and writes a cube only at TESScut's name under its cube prefix; the CLI
keeps reading local paths. Black-box: S3 events on the local stack, as the audit did.
"""
from __future__ import annotations

import json

import pytest

from cubecut.errors import ForbiddenInputError
from cubecut.ingest.inputs import parse_manifest, resolve_inputs
from cubecut.ingest.policy import LOCAL, InputPolicy
from cubecut.synth import make_sector
from cubecut_infra.local.stack import LocalStack
from stack_fixtures import wait_for_json

STRICT = InputPolicy.deployment("data", "ingest/", "cubes/", ("arn:aws:s3:::stpubdata/tess/public/ffi/*",))
MANIFEST = "s3://data/ingest/x/manifest.json"


@pytest.mark.parametrize("entry", [
    "/etc/passwd", "file:///etc/passwd", "file:/etc/passwd", "http://127.0.0.1:9/a.fits", "https://example.org/a.fits",
    "memory://a.fits", "~/a.fits", "../../cubes/tess-s0001-1-1-cube.fits", "a/../../x.fits", "./a.fits",
    "s3://data/cubes/tess-s0001-1-1-cube.fits", "s3://other/ingest/a.fits", "s3://stpubdata/tess/public/other.fits",
    "s3://data/ingest/../cubes/a.fits", "s3://data/ingest/a.fits?versionId=1", "S3://data/ingest/a.fits",
])
def test_a_strict_manifest_refuses_places_outside_the_allowed_prefixes(entry):
    body = json.dumps({"ffis": [entry]}).encode()
    with pytest.raises(ForbiddenInputError) as raised:
        parse_manifest(body, MANIFEST, STRICT)
    assert len(str(raised.value)) < 400


def test_a_refusal_quotes_at_most_120_characters_of_the_name():
    with pytest.raises(ForbiddenInputError) as raised:
        parse_manifest(json.dumps({"ffis": ["/" + "a" * 5000]}).encode(), MANIFEST, STRICT)
    assert "/" + "a" * 119 + "..." in str(raised.value) and "a" * 120 not in str(raised.value)


def test_a_strict_manifest_allows_its_keys_and_the_allowed_bucket():
    body = json.dumps({"ffis": ["a.fits", "sub/b.fits", "s3://data/ingest/y/c.fits",
                                "s3://stpubdata/tess/public/ffi/s0001/d.fits"]}).encode()
    assert parse_manifest(body, MANIFEST, STRICT)["ffis"] == [
        "s3://data/ingest/x/a.fits", "s3://data/ingest/x/sub/b.fits", "s3://data/ingest/y/c.fits",
        "s3://stpubdata/tess/public/ffi/s0001/d.fits"]


@pytest.mark.parametrize("cube", ["s3://data/results/evil-cube.fits", "s3://data/cubes/sub/tess-s0001-1-1-cube.fits",
                                  "s3://data/cubes/evil.fits", "/tmp/x-cube.fits", "s3://other/cubes/",
                                  "s3://data/cubes/../results/a-cube.fits"])
@pytest.mark.parametrize("option", ["cube", "update"])
def test_a_strict_manifest_refuses_cubes_off_the_naming_rule(cube, option):
    with pytest.raises(ForbiddenInputError):
        parse_manifest(json.dumps({"ffis": ["a.fits"], option: cube}).encode(), MANIFEST, STRICT)


def test_a_planned_cube_must_be_the_name_its_ffis_give():
    name = "tess-s0001-1-1-cube.fits"
    STRICT.check_planned("s3://data/cubes/", f"s3://data/cubes/{name}", name)
    STRICT.check_planned(f"s3://data/cubes/{name}", f"s3://data/cubes/{name}", name)
    with pytest.raises(ForbiddenInputError, match="does not match its FFIs"):
        STRICT.check_planned("s3://data/cubes/tess-s0002-1-1-cube.fits", f"s3://data/cubes/{name}", name)


def test_the_cli_keeps_local_paths(tmp_path):
    ffi = tmp_path / "a.fits"
    ffi.write_bytes(b"")
    assert resolve_inputs([str(ffi)]) == [str(ffi.resolve())]
    assert parse_manifest(json.dumps({"ffis": [str(ffi)]}).encode(), str(tmp_path / "m.json"), LOCAL)["ffis"] == \
        [str(ffi)]


@pytest.mark.slow
def test_s3_event_manifests_cannot_reach_outside_the_bucket(tmp_path):
    """The audit's attacks as S3 events: each is refused in manifest.error.json, which
    quotes no file content, and nothing is written outside the ingest prefix."""
    ffis = make_sector(tmp_path / "ffis", sector=7, camera=2, ccd=3, frames=3, shape=(40, 60), seed=1)
    with LocalStack(bucket="cubecut-policy", block_mib=5) as stack:
        s3 = stack.s3.client("s3")
        for path in ffis:
            s3.upload_file(str(path), stack.bucket, f"ingest/ok/{path.name}")
        attacks = {
            "passwd": {"ffis": ["/etc/passwd"]},
            "file": {"ffis": ["file:///etc/passwd"]},
            "http": {"ffis": [f"{stack.s3.endpoint}/{stack.bucket}/ingest/ok/{ffis[0].name}"]},
            "dotdot": {"ffis": [f"../ok/{ffis[0].name}", "../../cubes/x.fits"]},
            "evil-key": {"ffis": [f"../ok/{p.name}" for p in ffis], "cube": f"s3://{stack.bucket}/results/evil-cube.fits"},
        }
        for name, manifest in attacks.items():
            s3.put_object(Bucket=stack.bucket, Key=f"ingest/{name}/manifest.json", Body=json.dumps(manifest).encode())
        for name in attacks:
            report = wait_for_json(s3, stack.bucket, f"ingest/{name}/manifest.error.json")
            assert report["error"] == "ForbiddenInputError", (name, report)
            assert "root:" not in json.dumps(report) and "SIMPLE" not in report["cause"], report

        # A cube name that is not the FFIs' (sector 7, camera 2, CCD 3): refused after the plan,
        # which is undone: nothing stays under the cube prefix.
        wrong = {"ffis": [f"s3://{stack.bucket}/ingest/ok/{p.name}" for p in ffis],
                 "cube": f"s3://{stack.bucket}/cubes/tess-s0001-1-1-cube.fits"}
        s3.put_object(Bucket=stack.bucket, Key="ingest/wrong/manifest.json", Body=json.dumps(wrong).encode())
        run = stack.wait_for_execution(timeout=120)
        assert run.status == "FAILED" and run.error == "ForbiddenInputError", run
        report = wait_for_json(s3, stack.bucket, "ingest/wrong/manifest.error.json")
        assert "tess-s0007-2-3-cube.fits" in report["cause"], report

        # The same FFIs without a cube name: the cube gets its TESScut name.
        s3.put_object(Bucket=stack.bucket, Key="ingest/ok/manifest.json",
                      Body=json.dumps({"ffis": [p.name for p in ffis]}).encode())
        run = stack.wait_for_execution(timeout=120)
        assert run.status == "SUCCEEDED", run
        keys = {o["Key"] for o in s3.list_objects_v2(Bucket=stack.bucket).get("Contents", [])}
        assert {k for k in keys if not k.startswith("ingest/")} == {
            "cubes/tess-s0007-2-3-cube.fits", "cubes/tess-s0007-2-3-cube.fits.index.json"}, keys
