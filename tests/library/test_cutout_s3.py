"""Cutouts through a real S3 API (moto server): requests and bytes, caching, stale objects, errors."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from botocore.exceptions import ClientError

from cubecut import storage
from cubecut.cutout import Box, clear_cache, cutout, cutout_box, ffi_wcs, load_index, read_boxes
from cubecut.cube.index_cache import FIRST_READ
from cubecut.errors import AccessDeniedError, NotACubeError, ObjectNotFoundError
from cubecut.storage import ReadStats, open_source, put_bytes, translate_client_error
from test_cutout import make_astrocut_cube, sky

NROWS, NCOLS, NT = 60, 70, 6


@pytest.fixture(scope="module")
def local_cube(tmp_path_factory):
    return make_astrocut_cube(tmp_path_factory.mktemp("s3cube"), shape=(NROWS, NCOLS), frames=NT)


@pytest.fixture(autouse=True)
def fresh_cache():
    clear_cache()
    yield
    clear_cache()


@pytest.fixture
def s3_cube(bucket: str, local_cube) -> str:
    url = f"s3://{bucket}/cubes/{local_cube.name}"
    put_bytes(url, local_cube.read_bytes())
    return url


def write_sidecar(url: str) -> int:
    """Put ``{cube}.index.json`` made from the S3 object itself (with its ETag); its size."""
    data = load_index(url, refresh=True).to_json()
    put_bytes(url + ".index.json", data, content_type="application/json")
    clear_cache()
    return len(data)


def box_rows(url: str, coord, size) -> tuple[Box, int]:
    index = load_index(url)
    box = cutout_box(ffi_wcs(index), coord, size)
    clear_cache()
    return box, box.overlap(NCOLS, NROWS).ny


def test_cold_cutout_with_sidecar_reads_only_needed_bytes(s3_cube: str, local_cube):
    sidecar = write_sidecar(s3_cube)
    coord, size = sky(load_index(local_cube), 33.3, 28.6), (9, 13)
    box, rows = box_rows(s3_cube, coord, size)
    stats = ReadStats()
    tpf = cutout(s3_cube, coord, size, stats=stats)[0]
    needed = rows * box.nx * NT * 8
    print(f"\ncold cutout {box.nx}x{box.ny} with sidecar: {stats.requests} requests, {stats.bytes} bytes "
          f"(pixels {needed} + sidecar {sidecar})")
    assert stats.requests <= rows + 2
    assert stats.bytes <= 1.05 * (needed + sidecar)
    assert (stats.requests, stats.bytes) == (rows + 1, needed + sidecar)
    local = cutout(local_cube, coord, size)[0]
    np.testing.assert_array_equal(tpf[1].data["FLUX"], local[1].data["FLUX"])
    np.testing.assert_array_equal(tpf[1].data["FLUX_ERR"], local[1].data["FLUX_ERR"])
    # the same cards, but for the checksums, whose comments say when they were computed
    checksums = ("CHECKSUM", "DATASUM")
    assert [c.image for c in tpf[2].header.cards if c.keyword not in checksums] == [
        c.image for c in local[2].header.cards if c.keyword not in checksums]
    assert tpf[2].header["DATASUM"] == local[2].header["DATASUM"]


def test_without_sidecar_metadata_is_a_fixed_small_number_of_reads(s3_cube: str, local_cube):
    stats = ReadStats()
    index = load_index(s3_cube, stats)
    table_bytes = index.cube_size - (index.data_offset + -(-NROWS * NCOLS * NT * 8 // 2880) * 2880)
    print(f"\nindex without sidecar: {stats.requests} requests, {stats.bytes} bytes "
          f"(first {FIRST_READ} + table {table_bytes})")
    # sidecar probe (404), HEAD, the first bytes (both headers), the table HDU
    assert stats.requests == 4
    assert stats.bytes == FIRST_READ + table_bytes
    assert replace(index, cube_etag=None) == replace(load_index(local_cube), cube_etag=None)


def test_warm_cutout_makes_no_metadata_reads(s3_cube: str, local_cube):
    coord, size = sky(load_index(local_cube), 50.2, 10.9), 7
    box, rows = box_rows(s3_cube, coord, size)
    cutout(s3_cube, coord, size)
    stats = ReadStats()
    cutout(s3_cube, coord, size, stats=stats)
    assert (stats.requests, stats.bytes) == (rows, rows * box.nx * NT * 8)


def test_shared_rows_of_many_targets_are_read_once(s3_cube: str, local_cube):
    index = load_index(s3_cube)
    stats = ReadStats()
    boxes = [Box(10, 10, 10, 5), Box(15, 12, 15, 6)]
    results = read_boxes(open_source(s3_cube, stats, size=index.cube_size, etag=index.cube_etag), index, boxes)
    assert stats.requests == 8 and stats.bytes == (2 * 10 + 3 * 20 + 3 * 15) * NT * 8
    coords = [sky(load_index(local_cube), 30.0, 30.0), sky(load_index(local_cube), 31.0, 31.0)]
    for threads in ("auto", 1):
        remote = cutout(s3_cube, coords, 5, threads=threads)
        local = cutout(local_cube, coords, 5)
        for a, b in zip(remote, local):
            np.testing.assert_array_equal(a[1].data["FLUX"], b[1].data["FLUX"])
    assert len(results) == 2


@pytest.mark.parametrize("with_sidecar", [False, True])
def test_replaced_cube_is_detected_by_etag_and_reloaded(s3_cube: str, local_cube, with_sidecar: bool):
    if with_sidecar:
        write_sidecar(s3_cube)  # it goes stale below: a sidecar may lag behind its cube
    index = load_index(s3_cube)
    coord = sky(load_index(local_cube), 20.0, 20.0)
    before = cutout(s3_cube, coord, 3)[0][1].data["FLUX"]
    data = bytearray(local_cube.read_bytes())
    start = index.row_offset(20) + 20 * NT * 8
    data[start:start + 4] = np.array([-1.0], dtype=">f4").tobytes()  # pixel (20, 20), frame 0
    put_bytes(s3_cube, bytes(data))
    stats = ReadStats()
    assert load_index(s3_cube, stats) is index and stats.requests == 0  # keyed by URL; its ETag is checked at reads
    if with_sidecar:
        clear_cache()  # a cold process: it trusts the (stale) sidecar first
    after = cutout(s3_cube, coord, 3)[0][1].data["FLUX"]
    assert before[0, 1, 1] != -1.0 and after[0, 1, 1] == -1.0
    assert load_index(s3_cube).cube_etag != index.cube_etag


def test_bad_objects(bucket: str, local_cube):
    coord = sky(load_index(local_cube), 30.0, 30.0)
    with pytest.raises(ObjectNotFoundError):
        cutout(f"s3://{bucket}/cubes/missing-cube.fits", coord, 5)
    with pytest.raises(ObjectNotFoundError):
        cutout(f"s3://no-such-bucket-{bucket}/cube.fits", coord, 5)
    ffi = next((local_cube.parent / "ffis").glob("*.fits"))
    put_bytes(f"s3://{bucket}/ffi.fits", ffi.read_bytes())
    with pytest.raises(NotACubeError, match="not a cube"):
        cutout(f"s3://{bucket}/ffi.fits", coord, 5)
    put_bytes(f"s3://{bucket}/short-cube.fits", local_cube.read_bytes()[:-4000])
    with pytest.raises(NotACubeError, match="truncated"):
        cutout(f"s3://{bucket}/short-cube.fits", coord, 5)


def test_refused_credentials_are_access_denied(monkeypatch, s3_cube: str, local_cube):
    """moto accepts any credentials, so S3's refusal is synthesised as botocore raises it."""
    for code, status in [("InvalidAccessKeyId", 403), ("SignatureDoesNotMatch", 403), ("AccessDenied", 403),
                         ("Forbidden", 403)]:
        error = ClientError({"Error": {"Code": code, "Message": "refused"},
                             "ResponseMetadata": {"HTTPStatusCode": status}}, "GetObject")
        assert isinstance(translate_client_error(error, s3_cube), AccessDeniedError)

    class Refusing:
        def __getattr__(self, name):
            def refuse(**kwargs):
                raise ClientError({"Error": {"Code": "InvalidAccessKeyId", "Message": "refused"},
                                   "ResponseMetadata": {"HTTPStatusCode": 403}}, name)
            return refuse

    monkeypatch.setattr(storage.s3, "s3_client", lambda anon=None: Refusing())
    with pytest.raises(AccessDeniedError, match="access denied"):
        cutout(s3_cube, sky(load_index(local_cube), 30.0, 30.0), 5)
