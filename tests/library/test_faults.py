"""S3 fault injection: ingest and cutouts through a proxy that fails requests on purpose.

The proxy (:mod:`cubecut_infra.local.faults`) sits between boto3 and the moto server and
answers 500 / 503 SlowDown, resets connections (before the request reaches S3, or after
S3 applied it), cuts bodies short (with the true or a matching Content-Length) and delays
answers. botocore's retry sleeps are recorded and scaled down 1000x so that the tests
measure what is retried, not how long the back-off waits.

Shared helpers (synthetic FFIs, cube comparison, the figures file) are imported by the
other reliability test modules.
"""
from __future__ import annotations

import io
import os
import re
import threading
import zipfile
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import boto3
import numpy as np
import pytest
from botocore.retries.standard import ExponentialBackoff

from cubecut import storage
from cubecut.cutout import clear_cache, cutout
from cubecut.errors import StorageError
from cubecut.fitsio import BLOCK
from cubecut.ingest import run as ingest_run
from cubecut.ingest.janitor import sweep
from cubecut.ingest.run import ingest
from cubecut.storage import ReadStats, open_source
from cubecut.synth import make_sector, star_catalog
from cubecut_infra.local.faults import FAULT_KINDS, FaultProxy, FaultRates, classify

ROOT = Path(__file__).resolve().parents[2]
MIB = 1024 * 1024
#: 24 frames of 200 x 256 px: a 9.8 MB cube in two parts (rows 0-106 = 5.1 MiB, 107-199).
FRAMES, SHAPE, SECTOR, CAMERA, CCD, SEED = 24, (200, 256), 7, 2, 1, 11
CUBE_KEY = f"cubes/tess-s{SECTOR:04d}-{CAMERA}-{CCD}-cube.fits"
CUTOUT_SIZE = 15
#: botocore's back-off sleeps are divided by this in tests (their values are still recorded).
BACKOFF_SCALE = 1e-3


# ----------------------------------------------------------------------------- helpers
def synth_ffis(tmp_path_factory, frames: int = FRAMES, shape: tuple[int, int] = SHAPE, seed: int = SEED,
               sector: int = SECTOR, camera: int = CAMERA, ccd: int = CCD) -> list[Path]:
    """Synthetic SPOC FFIs, made once per test session (and worker) and shared by modules."""
    folder = tmp_path_factory.getbasetemp() / f"reliability-ffis-{sector}-{camera}-{ccd}-{frames}-{shape[0]}x{shape[1]}-{seed}"
    done = folder / ".complete"
    if not done.exists():
        paths = make_sector(folder, sector=sector, camera=camera, ccd=ccd, frames=frames, shape=shape, seed=seed)
        done.write_text("\n".join(p.name for p in paths))
    return [folder / name for name in done.read_text().split()]


def upload(s3, bucket: str, paths: list[Path], prefix: str = "ffis/") -> list[str]:
    for path in paths:
        s3.upload_file(str(path), bucket, prefix + path.name)
    return [f"s3://{bucket}/{prefix}{path.name}" for path in paths]


def primary_header_length(data: bytes) -> int:
    """Bytes of the primary header (padded), found by its END card."""
    for pos in range(0, min(len(data), 400 * BLOCK), 80):
        if data[pos:pos + 80].rstrip() == b"END":
            return -(-(pos + 80) // BLOCK) * BLOCK
    raise AssertionError("no END card in the primary header")


def assert_same_cube(ours: bytes, reference: bytes) -> None:
    """Byte-identical after the primary header (whose DATE and DATASUM comment carry the time)."""
    assert len(ours) == len(reference)
    cut = primary_header_length(reference)
    assert primary_header_length(ours) == cut
    assert ours[cut:] == reference[cut:], "image header, pixels and table must be byte-identical"


def keys(s3, bucket: str, prefix: str = "") -> set[str]:
    return {o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            for o in page.get("Contents", [])}


def uploads(s3, bucket: str) -> list[dict]:
    return s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])


def targets(n: int, shape: tuple[int, int] = SHAPE, seed: int = SEED, sector: int = SECTOR,
            camera: int = CAMERA, ccd: int = CCD) -> list[tuple[float, float]]:
    """``n`` star positions (ra, dec) well inside the FFIs."""
    stars = star_catalog(sector=sector, camera=camera, ccd=ccd, shape=shape, seed=seed)
    inside = stars[(stars["col"] > 60) & (stars["col"] < shape[1] - 15) & (stars["row"] > 15)
                   & (stars["row"] < shape[0] - 15)]
    inside = inside[np.argsort(-np.asarray(inside["flux"]))]
    return [(float(s["ra"]), float(s["dec"])) for s in inside[:n]]


FIGURES = ROOT / "docs" / "reliability.md"
_figures_lock = threading.Lock()


def record_figures(section: str, text: str) -> None:
    """Print measured figures; with CUBECUT_RECORD_FIGURES=1 also write them into
    docs/reliability.md between ``<!-- figures:{section} -->`` and ``<!-- /figures:{section} -->``."""
    print(f"\n[{section}]\n{text}")
    if os.environ.get("CUBECUT_RECORD_FIGURES") != "1" or not FIGURES.exists():
        return
    begin, end = f"<!-- figures:{section} -->", f"<!-- /figures:{section} -->"
    with _figures_lock:
        doc = FIGURES.read_text()
        if begin not in doc or end not in doc:
            return
        head, rest = doc.split(begin, 1)
        _, tail = rest.split(end, 1)
        tmp = FIGURES.with_suffix(".md.tmp")
        tmp.write_text(f"{head}{begin}\n{text.rstrip()}\n{end}{tail}")
        os.replace(tmp, FIGURES)


@dataclass
class BackoffRecorder:
    """botocore's retry delays as computed (attempt number, seconds), before scaling."""

    delays: list[tuple[int, float]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def by_attempt(self) -> dict[int, list[float]]:
        out: dict[int, list[float]] = {}
        for attempt, delay in self.delays:
            out.setdefault(attempt, []).append(delay)
        return out


@dataclass
class Faults:
    """The proxy, the recorder of botocore back-offs and our own body retries."""

    proxy: FaultProxy
    backoff: BackoffRecorder
    upstream: str
    s3: object  # a boto3 client straight to the server (no faults), for checks

    def set(self, rates: FaultRates, operations=None) -> None:
        self.proxy.set_rates(rates, operations)
        storage.reset_clients()  # a fresh client: a fresh retry quota

    def summary(self) -> dict:
        return {**self.proxy.stats.summary(), "botocore_retries": len(self.backoff.delays),
                "cubecut_body_retries": dict(storage.RETRIES)}


@contextmanager
def fault_proxy(upstream: str, monkeypatch, seed: int = 1) -> Iterator[Faults]:
    recorder = BackoffRecorder()
    original = ExponentialBackoff.delay_amount

    def delay_amount(self, context):
        delay = original(self, context)
        with recorder.lock:
            recorder.delays.append((context.attempt_number, delay))
        return delay * BACKOFF_SCALE

    monkeypatch.setattr(ExponentialBackoff, "delay_amount", delay_amount)
    monkeypatch.setattr(storage.base, "RETRY_BASE_SECONDS", storage.base.RETRY_BASE_SECONDS * BACKOFF_SCALE)
    storage.RETRIES.clear()
    proxy = FaultProxy(upstream, seed=seed)
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.endpoint)
    storage.reset_clients()
    clear_cache()
    try:
        yield Faults(proxy, recorder, upstream, boto3.client("s3", endpoint_url=upstream))
    finally:
        proxy.stop()
        monkeypatch.setenv("AWS_ENDPOINT_URL", upstream)
        storage.reset_clients()
        clear_cache()


@pytest.fixture
def faults(s3_endpoint, monkeypatch) -> Iterator[Faults]:
    with fault_proxy(s3_endpoint, monkeypatch) as f:
        yield f


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def ffis(tmp_path_factory) -> list[Path]:
    return synth_ffis(tmp_path_factory)


@pytest.fixture(scope="module")
def reference(ffis, s3_endpoint, tmp_path_factory) -> dict:
    """A fault-free ingest of the FFIs (straight to moto) and fault-free cutouts of it."""
    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    bucket = "reference-" + os.urandom(4).hex()
    s3.create_bucket(Bucket=bucket)
    urls = upload(s3, bucket, ffis)
    storage.reset_clients()
    clear_cache()
    ingest(urls, f"s3://{bucket}/{CUBE_KEY}", block_bytes=5 * MIB, workers=2)
    cube = s3.get_object(Bucket=bucket, Key=CUBE_KEY)["Body"].read()
    coords = targets(4)
    tpfs = [cutout(f"s3://{bucket}/{CUBE_KEY}", f"{ra} {dec}", CUTOUT_SIZE)[0] for ra, dec in coords]
    clear_cache()
    return {"cube": cube, "coords": coords, "tpfs": tpfs}


@pytest.fixture
def ffi_bucket(bucket, ffis, s3_endpoint) -> tuple[str, list[str]]:
    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    return bucket, upload(s3, bucket, ffis)


# ----------------------------------------------------------------------------- the proxy
def test_classify_names_s3_operations():
    assert classify("GET", "/b/k", "") == "GetObject"
    assert classify("GET", "/b/k", "uploadId=1") == "ListParts"
    assert classify("PUT", "/b/k", "partNumber=2&uploadId=1") == "UploadPart"
    assert classify("POST", "/b/k", "uploads") == "CreateMultipartUpload"
    assert classify("POST", "/b/k", "uploadId=1") == "CompleteMultipartUpload"
    assert classify("DELETE", "/b/k", "uploadId=1") == "AbortMultipartUpload"
    assert classify("GET", "/b", "uploads") == "ListMultipartUploads"
    assert classify("GET", "/b", "list-type=2&prefix=x") == "ListObjects"
    assert classify("HEAD", "/b/k", "") == "HeadObject"
    with pytest.raises(ValueError):
        FaultRates(error_500=0.7, reset=0.7)
    assert FaultRates.spread(0.07).total == pytest.approx(0.07)


def test_fault_choice_is_deterministic_per_request(s3_endpoint):
    """The same request sequence meets the same faults whatever the thread timing."""
    draws = []
    for _ in range(2):
        with FaultProxy(s3_endpoint, FaultRates.spread(0.5), seed=3) as proxy:
            draws.append([proxy.decide("GET", f"/b/k{i % 7}", "", {"range": f"bytes={i}-"})[1] for i in range(200)])
    assert draws[0] == draws[1]
    assert {kind for kind in draws[0] if kind} == set(FAULT_KINDS), "every kind occurs"
    assert 0.35 < sum(kind is not None for kind in draws[0]) / 200 < 0.65


@pytest.mark.parametrize("kind", FAULT_KINDS)
def test_every_fault_kind_at_100_percent(kind, faults, bucket):
    """What each fault does to one ranged read and one whole-object read, always failing."""
    faults.s3.put_object(Bucket=bucket, Key="obj", Body=bytes(range(256)) * 64)
    faults.set(FaultRates(**{kind: 1.0}, delay_seconds=0.01), operations={"GetObject"})
    source = open_source(f"s3://{bucket}/obj", size=256 * 64, etag=None)
    if kind == "delay":
        assert source.read(100, 1100) == (bytes(range(256)) * 64)[100:1100]
        assert storage.get_bytes(f"s3://{bucket}/obj")[0] == bytes(range(256)) * 64
        return
    with pytest.raises(StorageError) as ranged:
        source.read(100, 1100)
    with pytest.raises(StorageError):
        storage.get_bytes(f"s3://{bucket}/obj")
    gets = faults.proxy.stats.requests["GetObject"]
    if kind in ("error_500", "slowdown_503", "reset", "lost_response"):
        # botocore retried each request itself: 1 + 8 retries (standard mode) per read
        assert gets == 2 * 9, faults.summary()
        assert {a for a, _ in faults.backoff.delays} == set(range(1, 9))
    elif kind == "wrong_length":
        # a complete, valid HTTP answer with half the bytes: only our length check sees it
        assert "short read" in str(ranged.value)
        assert storage.RETRIES["short_read"] == storage.READ_ATTEMPTS - 1
    else:  # truncate: botocore raises while reading the body; we retry the read
        assert "body failed" in str(ranged.value)
        assert storage.RETRIES["body"] >= storage.READ_ATTEMPTS - 1
    print(f"\n{kind}: {type(ranged.value).__name__}: {str(ranged.value)[:160]}")


def test_botocore_standard_retries_back_off_with_jitter(faults, bucket):
    """Standard mode, 8 retries (9 attempts); the delay before retry n is uniform in
    [0, min(2^(n-1), 20)] s (full jitter, truncated binary exponential)."""
    retries = storage.s3_client().meta.config.retries
    assert retries["mode"] == "standard" and retries["total_max_attempts"] == 9
    faults.s3.put_object(Bucket=bucket, Key="obj", Body=b"x" * 1000)
    faults.set(FaultRates(slowdown_503=1.0), operations={"HeadObject", "GetObject"})
    for i in range(12):
        with pytest.raises(StorageError):
            storage.get_bytes(f"s3://{bucket}/obj")
    by_attempt = faults.backoff.by_attempt()
    for attempt, delays in by_attempt.items():
        cap = min(2 ** (attempt - 1), 20)
        assert all(0 <= d <= cap for d in delays), (attempt, delays)
        assert len(set(delays)) == len(delays), "jitter: no two delays alike"
    late = [d for a, ds in by_attempt.items() if a >= 4 for d in ds]
    assert max(late) > 1.0, "the bound grows with the attempt number"
    mean = {a: float(np.mean(ds)) for a, ds in sorted(by_attempt.items())}
    assert mean[6] > mean[1]
    record_figures("backoff", "botocore standard mode: 8 retries (9 attempts); mean back-off before retry n (s, unscaled): "
                   + ", ".join(f"n={a}: {m:.2f}" for a, m in mean.items()))


def test_short_reads_are_retried_until_whole(faults, bucket):
    """A fifth of all answers lose half their body (both ways): reads still return every byte."""
    data = os.urandom(300_000)
    faults.s3.put_object(Bucket=bucket, Key="obj", Body=data)
    faults.set(FaultRates(truncate=0.1, wrong_length=0.1), operations={"GetObject"})
    source = open_source(f"s3://{bucket}/obj", ReadStats())
    for start in range(0, len(data), 7_001):
        assert source.read(start, start + 5_000) == data[start:start + 5_000]
    for _ in range(5):
        assert storage.get_bytes(f"s3://{bucket}/obj")[0] == data
    assert storage.RETRIES["short_read"] > 0 and storage.RETRIES["body"] > 0, faults.summary()


# ----------------------------------------------------------------------------- ingest + cutouts
@pytest.mark.slow
def test_ingest_and_cutouts_with_5_percent_faults_are_identical(faults, ffis, reference):
    # A fixed bucket name: the faults each request meets depend only on the seed and the requests.
    bucket = "faults-five-percent"
    faults.s3.create_bucket(Bucket=bucket)
    urls = upload(faults.s3, bucket, ffis)
    cube_url = f"s3://{bucket}/{CUBE_KEY}"
    faults.set(FaultRates.spread(0.05, delay_seconds=0.05))
    result = ingest(urls, cube_url, block_bytes=5 * MIB, workers=3)
    ingest_faults = faults.summary()
    assert result.etag.strip('"').endswith("-2")
    cube = faults.s3.get_object(Bucket=bucket, Key=CUBE_KEY)["Body"].read()
    assert_same_cube(cube, reference["cube"])
    assert keys(faults.s3, bucket, "cubes/") == {CUBE_KEY, CUBE_KEY + ".index.json"}, "no staging left"
    # A CreateMultipartUpload whose answer was lost (applied, then reset) was retried and
    # made a second upload: nobody knows its id, only the janitor / lifecycle rule can end it.
    orphans = uploads(faults.s3, bucket)
    assert len(orphans) <= faults.proxy.stats.faults_by_operation["CreateMultipartUpload"]
    faults.proxy.reset_stats()
    faults.backoff.delays.clear()
    body_retries = dict(storage.RETRIES)
    storage.RETRIES.clear()

    clear_cache()
    for (ra, dec), expected in zip(reference["coords"], reference["tpfs"]):
        tpf = cutout(cube_url, f"{ra} {dec}", CUTOUT_SIZE)[0]
        for column in ("FLUX", "FLUX_ERR", "TIME", "QUALITY"):
            np.testing.assert_array_equal(tpf[1].data[column], expected[1].data[column])
        np.testing.assert_array_equal(tpf[2].data, expected[2].data)
    cutout_faults = faults.summary()

    faults.set(FaultRates())
    report = sweep(f"s3://{bucket}/cubes/", older_than=0)
    assert not uploads(faults.s3, bucket)
    assert len(report.aborted_uploads) == len(orphans)
    assert ingest_faults["faults"] > 0 and cutout_faults["faults"] > 0
    record_figures("faults-5pct", "\n".join([
        f"- ingest ({FRAMES} FFIs {SHAPE[0]}x{SHAPE[1]}, 2 parts, {len(cube) / 1e6:.1f} MB cube) at 5 % faults: "
        f"{ingest_faults['requests']} requests, {ingest_faults['faults']} faults {ingest_faults['by_kind']}, "
        f"{ingest_faults['botocore_retries']} botocore retries, our body/short-read retries {body_retries}; "
        f"cube byte-identical; orphan uploads from lost CreateMultipartUpload answers: {len(orphans)} "
        "(aborted by the janitor)",
        f"- {len(reference['coords'])} cutouts ({CUTOUT_SIZE}x{CUTOUT_SIZE}) at 5 % faults: {cutout_faults['requests']} requests, {cutout_faults['faults']} faults "
        f"{cutout_faults['by_kind']}, {cutout_faults['botocore_retries']} botocore retries, our retries "
        f"{cutout_faults['cubecut_body_retries']}; TPF data identical"]))


def _assert_nothing_left(s3, bucket: str) -> None:
    assert not uploads(s3, bucket), "the multipart upload was aborted"
    assert keys(s3, bucket, "cubes/") == set(), "no cube, no sidecar, no staging object"


@pytest.mark.slow
def test_ingest_fails_cleanly_when_every_upload_fails(faults, ffi_bucket):
    bucket, urls = ffi_bucket
    faults.set(FaultRates(slowdown_503=0.5, reset=0.5), operations={"UploadPart"})
    with pytest.raises(StorageError, match="upload part"):
        ingest(urls, f"s3://{bucket}/{CUBE_KEY}", block_bytes=5 * MIB, workers=2)
    faults.set(FaultRates())
    _assert_nothing_left(faults.s3, bucket)


@pytest.mark.slow
def test_ingest_fails_cleanly_when_every_read_fails_after_planning(faults, ffi_bucket, monkeypatch):
    """The plan succeeds (upload begun, staging written); then every GET fails."""
    bucket, urls = ffi_bucket
    real_plan = ingest_run.make_plan

    def plan_then_break(*args, **kwargs):
        plan = real_plan(*args, **kwargs)
        faults.set(FaultRates(error_500=0.4, truncate=0.3, wrong_length=0.3), operations={"GetObject"})
        return plan

    monkeypatch.setattr(ingest_run, "make_plan", plan_then_break)
    with pytest.raises(StorageError):
        ingest(urls, f"s3://{bucket}/{CUBE_KEY}", block_bytes=5 * MIB, workers=2)
    faults.set(FaultRates())
    _assert_nothing_left(faults.s3, bucket)


@pytest.mark.slow
def test_when_even_the_cleanup_fails_the_janitor_finishes_it(faults, ffi_bucket, monkeypatch):
    """Every request fails after planning, abort included: the original error is raised (with
    a note), the upload and staging stay, and the janitor removes them once S3 answers again."""
    bucket, urls = ffi_bucket
    real_plan = ingest_run.make_plan

    def plan_then_break(*args, **kwargs):
        plan = real_plan(*args, **kwargs)
        faults.set(FaultRates(slowdown_503=1.0))
        return plan

    monkeypatch.setattr(ingest_run, "make_plan", plan_then_break)
    with pytest.raises(StorageError) as failure:
        ingest(urls, f"s3://{bucket}/{CUBE_KEY}", block_bytes=5 * MIB, workers=2)
    assert any("janitor" in note for note in getattr(failure.value, "__notes__", []))
    faults.set(FaultRates())
    assert len(uploads(faults.s3, bucket)) == 1
    assert any(".ingest/" in k for k in keys(faults.s3, bucket, "cubes/"))
    report = sweep(f"s3://{bucket}/cubes/", older_than="0s")
    assert len(report.aborted_uploads) == 1 and report.deleted_objects
    _assert_nothing_left(faults.s3, bucket)


def test_cutouts_fail_cleanly_when_every_read_fails(faults, reference, s3_endpoint, bucket):
    s3 = faults.s3
    s3.put_object(Bucket=bucket, Key=CUBE_KEY, Body=reference["cube"])
    cube_url = f"s3://{bucket}/{CUBE_KEY}"
    ra, dec = reference["coords"][0]
    for kind in ("slowdown_503", "reset", "wrong_length", "truncate"):
        faults.set(FaultRates(**{kind: 1.0}), operations={"GetObject", "HeadObject"})
        clear_cache()
        with pytest.raises(StorageError):
            cutout(cube_url, f"{ra} {dec}", CUTOUT_SIZE)
    faults.set(FaultRates())
    clear_cache()
    np.testing.assert_array_equal(cutout(cube_url, f"{ra} {dec}", CUTOUT_SIZE)[0][1].data["FLUX"],
                                  reference["tpfs"][0][1].data["FLUX"])
    assert keys(s3, bucket) == {CUBE_KEY}, "a failed cutout writes nothing"


def test_fault_counts_match_the_rates(faults, bucket):
    """Over many requests the injected share matches the configured rate."""
    faults.s3.put_object(Bucket=bucket, Key="obj", Body=b"y" * 4096)
    faults.set(FaultRates.spread(0.2, kinds=("error_500", "slowdown_503", "reset")), operations={"GetObject"})
    source = open_source(f"s3://{bucket}/obj", size=4096, etag=None)
    for i in range(150):
        assert source.read(i, i + 100) == b"y" * 100
    stats = faults.proxy.stats
    share = stats.total_faults / stats.requests["GetObject"]
    assert 0.12 < share < 0.28, stats.summary()
    assert Counter(stats.faults).keys() == {"error_500", "slowdown_503", "reset"}


def _result_members(faults: Faults, fail_after: int) -> Iterator[tuple[str, bytes]]:
    """Three 6 MiB incompressible TPF-sized members; after ``fail_after`` of them are
    zipped (a part or more already uploaded), every UploadPart fails from then on."""
    for i in range(3):
        if i == fail_after:
            faults.set(FaultRates(error_500=0.5, reset=0.5), operations={"UploadPart"})
        yield f"tpf{i}.fits", np.random.default_rng(i).integers(0, 256, 6 * MIB, dtype=np.uint8).tobytes()


def test_result_zip_stream_failing_mid_stream_aborts_and_a_retry_stores_it(faults, bucket):
    """UploadPart fails for good after the first part was uploaded: StorageError, the upload
    is aborted and nothing is visible at the key; the same request again stores the zip."""
    from cubecut.tesscut.service import store_zip

    url = f"s3://{bucket}/results/tesscut/key.zip"
    with pytest.raises(StorageError, match="upload part 2"):
        store_zip(url, _result_members(faults, fail_after=2))
    assert faults.proxy.stats.requests["UploadPart"] > 1 and faults.proxy.stats.faults
    faults.set(FaultRates())
    assert uploads(faults.s3, bucket) == [] and keys(faults.s3, bucket) == set()
    stored = store_zip(url, _result_members(faults, fail_after=-1))
    assert keys(faults.s3, bucket) == {"results/tesscut/key.zip"} and uploads(faults.s3, bucket) == []
    with zipfile.ZipFile(io.BytesIO(faults.s3.get_object(Bucket=bucket, Key="results/tesscut/key.zip")["Body"]
                                    .read())) as archive:
        assert archive.namelist() == stored.members == ["tpf0.fits", "tpf1.fits", "tpf2.fits"]
        assert archive.read("tpf1.fits") == dict(_result_members(faults, fail_after=-1))["tpf1.fits"]


def test_result_zip_stream_survives_transient_upload_faults(faults, bucket):
    """Parts that fail, or are applied but whose answer is lost, are re-sent (same bytes,
    same part number): the stored zip is whole."""
    from cubecut.tesscut.service import store_zip

    url = f"s3://{bucket}/results/tesscut/transient.zip"
    for _attempt in range(8):  # a few parts at these rates can see no fault: until one did
        faults.set(FaultRates(error_500=0.2, reset=0.1, lost_response=0.2), operations={"UploadPart"})
        stored = store_zip(url, _result_members(faults, fail_after=-1))
        faulted = faults.proxy.stats.total_faults > 0
        faults.set(FaultRates())
        with zipfile.ZipFile(io.BytesIO(faults.s3.get_object(Bucket=bucket, Key="results/tesscut/transient.zip")
                                        ["Body"].read())) as archive:
            assert archive.testzip() is None and archive.namelist() == stored.members
        assert uploads(faults.s3, bucket) == []
        if faulted:
            break
    assert faulted, faults.summary()
