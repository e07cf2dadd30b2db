"""Randomized schedules against one cube key: writers race, die and lose; invariants hold.

Each round (seeded, bounded in count and time, 127.0.0.1 only) interleaves on one key of a
versioned bucket on the local S3 server:

* ingests, re-ingests and updates in child processes, some killed with SIGKILL at a
  random moment;
* a step-by-step writer in this process (plan, blocks, Finalize, a retried Finalize, a
  retried Abort) that may stop dead after any step, as a Lambda that is killed;
* "lifecycle" aborts of open uploads (the janitor with no age threshold) while writers run;
* reader threads cutting the cube over and over.

After every round the janitor runs (as the lifecycle rules would) and these must hold:

1. no open multipart upload and no staging object is left;
2. the sidecar describes the cube beside it (ETag, frames, times);
3. every TPF a reader got equals the cutout of exactly one committed version;
4. the committed versions form one chain: each names the version it replaced, and that is
   its predecessor (no lost update);
5. every writer that reported success committed a version in that chain, and every writer
   told it lost (ConcurrentWriteError, StaleObjectError, UploadGoneError) committed none.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import boto3
import numpy as np
import pytest
from astropy.coordinates import SkyCoord

import cubecut
from cubecut import storage
from cubecut.cube.sidecar import describes, read_sidecar
from cubecut.cutout import clear_cache, ffi_wcs, load_index
from cubecut.errors import ConflictError, NoInputError, ObjectNotFoundError, UploadGoneError
from cubecut.ingest.transpose import write_block
from cubecut.ingest.finalize import abort_ingest, finalize_ingest
from cubecut.ingest.janitor import sweep
from cubecut.ingest.plan import make_plan
from cubecut.ingest.run import ingest
from cubecut.ingest.plan import PLAN_KEY, REPLACES_KEY
from cubecut.storage import Location, head
from cubecut.synth import make_sector
from test_faults import record_figures

SEED = int(os.environ.get("CUBECUT_SCHEDULE_SEED", "20261201"))
ROUNDS = int(os.environ.get("CUBECUT_SCHEDULE_ROUNDS", "6"))
ROUND_SECONDS = 90.0
NT, SHAPE = 10, (20, 24)
KEY = "cubes/tess-s0004-2-2-cube.fits"

_WRITER = textwrap.dedent("""
    import json, sys
    from cubecut.errors import CubecutError
    kind, cube, ffis = sys.argv[1], sys.argv[2], sys.argv[3:]
    try:
        if kind == "update":
            from cubecut.ingest.update import update_cube
            result = update_cube(cube, ffis)
        else:
            from cubecut.ingest.run import ingest
            result = ingest(ffis, cube)
        print(json.dumps({"ok": True, "etag": result.etag.strip('"')}))
    except CubecutError as exc:
        print(json.dumps({"ok": False, "error": type(exc).__name__, "message": str(exc)}))
""")


@dataclass
class Outcome:
    """What one writer said: ``ok`` with its ETag, a named error, or nothing (killed)."""

    kind: str
    ok: bool | None = None
    etag: str | None = None
    error: str | None = None
    plan_id: str | None = None


@dataclass
class Round:
    outcomes: list[Outcome] = field(default_factory=list)
    tpfs: list[str] = field(default_factory=list)  # digests of what readers got
    reader_errors: list[str] = field(default_factory=list)


def tpf_digest(hdul) -> str:
    data = hdul[1].data
    digest = hashlib.sha256()
    for column in ("TIME", "FLUX", "FLUX_ERR", "QUALITY"):
        digest.update(np.ascontiguousarray(data[column]).tobytes())
    digest.update("|".join(data["FFI_FILE"]).encode())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def world(tmp_path_factory, s3_endpoint):
    storage.reset_clients()
    ffis = make_sector(tmp_path_factory.mktemp("schedule"), sector=4, camera=2, ccd=2, frames=NT, shape=SHAPE,
                       seed=9)
    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    bucket = "schedule-" + os.urandom(4).hex()
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    urls = []
    for path in ffis:
        s3.upload_file(str(path), bucket, f"ffis/{path.name}")
        urls.append(f"s3://{bucket}/ffis/{path.name}")
    cube = f"s3://{bucket}/{KEY}"
    first = ingest(urls[: NT // 2], cube)
    world = ffi_wcs(load_index(cube, refresh=True)).pixel_to_world(SHAPE[1] / 2, SHAPE[0] / 2)
    return {"s3": s3, "bucket": bucket, "urls": urls, "cube": cube, "coord": SkyCoord(world.ra, world.dec),
            "endpoint": s3_endpoint, "first": first}


def run_child(world: dict, kind: str, ffis: list[str], kill_after: float | None) -> Outcome:
    env = {**os.environ, "AWS_ENDPOINT_URL": world["endpoint"]}
    child = subprocess.Popen([sys.executable, "-c", _WRITER, kind, world["cube"], *ffis], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = child.communicate(timeout=kill_after if kill_after is not None else ROUND_SECONDS)
    except subprocess.TimeoutExpired:
        child.send_signal(signal.SIGKILL)
        child.communicate()
        return Outcome(kind)
    if child.returncode != 0:
        raise AssertionError(f"writer {kind} crashed: {err[-2000:]}")
    said = json.loads(out.strip().splitlines()[-1])
    return Outcome(kind, said["ok"], said.get("etag"), said.get("error"))


def stepwise(world: dict, ffis: list[str], rng: random.Random) -> Outcome:
    """Plan, blocks, Finalize, retried Finalize, retried Abort; may stop dead after any step."""
    outcome = Outcome("stepwise")
    try:
        plan = make_plan(ffis, world["cube"])
        outcome.plan_id = plan.plan_id
        stop = rng.choice(["plan", "blocks", "finalize", "none", "none", "none"])
        if stop == "plan":
            return outcome
        for block in plan.blocks:
            write_block(plan, block.index)
        if stop == "blocks":
            return outcome
        result = finalize_ingest(plan)
        if stop == "finalize":  # died before answering: Step Functions retries Finalize
            result = finalize_ingest(plan)
        outcome.ok, outcome.etag = True, result.etag.strip('"')
        if rng.random() < 0.3:
            abort_ingest(plan)  # a stray Abort after success must not undo anything
    except (ConflictError, UploadGoneError) as exc:
        outcome.ok, outcome.error = False, type(exc).__name__
    except (NoInputError, ObjectNotFoundError):
        pass  # no input, or the retried Finalize found its cube already replaced: outcome unknown
    return outcome


def reader(world: dict, stop: threading.Event, round_: Round, rng: random.Random) -> None:
    while not stop.is_set():
        if rng.random() < 0.3:
            clear_cache()
        try:
            round_.tpfs.append(tpf_digest(cubecut.cutout(world["cube"], world["coord"], 3)[0]))
        except (ConflictError, ObjectNotFoundError) as exc:  # told, never given a mix
            round_.reader_errors.append(type(exc).__name__)
        time.sleep(rng.uniform(0.0, 0.05))


def lifecycle(world: dict, stop: threading.Event, rng: random.Random) -> None:
    """Abort open uploads at random moments, as the lifecycle rule or an eager janitor."""
    s3 = world["s3"]
    while not stop.wait(rng.uniform(0.3, 2.0)):
        for upload in s3.list_multipart_uploads(Bucket=world["bucket"]).get("Uploads", []):
            if rng.random() < 0.4:
                try:
                    s3.abort_multipart_upload(Bucket=world["bucket"], Key=upload["Key"], UploadId=upload["UploadId"])
                except s3.exceptions.NoSuchUpload:  # completed or aborted since the list, as the janitor allows
                    pass


def versions(world: dict) -> list[dict]:
    """Committed versions of the cube, oldest first, with their metadata."""
    s3 = world["s3"]
    listed = s3.list_object_versions(Bucket=world["bucket"], Prefix=KEY).get("Versions", [])
    chain = []
    for item in reversed([v for v in listed if v["Key"] == KEY]):
        meta = s3.head_object(Bucket=world["bucket"], Key=KEY, VersionId=item["VersionId"])["Metadata"]
        chain.append({"version": item["VersionId"], "etag": item["ETag"].strip('"'), "meta": meta})
    return chain


def version_digests(world: dict, chain: list[dict], tmp: Path, known: dict[str, str]) -> set[str]:
    """The TPF digest of every committed version (each cut from its own bytes)."""
    s3 = world["s3"]
    for item in chain:
        if item["version"] in known:
            continue
        body = s3.get_object(Bucket=world["bucket"], Key=KEY, VersionId=item["version"])["Body"].read()
        path = tmp / f"{item['version']}.fits"
        path.write_bytes(body)
        known[item["version"]] = tpf_digest(cubecut.cutout(str(path), world["coord"], 3)[0])
    return set(known.values())


@pytest.mark.slow
def test_random_schedules_keep_every_invariant(world, tmp_path):
    rng = random.Random(SEED)
    urls, cube, s3, bucket = world["urls"], world["cube"], world["s3"], world["bucket"]
    digests: dict[str, str] = {}
    violations: list[str] = []
    outcomes: list[Outcome] = []
    reads = 0
    started = time.monotonic()
    for number in range(ROUNDS):
        round_ = Round()
        stop = threading.Event()
        threads = [threading.Thread(target=reader, args=(world, stop, round_, random.Random(rng.random())))
                   for _ in range(2)]
        if rng.random() < 0.5:
            threads.append(threading.Thread(target=lifecycle, args=(world, stop, random.Random(rng.random()))))
        for thread in threads:
            thread.start()
        jobs = []
        for _ in range(rng.randint(2, 3)):
            kind = rng.choice(["ingest", "ingest", "update"])
            subset = sorted(rng.sample(urls, rng.randint(3, NT)))
            kill = rng.uniform(1.0, 6.0) if rng.random() < 0.35 else None
            jobs.append((kind, subset, kill))
        results: list[Outcome] = []
        workers = [threading.Thread(target=lambda job=job: results.append(run_child(world, *job))) for job in jobs]
        workers.append(threading.Thread(
            target=lambda: results.append(stepwise(world, sorted(rng.sample(urls, 4)), random.Random(rng.random())))))
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(ROUND_SECONDS)
        stop.set()
        for thread in threads:
            thread.join()
        # the lifecycle rules / janitor, then the invariants
        sweep(f"s3://{bucket}/cubes/", older_than=0)
        open_uploads = s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
        staging = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="cubes/").get("Contents", [])
                   if ".ingest/" in o["Key"]]
        if open_uploads or staging:
            violations.append(f"round {number}: left {len(open_uploads)} upload(s), {len(staging)} staging object(s)")
        index, _ = read_sidecar(Location.parse(cube))
        now = head(cube)
        fresh = load_index(cube, refresh=True)
        if not describes(index, now.etag, now.size) or (index.tstart, index.ffi_files) != (fresh.tstart,
                                                                                          fresh.ffi_files):
            violations.append(f"round {number}: the sidecar does not describe the cube")
        chain = versions(world)
        for before, after in zip(chain, chain[1:]):
            if after["meta"].get(REPLACES_KEY) != before["etag"]:
                violations.append(f"round {number}: version {after['etag']} replaced "
                                  f"{after['meta'].get(REPLACES_KEY)}, but its predecessor is {before['etag']}")
        committed = {item["etag"] for item in chain}
        plans = {item["meta"].get(PLAN_KEY) for item in chain}
        for outcome in results:
            if outcome.ok and outcome.etag not in committed:
                violations.append(f"round {number}: {outcome.kind} reported {outcome.etag}, never committed")
            if outcome.ok is False and outcome.plan_id and outcome.plan_id in plans:
                violations.append(f"round {number}: {outcome.kind} was told it lost but committed")
        allowed = version_digests(world, chain, tmp_path, digests)
        stray = [d for d in round_.tpfs if d not in allowed]
        if stray:
            violations.append(f"round {number}: {len(stray)} TPF(s) match no committed version")
        reads += len(round_.tpfs)
        outcomes += results
    summary = {
        "seed": SEED, "rounds": ROUNDS, "seconds": round(time.monotonic() - started, 1),
        "versions_committed": len(versions(world)), "reader_tpfs_checked": reads,
        "writers": len(outcomes), "succeeded": sum(o.ok is True for o in outcomes),
        "told_they_lost": sum(o.ok is False for o in outcomes),
        "killed_or_stopped": sum(o.ok is None for o in outcomes),
        "loss_reasons": sorted({o.error for o in outcomes if o.error}), "invariant_violations": len(violations),
    }
    record_figures("schedule", "\n".join(f"- {key}: {value}" for key, value in summary.items()))
    assert not violations, "\n".join(violations)
    assert summary["succeeded"] and summary["told_they_lost"] and summary["killed_or_stopped"], summary
