"""Results streamed to storage (issue 17): :class:`cubecut.storage.ObjectStreamWriter` and
:func:`cubecut.tesscut.service.store_zip`.

A result zip is written as its TPFs are produced: S3 multipart parts of 8 MiB (one PUT when
the zip is smaller than a part), or a hidden temporary file renamed into place; each TPF is
released once it is in the zip; a failure mid-stream leaves no object and no upload behind.
Faults injected into UploadPart mid-stream: tests/library/test_faults.py.
"""
from __future__ import annotations

import io
import threading
import tracemalloc
import zipfile
from pathlib import Path
from typing import Iterator

import boto3
import numpy as np
import pytest

from cubecut.storage import STREAM_PART_BYTES, ObjectStreamWriter, get_bytes, put_bytes
from cubecut.tesscut.service import Member, store_zip

MIB = 2**20


def _noise(nbytes: int, seed: int) -> bytes:
    """Incompressible bytes (deflate keeps them at their size: parts fill as fast as possible)."""
    return np.random.default_rng(seed).integers(0, 256, nbytes, dtype=np.uint8).tobytes()


def _tpf_like(nbytes: int, seed: int) -> bytearray:
    """Float32 noise as TPFs hold it (deflate level 1 keeps ~0.3-0.9 of it)."""
    return bytearray(np.random.default_rng(seed).normal(1000, 10, nbytes // 4).astype(">f4").tobytes())


def _members(sizes: list[int]) -> Iterator[Member]:
    for i, nbytes in enumerate(sizes):
        yield f"tpf{i}.fits", _tpf_like(nbytes, i)


def _uploads(s3, bucket: str) -> list[dict]:
    return s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])


def test_stream_of_several_parts_is_one_multipart_object(bucket):
    s3 = boto3.client("s3")
    data = _noise(2 * STREAM_PART_BYTES + 123_457, seed=1)
    with ObjectStreamWriter(f"s3://{bucket}/r/big.bin", "application/zip") as out:
        for start in range(0, len(data), MIB):
            out.write(memoryview(data)[start:start + MIB])
            assert out.tell() == min(len(data), start + MIB)
    assert out.size == len(data) and out.body is None
    assert out.etag is not None and out.etag.strip('"').endswith("-3"), "three parts: 8 MiB, 8 MiB, the rest"
    head = s3.head_object(Bucket=bucket, Key="r/big.bin")
    assert head["ContentType"] == "application/zip" and head["ContentLength"] == len(data)
    assert get_bytes(f"s3://{bucket}/r/big.bin")[0] == data
    assert _uploads(s3, bucket) == []


def test_parts_are_sent_several_at_once_and_assembled_in_order(bucket):
    """Up to ``parts_in_flight`` parts are on their way at once; the first one arriving last
    still makes part 1 of the object."""
    data = _noise(5 * 5 * MIB + 1000, seed=3)
    out = ObjectStreamWriter(f"s3://{bucket}/r/many.bin", part_bytes=5 * MIB, parts_in_flight=3)
    send, lock, first_held = out._upload.write_part, threading.Lock(), threading.Event()
    state = {"now": 0, "most": 0}

    def write_part(upload_id, number, offset, part):
        with lock:
            state["now"] += 1
            state["most"] = max(state["most"], state["now"])
        try:
            if number == 1:
                first_held.wait(10)  # until part 3 is on its way
            elif number == 3:
                first_held.set()
            return send(upload_id, number, offset, part)
        finally:
            with lock:
                state["now"] -= 1

    out._upload.write_part = write_part
    with out:
        out.write(data)
    assert state["most"] == 3 and out.etag.strip('"').endswith("-6")
    assert get_bytes(f"s3://{bucket}/r/many.bin")[0] == data


def test_stream_smaller_than_a_part_is_one_put_and_keeps_its_bytes(bucket):
    s3 = boto3.client("s3")
    with ObjectStreamWriter(f"s3://{bucket}/r/small.bin", "application/zip") as out:
        out.write(b"abc")
        out.write(bytearray(b"def"))
    assert out.body == b"abcdef" and out.size == 6
    assert "-" not in out.etag.strip('"'), "a plain PUT, not a multipart upload"
    assert s3.get_object(Bucket=bucket, Key="r/small.bin")["Body"].read() == b"abcdef"


def test_part_size_below_s3_minimum_is_refused(tmp_path):
    with pytest.raises(ValueError, match="5242880"):
        ObjectStreamWriter(tmp_path / "x", part_bytes=MIB)


def test_failure_mid_stream_aborts_the_upload_and_keeps_the_old_object(bucket):
    s3 = boto3.client("s3")
    url = f"s3://{bucket}/r/result.zip"
    put_bytes(url, b"the previous result", "application/zip")
    with pytest.raises(RuntimeError, match="cut failed"):
        with ObjectStreamWriter(url, "application/zip") as out:
            out.write(_noise(STREAM_PART_BYTES + 1, seed=2))  # part 1 sent
            out.write(b"more")
            raise RuntimeError("cut failed")
    assert _uploads(s3, bucket) == [], "the multipart upload was aborted"
    assert get_bytes(url)[0] == b"the previous result"


def test_store_zip_on_s3_is_read_back_whole_and_by_zipfile(bucket):
    sizes = [6 * MIB, 9 * MIB, 100_000]
    url = f"s3://{bucket}/tesscut/key.zip"
    stored = store_zip(url, _members(sizes))
    assert stored.members == ["tpf0.fits", "tpf1.fits", "tpf2.fits"] and stored.body is None
    body = get_bytes(url)[0]
    assert len(body) == stored.size
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        assert archive.testzip() is None
        for info, (name, data) in zip(archive.infolist(), _members(sizes)):
            assert info.filename == name and info.compress_type == zipfile.ZIP_DEFLATED
            assert info.external_attr >> 16 == 0o600
            assert archive.read(name) == data
    assert _uploads(boto3.client("s3"), bucket) == []


def test_store_zip_without_members_writes_nothing(tmp_path):
    assert store_zip(str(tmp_path / "none.zip"), iter([])).members == []
    assert list(tmp_path.iterdir()) == []


def test_store_zip_locally_renames_a_temporary_file(tmp_path):
    target = tmp_path / "results" / "a.zip"
    stored = store_zip(str(target), _members([10 * MIB, 3 * MIB]))
    assert [p.name for p in target.parent.iterdir()] == ["a.zip"], "no temporary file left"
    assert target.stat().st_size == stored.size and stored.body is None
    with zipfile.ZipFile(target) as archive:
        assert archive.read("tpf1.fits") == _tpf_like(3 * MIB, 1)


def test_small_local_zip_keeps_its_bytes_for_the_inline_answer(tmp_path):
    target = tmp_path / "small.zip"
    stored = store_zip(str(target), _members([100_000]))
    assert stored.body == target.read_bytes() and stored.size == len(stored.body)


@pytest.mark.parametrize("where", ["local", "s3"])
def test_a_member_failing_mid_stream_leaves_nothing(where, tmp_path, request):
    def members() -> Iterator[Member]:
        yield "tpf0.fits", _noise(10 * MIB, seed=3)  # more than one part: the stream has begun
        raise RuntimeError("the second cube failed")

    if where == "s3":
        bucket = request.getfixturevalue("bucket")
        url, s3 = f"s3://{bucket}/tesscut/k.zip", boto3.client("s3")
    else:
        url = str(tmp_path / "out" / "k.zip")
    with pytest.raises(RuntimeError, match="second cube"):
        store_zip(url, members())
    if where == "s3":
        assert _uploads(s3, bucket) == [] and "Contents" not in s3.list_objects_v2(Bucket=bucket)
    else:
        assert list((tmp_path / "out").iterdir()) == []


def test_each_tpf_is_released_once_zipped(tmp_path):
    """Python-allocated memory peaks near one TPF plus the stream's parts, not at all TPFs
    plus the zip (what building the zip in memory held: here 4 x 16 MiB + the 50 MiB zip)."""
    nbytes, count = 16 * MIB, 4

    def members() -> Iterator[Member]:
        for i in range(count):
            yield f"tpf{i}.fits", _tpf_like(nbytes, i)

    tracemalloc.start()
    try:
        stored = store_zip(str(tmp_path / "m.zip"), members())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert stored.members == [f"tpf{i}.fits" for i in range(count)]
    # Making one TPF here briefly holds 2 x its size (its draw and its bytes); beyond that,
    # one TPF and the stream's two parts (one filling, one being sent).
    held_at_once = peak - 2 * nbytes
    print(f"\n[stream] peak {peak / MIB:.1f} MiB for {count} TPFs of {nbytes / MIB:.0f} MiB, "
          f"zip {stored.size / MIB:.1f} MiB")
    assert held_at_once < nbytes + 2 * STREAM_PART_BYTES, f"peak {peak / MIB:.1f} MiB"


def test_inline_answer_and_stored_zip_agree(tmp_path):
    """The bytes kept for the inline answer are the stored object's bytes."""
    target = Path(tmp_path / "inline.zip")
    stored = store_zip(str(target), _members([200_000, 300_000]))
    assert stored.body is not None and stored.body == target.read_bytes()
