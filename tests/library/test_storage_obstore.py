"""Cutouts' pixel reads through obstore keep S3Source's guarantees, faults included.

Through the fault-injecting proxy of :mod:`test_faults` in front of the moto server:
If-Match pinning (a replaced object raises StaleObjectError), request and byte counting,
failed requests retried by the client, bodies that break off or come up short retried
until whole, and a clear StorageError when every attempt fails.
"""
from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np
import pytest
from test_faults import CUBE_KEY, CUTOUT_SIZE, FaultRates, Faults, fault_proxy, synth_ffis, targets

from cubecut import storage
from cubecut.cutout import cutout, load_index
from cubecut.errors import ObjectNotFoundError, StorageError
from cubecut.ingest.run import ingest
from cubecut.storage import BATCH, Location, ReadStats, StaleObjectError, get_bytes
from cubecut.storage.s3_obstore import ObstoreSource, get_object, put_object


@pytest.fixture
def faults(s3_endpoint, monkeypatch) -> Iterator[Faults]:
    with fault_proxy(s3_endpoint, monkeypatch) as proxy:
        yield proxy


@pytest.fixture(scope="module")
def local_cube(tmp_path_factory):
    """test_faults' synthetic FFIs cubed on local disk: the reference cutouts."""
    cube = tmp_path_factory.mktemp("obstore") / CUBE_KEY.rsplit("/", 1)[-1]
    ingest([str(p) for p in synth_ffis(tmp_path_factory)], str(cube))
    return cube


def _source(faults, bucket: str, data: bytes, stats: ReadStats | None = None) -> ObstoreSource:
    faults.s3.put_object(Bucket=bucket, Key="obj", Body=data)
    etag = faults.s3.head_object(Bucket=bucket, Key="obj")["ETag"]
    return ObstoreSource(Location("s3", bucket, "obj"), stats, size=len(data), etag=etag)


def test_reads_are_pinned_counted_and_clipped(faults, bucket):
    data = os.urandom(100_000)
    stats = ReadStats()
    source = _source(faults, bucket, data, stats)
    assert source.read(10, 5_010) == data[10:5_010]
    view = source.read(0, 10)
    assert isinstance(view, memoryview) and view.readonly, "obstore's buffer, not a copy"
    assert source.read(99_000, 120_000) == data[99_000:]  # past the end: what there is
    assert source.read(50, 50) == b""
    assert (stats.requests, stats.bytes) == (3, 5_000 + 10 + 1_000)
    faults.s3.put_object(Bucket=bucket, Key="obj", Body=data[::-1])  # replaced: a new ETag
    with pytest.raises(StaleObjectError):
        source.read(0, 100)
    with pytest.raises(ObjectNotFoundError):
        ObstoreSource(Location("s3", bucket, "nothing"), size=10, etag=None).read(0, 10)


@pytest.mark.parametrize("kind", ["error_500", "slowdown_503", "reset", "truncate", "wrong_length", "delay"])
def test_every_fault_kind_at_100_percent(kind, faults, bucket):
    data = bytes(range(256)) * 64
    source = _source(faults, bucket, data)
    faults.set(FaultRates(**{kind: 1.0}, delay_seconds=0.01), operations={"GetObject"})
    if kind == "delay":
        assert source.read(100, 1100) == data[100:1100]
        return
    with pytest.raises(StorageError) as error:
        source.read(100, 1100)
    gets = faults.proxy.stats.requests["GetObject"]
    if kind == "wrong_length":  # a valid answer with half the bytes: only the length check sees it
        assert "short read" in str(error.value) and gets == storage.READ_ATTEMPTS
        assert storage.RETRIES["short_read"] == storage.READ_ATTEMPTS - 1
    elif kind == "truncate":  # the body breaks off: obstore raises while reading it, we retry
        assert "body failed" in str(error.value) or "short read" in str(error.value), error.value
        assert gets >= storage.READ_ATTEMPTS
    else:  # obstore retried the request itself
        assert 2 <= gets <= BATCH.attempts, faults.summary()
    print(f"\n{kind}: {gets} GETs; {type(error.value).__name__}: {str(error.value)[:160]}")


def test_short_reads_are_retried_until_whole(faults, bucket):
    data = os.urandom(300_000)
    source = _source(faults, bucket, data)
    faults.set(FaultRates(truncate=0.1, wrong_length=0.1), operations={"GetObject"})
    for start in range(0, len(data), 7_001):
        assert source.read(start, start + 5_000) == data[start:start + 5_000]
    assert sum(storage.RETRIES.values()) > 0, faults.summary()


def test_cutout_pixel_reads_survive_faults(faults, local_cube, bucket):
    """With the index cached, every read of a cutout is a pixel read through obstore."""
    faults.s3.put_object(Bucket=bucket, Key=CUBE_KEY, Body=local_cube.read_bytes())
    url = f"s3://{bucket}/{CUBE_KEY}"
    load_index(url)
    faults.set(FaultRates.spread(0.2, kinds=("error_500", "slowdown_503", "reset", "truncate", "wrong_length")),
               operations={"GetObject"})
    for ra, dec in targets(4):
        tpf = cutout(url, f"{ra} {dec}", CUTOUT_SIZE)[0]
        expected = cutout(local_cube, f"{ra} {dec}", CUTOUT_SIZE)[0]
        np.testing.assert_array_equal(tpf[1].data["FLUX"], expected[1].data["FLUX"])
        np.testing.assert_array_equal(tpf[1].data["FLUX_ERR"], expected[1].data["FLUX_ERR"])
    assert faults.proxy.stats.total_faults > 0, faults.summary()


def test_whole_objects_are_what_botocore_gets_and_survive_faults(faults, bucket):
    """get_object (cold cutouts' sidecar reads) gives get_bytes's bytes and ETag, counts
    the request, names a missing object, and retries broken and short bodies."""
    data = os.urandom(200_000)
    faults.s3.put_object(Bucket=bucket, Key="whole", Body=data)
    stats = ReadStats()
    assert get_object(Location("s3", bucket, "whole"), stats) == get_bytes(Location("s3", bucket, "whole"))
    assert (stats.requests, stats.bytes) == (1, len(data))
    with pytest.raises(ObjectNotFoundError):
        get_object(Location("s3", bucket, "nothing"))
    faults.set(FaultRates(truncate=0.3, wrong_length=0.3), operations={"GetObject"})
    for _ in range(6):
        assert get_object(Location("s3", bucket, "whole"))[0] == data
    assert faults.proxy.stats.total_faults > 0, faults.summary()


def test_puts_write_whole_objects_and_survive_faults(faults, bucket):
    """put_object (bulk workers' TPF uploads) writes the object and its content type, gives
    its ETag, is retried through failed requests and lost answers, names a missing bucket,
    and raises StorageError when every attempt fails."""
    data = os.urandom(3_000_000)
    where = Location("s3", bucket, "out/one.fits")
    etag = put_object(where, bytearray(data), "application/fits")
    head = faults.s3.head_object(Bucket=bucket, Key="out/one.fits")
    assert (head["ETag"], head["ContentType"], head["ContentLength"]) == (etag, "application/fits", len(data))
    assert get_bytes(where)[0] == data
    faults.set(FaultRates.spread(0.4, ["error_500", "slowdown_503", "reset", "lost_response"]),
               operations={"PutObject"})
    for i in range(8):
        put_object(Location("s3", bucket, f"out/{i}"), data[:100_000 * (i + 1)])
    assert faults.proxy.stats.total_faults > 0, faults.summary()
    faults.set(FaultRates(), operations={"PutObject"})
    for i in range(8):
        assert get_bytes(Location("s3", bucket, f"out/{i}"))[0] == data[:100_000 * (i + 1)]
    with pytest.raises(ObjectNotFoundError):
        put_object(Location("s3", "no-such-bucket", "k"), b"x")
    faults.set(FaultRates(error_500=1.0), operations={"PutObject"})
    with pytest.raises(StorageError):
        put_object(Location("s3", bucket, "out/never"), b"x")


def test_payloads_are_hashed_for_signatures_only_over_plain_http(monkeypatch):
    for endpoint, hashed in ((None, False), ("https://s3.example.org", False), ("http://127.0.0.1:9", True)):
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
        if endpoint is None:
            monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
            monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
        else:
            monkeypatch.setenv("AWS_ENDPOINT_URL_S3", endpoint)
        store = storage.s3_obstore.store_for("some-bucket")
        assert (store.config.get("unsigned_payload") != "true") is hashed, (endpoint, store.config)


def _without_checksums(tpf: bytes) -> bytes:
    """A TPF's bytes without its CHECKSUM values and the times in the CHECKSUM/DATASUM
    comments (they carry the second the file was made)."""
    import re

    return re.sub(rb"CHECKSUM= '.{16}'|updated \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", b"", tpf)


def _child_cutout(url: str, coordinates: str, answer) -> None:
    from cubecut.cutout import cutout_files

    answer.send(bytes(cutout_files(url, coordinates, CUTOUT_SIZE)[0].data))


def test_a_forked_child_cuts_as_its_parent_did(faults, local_cube, bucket):
    """After cutouts in the parent (obstore's runtime, botocore's clients and the read
    threads all started), a child made by fork, Linux's default for multiprocessing, cuts
    the same file instead of hanging: obstore's runtime threads stay in the parent, so the
    child reads through botocore, with threads and clients of its own."""
    import multiprocessing

    from cubecut.cutout import clear_cache, cutout_files

    faults.s3.put_object(Bucket=bucket, Key=CUBE_KEY, Body=local_cube.read_bytes())
    url = f"s3://{bucket}/{CUBE_KEY}"
    (ra, dec), = targets(1)
    clear_cache()
    here = bytes(cutout_files(url, f"{ra} {dec}", CUTOUT_SIZE)[0].data)  # sidecar and pixels via obstore
    clear_cache()  # the child reads the sidecar again too
    context = multiprocessing.get_context("fork")
    ours, theirs = context.Pipe(duplex=False)
    child = context.Process(target=_child_cutout, args=(url, f"{ra} {dec}", theirs))
    child.start()
    try:
        assert ours.poll(120), "the forked child hung"
        there = ours.recv()
        assert len(there) == len(here)
        assert _without_checksums(there) == _without_checksums(here)
    finally:
        child.join(10)
        if child.is_alive():
            child.kill()
