"""Streamed TPFs (issue 27): a TPF written to its object as it is built, never whole in memory.

:class:`cubecut.cutout.tpf.StreamedTPF` must write, byte for byte, the file the in-memory writer
(:func:`cubecut.cutout.tpf.tpf_bytes`, itself astropy's file byte for byte) gives for the
same cutout and timestamp: on SPOC and TICA cubes, boxes on and off the image, in one chunk
of frames or one frame per chunk, with the PIXELS checksum summed from its parts or from
the table; through S3's multipart upload on a real S3 HTTP server on 127.0.0.1, and as a
member of a result zip (stored); a stream that fails leaves no object. The service streams
the TPFs above its threshold and charges each request its memory (:func:`work_bytes`).
"""
from __future__ import annotations

import io
import zipfile
from pathlib import Path

import boto3
import numpy as np
import pytest
from astropy.coordinates import SkyCoord

from cubecut import fitswrite
from cubecut.cutout import clear_cache, cutout_box, cutout_files, fill_box, ffi_wcs, load_index, read_chunks, tpf_bytes
from cubecut.cutout import tpf as tpf_module
from cubecut.cutout.engine import TPFStream, cutout_stream
from cubecut.cutout.tpf import StreamedTPF, TPFLayout, read_planes
from cubecut.storage import PARTS_IN_FLIGHT, STREAM_PART_BYTES, FileSource, Location, ObjectStreamWriter, get_bytes, put_bytes
from cubecut.tesscut import service as service_module
from cubecut.tesscut.service import (STREAM_OVERHEAD_BYTES, ConcurrencyLimit, RequestTooLargeError, ServiceBusyError,
                                     store_zip, work_bytes)

WHEN = "2026-01-02T03:04:05"


@pytest.fixture(scope="module")
def cubes(tmp_path_factory, synthetic_cube) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("stream-cubes")
    return {"spoc": synthetic_cube(root / "spoc", frames=6),
            "tica": synthetic_cube(root / "tica", frames=5, product="tica", sector=61)}


@pytest.fixture(autouse=True)
def frozen_checksum_time(monkeypatch):
    monkeypatch.setattr(fitswrite, "checksum_timestamp", lambda: WHEN)
    clear_cache()


def _coord(index, x: float, y: float) -> SkyCoord:
    return SkyCoord(*ffi_wcs(index).pixel_to_world_values(x, y), unit="deg")


def _in_memory(cube: Path, index, box, coord) -> bytes:
    chunks = read_chunks(FileSource(Location.parse(cube)), index, [box])
    return bytes(tpf_bytes(index, box, lambda f, e: fill_box(index, box, chunks, f, e), coord, timestamp=WHEN))


def _streamed(cube: Path, index, box, coord) -> bytes:
    planes = read_planes(FileSource(Location.parse(cube)), index, box)
    tpf = StreamedTPF(index, box, planes, coord, timestamp=WHEN)
    out = io.BytesIO()
    assert tpf.write_to(out) == tpf.size
    return out.getvalue()


#: (x, y, size): 0-based target pixel and cutout size, on a 44 x 40 image.
BOXES = [
    (10.2, 10.7, 1),            # 1x1
    (20.5, 30.2, (3, 2)),       # odd x even
    (17.3, 12.8, (7, 5)),       # odd
    (-1.5, 5.0, 6),             # partly off the left edge: NaN, APERTURE 0
    (43.4, 39.6, (5, 8)),       # partly off the top-right corner
    (22.0, 20.0, 30),           # most of the image
]


@pytest.mark.parametrize("kind", ["spoc", "tica"])
@pytest.mark.parametrize("x, y, size", BOXES)
@pytest.mark.parametrize("chunk", ["one chunk", "a frame per chunk"])
def test_streamed_tpf_is_the_in_memory_tpf_byte_for_byte(cubes, monkeypatch, kind, x, y, size, chunk):
    if chunk != "one chunk":
        monkeypatch.setattr(tpf_module, "CHUNK_BYTES", 1)
    cube = cubes[kind]
    index = load_index(cube)
    coord = _coord(index, x, y)
    box = cutout_box(ffi_wcs(index), coord, size)
    expected = _in_memory(cube, index, box, coord)
    assert _streamed(cube, index, box, coord) == expected


def test_streamed_tpf_without_the_checksum_by_parts_sums_its_table(cubes, monkeypatch):
    """When the table's layout does not allow the DATASUM from its parts, both writers sum
    the table (the streamed one in a first pass over its chunks) and still agree."""
    monkeypatch.setattr(TPFLayout, "sums_by_parts", property(lambda self: False))
    monkeypatch.setattr(tpf_module, "CHUNK_BYTES", 1)
    index = load_index(cubes["spoc"])
    coord = _coord(index, 17.3, 12.8)
    box = cutout_box(ffi_wcs(index), coord, (7, 5))
    assert _streamed(cubes["spoc"], index, box, coord) == _in_memory(cubes["spoc"], index, box, coord)


def test_planes_of_the_wrong_shape_are_refused(cubes):
    index = load_index(cubes["spoc"])
    coord = _coord(index, 20.0, 20.0)
    box = cutout_box(ffi_wcs(index), coord, 3)
    with pytest.raises(ValueError, match="planes"):
        StreamedTPF(index, box, np.zeros((3, 3, index.nt, 2), dtype="<f4"), coord)


# -- through S3 multipart, and into a zip --------------------------------------------------------
@pytest.fixture(scope="module")
def long_cube(tmp_path_factory, synthetic_cube) -> Path:
    """400 frames: a 40x40 TPF is 12.8 MB, two parts of an object stream."""
    return synthetic_cube(tmp_path_factory.mktemp("long-cube"), frames=400)


def _uploads(bucket: str) -> list[dict]:
    return boto3.client("s3").list_multipart_uploads(Bucket=bucket).get("Uploads", [])


def test_cutout_stream_to_s3_is_cutout_files_byte_for_byte(long_cube, bucket, fresh_clients):
    cube_url = f"s3://{bucket}/cubes/{long_cube.name}"
    put_bytes(cube_url, long_cube.read_bytes())
    put_bytes(f"{cube_url}.index.json", Path(f"{long_cube}.index.json").read_bytes())
    index = load_index(long_cube)
    coord = _coord(index, 22.0, 20.0)
    (expected,) = cutout_files(cube_url, coord, 40)
    tpf = cutout_stream(cube_url, coord, 40)
    assert (tpf.name, tpf.nx, tpf.ny, tpf.nt, tpf.size) == (expected.name, 40, 40, 400, len(expected.data))
    assert tpf.size > STREAM_PART_BYTES
    url = f"s3://{bucket}/results/{tpf.name}"
    with ObjectStreamWriter(url, "application/fits") as out:
        assert tpf.write_to(out) == tpf.size
    assert out.etag is not None and out.etag.strip('"').endswith("-2"), "a multipart upload of two parts"
    assert get_bytes(url)[0] == bytes(expected.data)
    assert _uploads(bucket) == []


def test_streamed_zip_member_is_stored_and_byte_for_byte_the_tpf(long_cube, tmp_path):
    index = load_index(long_cube)
    coord = _coord(index, 22.0, 20.0)
    (expected,) = cutout_files(long_cube, coord, 40)
    small = cutout_files(long_cube, coord, 3)[0]
    stored = store_zip(str(tmp_path / "r.zip"), iter([("big.fits", cutout_stream(long_cube, coord, 40)),
                                                        ("small.fits", small.data)]))
    assert stored.members == ["big.fits", "small.fits"]
    with zipfile.ZipFile(tmp_path / "r.zip") as archive:
        assert archive.testzip() is None
        big, little = archive.infolist()
        assert big.compress_type == zipfile.ZIP_STORED and little.compress_type == zipfile.ZIP_DEFLATED
        assert big.external_attr >> 16 == 0o600
        assert archive.read("big.fits") == bytes(expected.data)
        assert archive.read("small.fits") == bytes(small.data)


class _CutShort:
    """A file object passing writes to ``out`` until more than ``limit`` bytes would have gone."""

    def __init__(self, out, limit: int) -> None:
        self.out, self.limit, self.written = out, limit, 0

    def write(self, data) -> int:
        self.written += memoryview(data).nbytes
        if self.written > self.limit:
            raise OSError("the cube read failed mid-stream")
        return self.out.write(data)


class _Failing:
    """A streamed member that fails after writing ``after`` bytes of ``tpf``."""

    def __init__(self, tpf: TPFStream, after: int) -> None:
        self.tpf, self.after = tpf, after

    @property
    def size(self) -> int:
        return self.tpf.size

    def write_to(self, out) -> int:
        return self.tpf.write_to(_CutShort(out, self.after))


def test_a_stream_that_fails_leaves_no_object(long_cube, bucket, fresh_clients, monkeypatch):
    monkeypatch.setattr(tpf_module, "CHUNK_BYTES", 2**20)
    index = load_index(long_cube)
    coord = _coord(index, 22.0, 20.0)
    tpf = cutout_stream(long_cube, coord, 40)
    failing = _Failing(tpf, after=STREAM_PART_BYTES + 2**20)  # one part sent before the failure
    with pytest.raises(OSError, match="mid-stream"):
        with ObjectStreamWriter(f"s3://{bucket}/r/a.fits", "application/fits") as out:
            failing.write_to(out)
    with pytest.raises(OSError, match="mid-stream"):
        store_zip(f"s3://{bucket}/r/a.zip", iter([("a.fits", failing)]))
    assert boto3.client("s3").list_objects_v2(Bucket=bucket).get("KeyCount") == 0
    assert _uploads(bucket) == []


# -- the service's memory budget --------------------------------------------------------------
def test_work_bytes_charges_streamed_boxes_and_whole_tpfs():
    big, small = 100 * 100 * 11_700, 10 * 10 * 1_300
    assert service_module.streamed(big) and not service_module.streamed(small)
    assert work_bytes([big]) == big * 8 + STREAM_OVERHEAD_BYTES
    assert work_bytes([small]) == small * 64
    assert work_bytes([big], in_memory=True) == big * 64
    assert work_bytes([big, small]) == big * 8 + STREAM_OVERHEAD_BYTES + small * 64


def test_a_100x100_cutout_of_a_200_second_sector_is_within_the_default_budgets():
    from cubecut.tesscut.service import CutoutService

    service = CutoutService(None, "s3://b/results/")  # type: ignore[arg-type]  # the catalog is not used
    nbytes = service.check_budget([100 * 100 * 11_700])
    assert nbytes <= service.max_work_bytes
    with pytest.raises(RequestTooLargeError, match="GB of memory built in memory"):
        service.check_budget([100 * 100 * 11_700], in_memory=True)
    with pytest.raises(RequestTooLargeError, match="pixel-frames"):
        service.check_budget([110 * 110 * 11_700])


def test_the_limit_refuses_work_beyond_its_memory_not_only_beyond_its_count():
    limit = ConcurrencyLimit(4, max_bytes=1000)
    with limit.slot(600):
        with pytest.raises(ServiceBusyError, match="GB"):
            with limit.slot(600):
                pass
        with limit.slot(400):
            pass
    with limit.slot(1000):  # the whole budget, once nothing else runs
        pass
    with limit.slot(5000):  # alone: a request the budget check let through always runs
        pass


def test_the_stream_overhead_covers_what_a_stream_holds_besides_its_box():
    assert (tpf_module.READ_BYTES_IN_FLIGHT + tpf_module.CHUNK_BYTES + (PARTS_IN_FLIGHT + 1) * STREAM_PART_BYTES
            <= STREAM_OVERHEAD_BYTES)


def test_the_service_counts_the_tpf_bytes_the_writer_lays_out():
    """The service keeps its own copy of the TPF's bytes per pixel-frame (importing the
    pipeline would load astropy at the API's import): it must be the pipeline's."""
    from cubecut.cutout.engine import TPF_BYTES_PER_PIXEL

    assert service_module.TPF_BYTES_PER_PIXEL_FRAME == TPF_BYTES_PER_PIXEL
