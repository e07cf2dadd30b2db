"""The consistency model (docs/architecture.md): one named test per way the audit broke it.

Cube versions are ETags; the sidecar is bound to one version; commits are conditional on
the version a writer started from; a writer that lost is told so and leaves nothing.
Everything runs against the local S3 server (moto behind cubecut's conditional-write
middleware) on 127.0.0.1, and a kill is a real ``os._exit`` in a child process.
"""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import boto3
import numpy as np
import pytest
from astropy.coordinates import SkyCoord

import cubecut
from cubecut import storage
from cubecut.cube.catalog import CubeCatalog
from cubecut.cube.sidecar import describes, read_sidecar
from cubecut.cutout import clear_cache, ffi_wcs, load_index
from cubecut.errors import ConcurrentWriteError, ConflictError, NoInputError, ObjectNotFoundError, UploadGoneError
from cubecut.ingest.transpose import write_block
from cubecut.ingest.finalize import abort_ingest, finalize_ingest
from cubecut.ingest.janitor import sweep
from cubecut.ingest.plan import make_plan
from cubecut.ingest.run import ingest, run_plan
from cubecut.ingest.plan import PLAN_KEY, REPLACES_KEY
from cubecut.ingest.update import plan_update, update_cube
from cubecut.storage import Location, head
from cubecut.synth import make_sector

ROOT = Path(__file__).resolve().parents[2]
NT, SHAPE = 12, (24, 32)
KEY = "cubes/tess-s0003-1-2-cube.fits"


@pytest.fixture(scope="module")
def ffis(tmp_path_factory) -> list[Path]:
    return make_sector(tmp_path_factory.mktemp("consistency"), sector=3, camera=1, ccd=2, frames=NT, shape=SHAPE,
                       seed=5)


@pytest.fixture
def s3(s3_endpoint):
    storage.reset_clients()
    clear_cache()
    return boto3.client("s3", endpoint_url=s3_endpoint)


@pytest.fixture
def urls(s3, bucket, ffis) -> list[str]:
    for path in ffis:
        s3.upload_file(str(path), bucket, f"ffis/{path.name}")
    return [f"s3://{bucket}/ffis/{path.name}" for path in ffis]


def centre(cube: str) -> SkyCoord:
    world = ffi_wcs(load_index(cube, refresh=True)).pixel_to_world(SHAPE[1] / 2, SHAPE[0] / 2)
    return SkyCoord(world.ra, world.dec)


def leftovers(s3, bucket: str) -> tuple[list, list]:
    """Open uploads and staging objects in the bucket."""
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    return s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []), [k for k in keys if ".ingest/" in k]


def assert_sidecar_describes_cube(cube: str) -> None:
    index, _ = read_sidecar(Location.parse(cube))
    info = head(cube)
    assert describes(index, info.etag, info.size), "the sidecar must describe the cube beside it"
    fresh = load_index(cube, refresh=True)  # built from the cube itself
    assert (index.nt, index.tstart, index.ffi_files) == (fresh.nt, fresh.tstart, fresh.ffi_files)


def planned_and_written(ffi_urls: list[str], cube: str):
    plan = make_plan(ffi_urls, cube)
    for block in plan.blocks:
        write_block(plan, block.index)
    return plan


def test_finalize_never_adopts_a_strangers_cube_of_the_same_size(s3, bucket, urls):
    """The upload of B is aborted (janitor, lifecycle rule) while an older cube A of the
    same frame count sits at the key: B's Finalize must fail, not pair B's times with A's pixels."""
    cube = f"s3://{bucket}/{KEY}"
    a = ingest(urls[:6], cube)
    before = cubecut.cutout(cube, centre(cube), 3)[0][1].data
    plan_b = planned_and_written(urls[6:], cube)
    assert plan_b.layout.total_bytes == a.size, "same size: the old check would have adopted A"
    s3.abort_multipart_upload(Bucket=bucket, Key=KEY, UploadId=plan_b.upload_id)
    with pytest.raises(UploadGoneError, match="is gone"):
        finalize_ingest(plan_b)
    assert head(cube).etag == a.etag
    assert_sidecar_describes_cube(cube)
    clear_cache()
    after = cubecut.cutout(cube, centre(cube), 3)[0][1].data
    for column in ("TIME", "FLUX", "FFI_FILE"):
        np.testing.assert_array_equal(after[column], before[column])
    assert leftovers(s3, bucket) == ([], [])


def test_two_concurrent_ingests_of_one_key_one_wins_and_the_other_is_told(s3, bucket, urls):
    cube = f"s3://{bucket}/{KEY}"
    plan_a, plan_b = planned_and_written(urls[:6], cube), planned_and_written(urls[5:], cube)
    results: dict[str, object] = {}
    start = threading.Barrier(2)

    def finish(name, plan):
        start.wait()
        try:
            results[name] = finalize_ingest(plan)
        except ConcurrentWriteError as exc:
            results[name] = exc

    threads = [threading.Thread(target=finish, args=item) for item in (("A", plan_a), ("B", plan_b))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [n for n, r in results.items() if not isinstance(r, Exception)]
    assert len(winners) == 1, results
    loser = "B" if winners == ["A"] else "A"
    assert "replaced the cube first" in str(results[loser])
    assert head(cube).etag == results[winners[0]].etag
    assert_sidecar_describes_cube(cube)
    assert leftovers(s3, bucket) == ([], []), "the loser leaves nothing behind"


def test_update_racing_a_reingest_loses_and_the_reingest_stays(s3, bucket, urls):
    cube = f"s3://{bucket}/{KEY}"
    ingest(urls[:6], cube)
    plan, _ = plan_update(cube, urls[6:9])
    reingest = ingest(urls[3:], cube)  # commits while the update is in flight
    with pytest.raises(ConflictError):
        run_plan(plan)
    assert head(cube).etag == reingest.etag
    assert load_index(cube, refresh=True).ffi_files == [Path(u).name for u in urls[3:]]
    assert_sidecar_describes_cube(cube)
    assert leftovers(s3, bucket) == ([], [])


def test_cube_versions_name_their_plan_and_predecessor(s3, bucket, urls):
    cube = f"s3://{bucket}/{KEY}"
    first = ingest(urls[:6], cube)
    assert head(cube).metadata[REPLACES_KEY] == "none" and head(cube).metadata[PLAN_KEY]
    second = update_cube(cube, urls[6:])
    assert head(cube).metadata[REPLACES_KEY] == first.etag.strip('"')
    assert second.etag != first.etag and (second.added, second.nt) == (NT - 6, NT)


_KILL_BEFORE_SIDECAR = textwrap.dedent("""
    import os, sys
    from cubecut.ingest import finalize
    finalize.publish_index = lambda *args, **kwargs: os._exit(9)   # kill -9 right after the commit
    from cubecut.ingest.run import ingest
    ingest(sys.argv[2:], sys.argv[1])
""")


def test_a_kill_between_commit_and_sidecar_is_detected_and_repaired(s3, s3_endpoint, bucket, urls, tmp_path):
    cube = f"s3://{bucket}/{KEY}"
    ingest(urls[:6], cube)
    old_sidecar = read_sidecar(Location.parse(cube))[0]
    clear_cache()
    load_index(cube)  # a warm reader holding the old index
    env = {**__import__("os").environ, "AWS_ENDPOINT_URL": s3_endpoint}
    done = subprocess.run([sys.executable, "-c", _KILL_BEFORE_SIDECAR, cube, *urls[2:]], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 9, done.stderr
    assert read_sidecar(Location.parse(cube))[0] == old_sidecar, "the old sidecar beside the new cube"
    assert not describes(old_sidecar, head(cube).etag)
    # readers: the warm one and a fresh one both cut the new cube
    new_files = [Path(u).name for u in urls[2:]]
    tpf = cubecut.cutout(cube, centre(cube), 3)[0]
    assert len(tpf[1].data) == len(new_files)
    clear_cache()
    assert len(cubecut.cutout(cube, centre(cube), 3)[0][1].data) == len(new_files)
    # the catalog (and so /v1/cubes and TESScut's sector list) rebuilds the index from the cube
    (entry,) = CubeCatalog(f"s3://{bucket}/cubes/", ttl=0).entries()
    assert entry.index.ffi_files == new_files and describes(entry.index, head(cube).etag)
    # update with nothing new repairs the sidecar instead of answering "already in" forever
    with pytest.raises(NoInputError, match="rebuilt from the cube"):
        update_cube(cube, urls[2:4])
    assert_sidecar_describes_cube(cube)


def test_the_janitor_repairs_a_stale_sidecar(s3, s3_endpoint, bucket, urls):
    cube = f"s3://{bucket}/{KEY}"
    ingest(urls[:6], cube)
    env = {**__import__("os").environ, "AWS_ENDPOINT_URL": s3_endpoint}
    subprocess.run([sys.executable, "-c", _KILL_BEFORE_SIDECAR, cube, *urls[4:]], env=env, timeout=300)
    report = sweep(f"s3://{bucket}/cubes/", older_than=0)
    assert report.repaired_indexes == [cube], report.summary()
    assert_sidecar_describes_cube(cube)
    assert leftovers(s3, bucket) == ([], [])
    assert sweep(f"s3://{bucket}/cubes/", older_than=0).nothing_done


def test_abort_after_a_completed_finalize_keeps_the_committed_cube(s3, bucket, urls):
    """What the ASL and template say: a committed cube is never deleted by Abort (it is
    complete and may have been read); Abort removes only the upload and the staging."""
    cube = f"s3://{bucket}/{KEY}"
    plan = planned_and_written(urls[:6], cube)
    result = finalize_ingest(plan)
    abort_ingest(plan)
    abort_ingest(plan)  # retried
    assert head(cube).etag == result.etag
    assert_sidecar_describes_cube(cube)
    assert leftovers(s3, bucket) == ([], [])


def test_finalize_retried_after_it_committed_publishes_and_succeeds(s3, bucket, urls, monkeypatch):
    cube = f"s3://{bucket}/{KEY}"
    ingest(urls[:6], cube)
    plan = planned_and_written(urls[6:], cube)
    from cubecut.ingest import finalize

    real = finalize.publish_index
    monkeypatch.setattr(finalize, "publish_index", lambda *a, **k: (_ for _ in ()).throw(TimeoutError("lost")))
    with pytest.raises(TimeoutError):
        finalize_ingest(plan)
    monkeypatch.setattr(finalize, "publish_index", real)
    result = finalize_ingest(plan)  # the retry: the upload is gone, the object is this plan's
    assert result.etag == head(cube).etag and result.published
    assert_sidecar_describes_cube(cube)


def test_finalize_retried_after_it_finished_returns_the_same_result(s3, bucket, urls):
    """The first Finalize finished (cube committed, sidecar published, staging deleted) but
    its answer was lost: the retry with the same plan returns that cube, it does not fail."""
    cube = f"s3://{bucket}/{KEY}"
    plan = planned_and_written(urls[:6], cube)
    first = finalize_ingest(plan)
    again = finalize_ingest(plan)
    assert (again.cube, again.index, again.etag, again.size, again.nt) == (
        first.cube, first.index, first.etag, first.size, first.nt)
    assert_sidecar_describes_cube(cube)
    assert leftovers(s3, bucket) == ([], [])
    ingest(urls[6:], cube)  # another writer replaced it: the plan's outcome is unknown now
    with pytest.raises(ObjectNotFoundError, match="staging"):
        finalize_ingest(plan)


def test_a_local_cube_obeys_the_same_rules(tmp_path, ffis):
    cube = str(tmp_path / "cube.fits")
    plan_a = planned_and_written([str(p) for p in ffis[:6]], cube)
    plan_b = planned_and_written([str(p) for p in ffis[6:]], cube)
    finalize_ingest(plan_a)
    with pytest.raises(ConcurrentWriteError):
        finalize_ingest(plan_b)
    assert_sidecar_describes_cube(cube)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cube.fits", "cube.fits.index.json"]


def test_permanent_conflicts_are_never_retried_by_the_state_machine():
    """Step Functions matches error names exactly and applies the first retrier that
    matches; States.TaskFailed would otherwise retry a StaleObjectError six times."""
    asl = json.loads((ROOT / "infra" / "statemachines" / "ingest.asl.json").read_text().replace(
        "${MaxConcurrency}", "1"))
    block = asl["States"]["Blocks"]["ItemProcessor"]["States"]["Block"]
    for name in ("StaleObjectError", "ConcurrentWriteError", "UploadGoneError"):
        first = next(r for r in block["Retry"] if name in r["ErrorEquals"] or "States.TaskFailed" in r["ErrorEquals"])
        assert first["MaxAttempts"] == 0, name
    for retrier in asl["States"]["Finalize"]["Retry"]:
        assert not {"ConcurrentWriteError", "UploadGoneError", "States.TaskFailed", "States.ALL"} & set(
            retrier["ErrorEquals"])


@pytest.mark.slow
def test_a_reingest_with_a_new_footprint_is_served_without_a_restart(tmp_path):
    """64x64 cube, then re-ingested as 64x200: the running API must serve the new footprint
    (the catalog compares listed cube ETags and hands its index to the cutout engine)."""
    import io
    import time
    import urllib.request
    import zipfile

    from cubecut_infra.local.stack import LocalStack

    small = make_sector(tmp_path / "small", sector=6, camera=3, ccd=1, frames=4, shape=(64, 64), seed=2)
    wide = make_sector(tmp_path / "wide", sector=6, camera=3, ccd=1, frames=4, shape=(64, 200), seed=2)
    with LocalStack(bucket="cubecut-consistency", block_mib=5) as stack:
        versioning = stack.s3.client("s3").get_bucket_versioning(Bucket=stack.bucket)
        assert versioning["Status"] == "Enabled", "versioned like template.yaml's DataBucket"
        cube = f"s3://{stack.bucket}/cubes/tess-s0006-3-1-cube.fits"
        ingest([str(p) for p in small], cube)
        world = ffi_wcs(load_index(cube, refresh=True)).pixel_to_world(150.0, 32.0)  # off the 64x64 image
        query = f"ra={world.ra.deg}&dec={world.dec.deg}"

        def sectors() -> list:
            with urllib.request.urlopen(f"{stack.api_url}/tesscut/api/v0.1/sector?{query}", timeout=60) as answer:
                return json.load(answer)["results"]

        assert sectors() == []
        ingest([str(p) for p in wide], cube)
        deadline = time.monotonic() + 30
        while not sectors():  # the local stack's catalog refreshes every second
            assert time.monotonic() < deadline, "the API kept the old footprint"
            time.sleep(0.5)
        url = f"{stack.api_url}/tesscut/api/v0.1/astrocut?{query}&x=5&y=5&sector=6"
        with urllib.request.urlopen(url, timeout=60) as answer:
            archive = zipfile.ZipFile(io.BytesIO(answer.read()))
        (name,) = archive.namelist()
        from astropy.io import fits

        with fits.open(io.BytesIO(archive.read(name))) as tpf:
            assert tpf[1].data["FLUX"].shape == (4, 5, 5) and np.isfinite(tpf[1].data["FLUX"]).all()


def test_a_writer_superseded_before_publishing_succeeds_unpublished_and_never_puts_its_index_back(
        s3, bucket, urls, monkeypatch):
    """A committed, then replaced (by a writer that planned on top of it) before its sidecar
    went out: A's Finalize succeeds with published=False and the sidecar stays B's."""
    from cubecut.ingest import finalize

    cube = f"s3://{bucket}/{KEY}"
    ingest(urls[:6], cube)
    plan_a = planned_and_written(urls[6:], cube)
    real = finalize.publish_index
    superseding: list = []

    def publish_after_b(location, index):
        if not superseding:
            superseding.append(None)  # B's own Finalize publishes normally
            superseding[0] = ingest(urls[2:], cube)  # B plans on A's committed version
        return real(location, index)

    monkeypatch.setattr(finalize, "publish_index", publish_after_b)
    result = finalize_ingest(plan_a)
    assert result.published is False
    assert head(cube).metadata[REPLACES_KEY] == result.etag.strip('"'), "B replaced exactly A's version"
    assert read_sidecar(Location.parse(cube))[0].cube_etag == superseding[0].etag
    assert_sidecar_describes_cube(cube)
    assert leftovers(s3, bucket) == ([], [])
