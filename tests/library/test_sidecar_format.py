"""The index sidecar's format at a 200-s sector's size: version 2 round-trips value for value,
version 1 sidecars still read, and a damaged block is refused (so the index is rebuilt)."""
from __future__ import annotations

import base64
import json
import zlib
from dataclasses import asdict, fields

import numpy as np
import pytest

from cubecut.cube.index import FRAME_COLUMNS, INDEX_VERSION, CubeIndex
from cubecut.cube.sidecar import parse_sidecar
from cubecut.synth.headers import spoc_name
from cubecut.synth.sector import load_sector
from cubecut.synth.timing import frame_times

FRAMES = 11_700  # a 200-s sector's FFIs per CCD


@pytest.fixture(scope="module")
def index() -> CubeIndex:
    """A 200-s cadence cube's index: sector 56's real frame times and SPOC names, NaN times
    where a frame has none, quality bits up to bit 31, cadence numbers past 2**31."""
    sector = load_sector(56, 1, 1)
    times = frame_times(sector, 0, FRAMES)
    tstart, tstop = times.tstart.copy(), times.tstop.copy()
    tstart[[3, 4000]] = np.nan
    quality = times.quality.astype(np.int64)
    quality[[7, 11_000]] = [-(2**31), 2**31 - 1]
    return CubeIndex(
        nrows=2078, ncols=2136, nt=FRAMES, data_offset=5760, cube_size=5760 + 2078 * 2136 * FRAMES * 8,
        product="SPOC", sector=56, camera=1, ccd=1, tstart=tstart.tolist(), tstop=tstop.tolist(),
        barycorr=times.barycorr.tolist(), quality=quality.tolist(),
        ffi_files=[spoc_name(sector, times, i) for i in range(FRAMES)], primary_header="SIMPLE  =" + " " * 71,
        wcs_row=FRAMES // 2, wcs_header="", cube_etag='"0123abcd"', cadence=(times.cadenceno + 2**31).tolist(),
        tpf_template={"format": 1, "headers": []})


def same(a: CubeIndex, b: CubeIndex) -> None:
    """Every field equal, value for value (NaN equal to NaN, types kept)."""
    for f in fields(CubeIndex):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if f.name in {name for name, _ in FRAME_COLUMNS}:
            assert [type(v) for v in x] == [type(v) for v in y], f.name
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=f.name)
        else:
            assert x == y, f.name


def test_a_200s_sidecar_round_trips_value_for_value(index):
    data = index.to_json()
    raw = json.loads(data)
    assert raw["version"] == INDEX_VERSION == 2 and "tstart" not in raw and "ffi_files" not in raw
    back = CubeIndex.from_json(data)
    same(back, index)
    assert back.to_json() == data
    assert parse_sidecar(data, "s3://b/cube.fits.index.json") is not None


def test_version_1_sidecars_still_read(index):
    old = {**asdict(index), "version": 1}  # how sidecars were written before version 2
    back = CubeIndex.from_json(json.dumps(old))
    same(back, index)
    assert back.version == INDEX_VERSION


def test_version_2_is_smaller_than_version_1(index):
    old = json.dumps({**asdict(index), "version": 1}, separators=(",", ":")).encode()
    assert len(index.to_json()) * 3 < len(old)


def damaged(index: CubeIndex, change) -> bytes:
    raw = json.loads(index.to_json())
    change(raw["frames"])
    return json.dumps(raw).encode()


def block(frames: dict, data: bytes) -> None:
    frames["zlib_base64"] = base64.b64encode(zlib.compress(data)).decode()


@pytest.mark.parametrize("change", [
    lambda f: f.update(zlib_base64=f["zlib_base64"][:-8]),  # truncated
    lambda f: f.update(zlib_base64="not base64!"),
    lambda f: f["counts"].update(tstart=FRAMES + 1),  # counts that do not match the block
    lambda f: f["counts"].update(ffi_files=FRAMES - 1),
    lambda f: f["counts"].pop("cadence"),
    lambda f: f["counts"].update(quality=-1),
    lambda f: block(f, b"\0" * 10**7),  # far more than the counts allow
], ids=["truncated", "not-base64", "tstart-count", "names-count", "missing-column", "negative", "oversized"])
def test_a_damaged_block_is_refused_and_the_sidecar_ignored(index, change):
    data = damaged(index, change)
    with pytest.raises((ValueError, TypeError)):
        CubeIndex.from_json(data)
    assert parse_sidecar(data, "s3://b/cube.fits.index.json") is None


def test_a_newline_in_an_ffi_name_is_refused(index):
    from dataclasses import replace

    with pytest.raises(ValueError, match="newline"):
        replace(index, ffi_files=["a\nb"] * FRAMES).to_json()
