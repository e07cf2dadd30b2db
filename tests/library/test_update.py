"""Cube update: appending FFIs gives the cube that one ingest of all FFIs gives (bytes,
apart from DATE), stays float32, and replaces the old cube atomically (local and S3)."""
from __future__ import annotations

import os
import shutil
from dataclasses import replace
from pathlib import Path

import boto3
import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.io import fits

import cubecut
from cubecut.cube.index import CubeIndex
from cubecut.cutout import ffi_wcs, load_index
from cubecut.errors import ConflictError, DuplicateTimeError, MixedFFIError, NoInputError
from cubecut.ingest import transpose
from cubecut.ingest.finalize import abort_ingest
from cubecut.ingest.run import ingest
from cubecut.ingest.update import plan_update, update_cube
from cubecut.storage import get_bytes, put_bytes
from cubecut.synth import make_sector

NROWS, NCOLS, NT = 40, 48, 14
#: Small blocks, so that an update is several parts (headers, middle rows, table) locally.
BLOCK = 20_000


@pytest.fixture(scope="module")
def ffis(tmp_path_factory) -> list[str]:
    return [str(p) for p in make_sector(tmp_path_factory.mktemp("update"), sector=5, camera=2, ccd=3, frames=NT,
                                        shape=(NROWS, NCOLS), seed=3)]


@pytest.fixture(scope="module")
def reference(ffis, tmp_path_factory) -> Path:
    """The cube ingested in one go."""
    cube = tmp_path_factory.mktemp("reference") / "tess-s0005-2-3-cube.fits"
    ingest(ffis, str(cube))
    return cube


def primary_cards(header_text: str) -> list[tuple]:
    """The cards of a primary header but DATE and the time stamp in DATASUM's comment."""
    return [(c.keyword, c.value, "" if c.keyword == "DATASUM" else c.comment)
            for c in fits.Header.fromstring(header_text).cards if c.keyword != "DATE"]


def assert_same_cube(ours: bytes, theirs: bytes) -> None:
    """Same primary cards apart from DATE/DATASUM comment; every byte after it equal."""
    assert len(ours) == len(theirs)
    end = next(i for i in range(0, len(theirs), 80) if theirs[i:i + 80] == b"END" + b" " * 77)
    size = -(-(end + 80) // 2880) * 2880
    assert primary_cards(ours[:size].decode("ascii")) == primary_cards(theirs[:size].decode("ascii"))
    assert ours[size:] == theirs[size:], "image header, pixels and table"


def assert_same_index(a: CubeIndex, b: CubeIndex) -> None:
    assert primary_cards(a.primary_header) == primary_cards(b.primary_header)
    assert replace(a, primary_header="", cube_etag=None) == replace(b, primary_header="", cube_etag=None)


@pytest.mark.parametrize("split", ["append", "interleave", "before"])
def test_updated_cube_equals_cube_ingested_in_one_go(ffis, reference, tmp_path, split):
    old, new = {"append": (ffis[:8], ffis[8:]), "interleave": (ffis[::2], ffis[1::2]),
                "before": (ffis[6:], ffis[:6])}[split]
    cube = tmp_path / "tess-s0005-2-3-cube.fits"
    ingest(old, str(cube))
    result = update_cube(str(cube), new, block_bytes=BLOCK)
    assert (result.nt, result.added, result.skipped) == (NT, len(new), [])
    assert_same_cube(cube.read_bytes(), reference.read_bytes())
    assert_same_index(load_index(cube), load_index(reference))
    assert sorted(p.name for p in tmp_path.iterdir()) == [cube.name, cube.name + ".index.json"], "no leftovers"


def test_update_is_several_parts_and_keeps_float32_and_stop_times(ffis, tmp_path):
    cube = tmp_path / "cube.fits"
    ingest(ffis[:5], str(cube))
    plan, _ = plan_update(str(cube), ffis[5:], block_bytes=BLOCK)
    assert len(plan.blocks) > 2 and plan.blocks[0].head and plan.blocks[-1].tail
    abort_ingest(plan)  # a plan is staged like an ingest's: abort it before updating for real
    update_cube(str(cube), ffis[5:], block_bytes=BLOCK)
    last = fits.getheader(ffis[-1], 1)
    with fits.open(cube) as hdul:
        assert hdul[1].data.dtype == np.dtype(">f4") and hdul[1].header["BITPIX"] == -32
        assert hdul[1].data.shape == (NROWS, NCOLS, NT, 2)
        assert (hdul[0].header["TSTOP"], hdul[0].header["DATE-END"]) == (last["TSTOP"], last["DATE-END"])
        assert hdul[2].data["FFI_FILE"].tolist() == [Path(f).name for f in ffis]
        np.testing.assert_array_equal(hdul[1].data[:, :, -1, 0], fits.getdata(ffis[-1], 1))


def test_ffis_already_in_the_cube_are_skipped(ffis, reference, tmp_path):
    cube = tmp_path / "cube.fits"
    ingest(ffis[:8], str(cube))
    result = update_cube(str(cube), ffis[6:], block_bytes=BLOCK)
    assert result.skipped == [Path(f).name for f in ffis[6:8]] and result.added == NT - 8
    assert_same_cube(cube.read_bytes(), reference.read_bytes())
    with pytest.raises(NoInputError, match="already in"):
        update_cube(str(cube), ffis[:3])


def test_bad_additions_leave_the_cube_untouched(ffis, tmp_path):
    cube = tmp_path / "cube.fits"
    ingest(ffis[:6], str(cube))
    before = cube.read_bytes()
    other = make_sector(tmp_path / "other", sector=5, camera=2, ccd=4, frames=1, shape=(NROWS, NCOLS), seed=3)
    with pytest.raises(MixedFFIError, match="camera/CCD"):
        update_cube(str(cube), [str(p) for p in other])
    twin = tmp_path / "renamed-s0005-2-3-0000-s_ffic.fits"
    shutil.copy(ffis[2], twin)
    with pytest.raises(DuplicateTimeError, match="start time"):
        update_cube(str(cube), [str(twin)])
    with pytest.raises(NoInputError):
        update_cube(str(cube), [])
    assert cube.read_bytes() == before


def test_a_failure_midway_aborts_and_leaves_the_old_cube(ffis, tmp_path, monkeypatch):
    cube = tmp_path / "cube.fits"
    ingest(ffis[:6], str(cube))
    before = cube.read_bytes()
    calls = []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) > 3:
            raise OSError("disk on fire")
        return real(*args, **kwargs)

    real = transpose._read_rows
    monkeypatch.setattr(transpose, "_read_rows", failing)
    with pytest.raises(OSError, match="disk on fire"):
        update_cube(str(cube), ffis[6:], block_bytes=BLOCK, workers=1)
    assert cube.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [cube.name, cube.name + ".index.json"]


def test_a_cube_replaced_meanwhile_is_not_overwritten(ffis, tmp_path):
    cube = tmp_path / "cube.fits"
    ingest(ffis[:6], str(cube))

    def replace_cube(done: int, total: int) -> None:
        if done == 1:  # replaced atomically, as an ingest replaces it, while blocks still read
            fresh = cube.with_name("fresh.fits")
            fresh.write_bytes(cube.read_bytes())
            os.utime(fresh, ns=(1, 1))
            os.replace(fresh, cube)

    with pytest.raises(ConflictError, match="changed since|replaced the cube first"):
        update_cube(str(cube), ffis[6:], block_bytes=BLOCK, on_block=replace_cube)
    assert load_index(cube, refresh=True).nt == 6


def test_update_on_s3_replaces_the_object_and_readers_follow(ffis, reference, bucket):
    urls = []
    for path in ffis:
        url = f"s3://{bucket}/ffis/{Path(path).name}"
        put_bytes(url, Path(path).read_bytes())
        urls.append(url)
    cube = f"s3://{bucket}/cubes/tess-s0005-2-3-cube.fits"
    ingest(urls[:9], cube)
    index = load_index(cube)
    before = cubecut.cutout(cube, _centre(index), 3)[0]
    assert len(before[1].data) == 9
    result = update_cube(cube, urls[9:])
    assert result.etag and result.etag != index.cube_etag
    assert_same_cube(get_bytes(cube)[0], reference.read_bytes())
    after = cubecut.cutout(cube, _centre(index), 3)[0]  # reads the new sidecar
    assert len(after[1].data) == NT
    np.testing.assert_array_equal(after[1].data["FLUX"][:9], before[1].data["FLUX"])
    s3 = boto3.client("s3")
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert load_index(cube, refresh=True).cube_etag == result.etag


def _centre(index: CubeIndex) -> SkyCoord:
    world = ffi_wcs(index).pixel_to_world(46.0, 20.0)
    return SkyCoord(world.ra, world.dec)


@pytest.mark.slow
def test_update_runs_on_the_state_machine_from_a_manifest(ffis, reference):
    """The same plan -> blocks -> finalize steps as an ingest, so a manifest with "update"
    appends FFIs through the state machine (S3 event -> on_upload -> Plan/Block/Finalize)."""
    import json

    from cubecut_infra.local.stack import LocalStack

    with LocalStack(bucket="cubecut-update", block_mib=5) as stack:
        s3 = stack.s3.client("s3")
        for path in ffis:
            s3.upload_file(path, stack.bucket, f"ingest/update/{Path(path).name}")
        cube = f"s3://{stack.bucket}/cubes/tess-s0005-2-3-cube.fits"
        ingest([f"s3://{stack.bucket}/ingest/update/{Path(p).name}" for p in ffis[:9]], cube)
        manifest = {"ffis": [Path(p).name for p in ffis[9:]], "update": cube}
        s3.put_object(Bucket=stack.bucket, Key="ingest/update/manifest.json", Body=json.dumps(manifest).encode())
        run = stack.wait_for_execution(timeout=180)
        assert run.status == "SUCCEEDED", (run.error, run.cause)
        assert_same_cube(get_bytes(cube)[0], reference.read_bytes())
        assert load_index(cube, refresh=True).nt == NT
        assert s3.list_multipart_uploads(Bucket=stack.bucket).get("Uploads", []) == []


def test_cli_update_exits_0_and_says_what_it_did(ffis, reference, tmp_path, capsys):
    from cubecut_infra.cli import main

    cube = tmp_path / "tess-s0005-2-3-cube.fits"
    ingest(ffis[:8], str(cube))
    assert main(["update", str(cube), *ffis[6:], "-q"]) == 0
    out = capsys.readouterr().out
    assert f"({NT} frames: {NT - 8} added, 2 already there)" in out
    assert_same_cube(cube.read_bytes(), reference.read_bytes())
    assert main(["update", str(cube), *ffis[:2], "-q"]) == 0, "nothing new: a re-run of a cron job succeeds"
    captured = capsys.readouterr()
    assert captured.out.splitlines() == [f"nothing to add: all 2 FFI(s) are already in {cube}"]
    assert captured.err == ""


def test_a_tica_cube_is_named_as_tica_in_messages(tmp_path):
    ffis = make_sector(tmp_path / "tica", sector=5, camera=2, ccd=3, frames=3, shape=(NROWS, NCOLS), product="tica",
                       seed=4)
    cube = tmp_path / "tica-cube.fits"
    ingest([str(p) for p in ffis[:2]], str(cube))
    other = make_sector(tmp_path / "other", sector=5, camera=2, ccd=4, frames=1, shape=(NROWS, NCOLS),
                        product="tica", seed=5)
    with pytest.raises(MixedFFIError, match="the cube tica-s0005-2-3 has"):
        update_cube(str(cube), [str(p) for p in other])
