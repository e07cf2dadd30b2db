"""Ingest: cubes byte-compatible with astrocut, on disk and through a real S3 API."""
from __future__ import annotations

import glob
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import boto3
import numpy as np
import pytest
from astropy.io import fits

from cubecut.cube.index import CubeIndex
from cubecut.errors import (DuplicateTimeError, FFIError, MixedFFIError, NoInputError, TargetNotWritableError)
from cubecut.ingest.inputs import resolve_inputs
from cubecut.ingest.run import ingest
from cubecut.synth import make_sector, star_catalog

MIB = 1024 * 1024


def astrocut_cube(files: list[Path], out: Path, sector: int) -> Path:
    from astrocut import CubeFactory

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        CubeFactory().make_cube([str(f) for f in files], str(out), sector=sector, verbose=False)
    return out


def assert_same_cube(ours: Path | bytes, theirs: Path) -> None:
    """Primary headers equal apart from DATE and the time stamp in DATASUM's comment;
    everything after them byte-identical."""
    ours_bytes = ours if isinstance(ours, bytes) else Path(ours).read_bytes()
    theirs_bytes = theirs.read_bytes()
    assert len(ours_bytes) == len(theirs_bytes)
    with fits.open(theirs) as reference:
        primary_bytes = len(reference[0].header.tostring())

    def cards(data: bytes) -> list[tuple]:
        header = fits.Header.fromstring(data[:primary_bytes].decode("ascii"))
        return [(c.keyword, c.value, "" if c.keyword == "DATASUM" else c.comment)
                for c in header.cards if c.keyword != "DATE"]

    assert cards(ours_bytes) == cards(theirs_bytes)
    assert ours_bytes[primary_bytes:] == theirs_bytes[primary_bytes:], "image header, pixels and table"


@pytest.fixture(scope="module")
def small_sector(tmp_path_factory) -> list[Path]:
    return make_sector(tmp_path_factory.mktemp("ffis"), sector=5, camera=2, ccd=3, frames=14, shape=(40, 48),
                       seed=3)


@pytest.fixture(scope="module")
def multipart_sector(tmp_path_factory) -> list[Path]:
    """Three 5 MiB parts: 200 x 120 px x 60 frames x 2 planes x 4 B = 11.5 MB (92-row blocks)."""
    return make_sector(tmp_path_factory.mktemp("ffis-mp"), sector=1, camera=1, ccd=1, frames=60,
                       shape=(200, 120), seed=1)


def test_file_cube_equals_astrocut(small_sector, tmp_path):
    result = ingest([str(p) for p in small_sector], str(tmp_path / "ours.fits"), workers=2)
    reference = astrocut_cube(small_sector, tmp_path / "astrocut.fits", sector=5)
    assert_same_cube(tmp_path / "ours.fits", reference)
    assert result.nt == 14 and result.size == reference.stat().st_size
    with fits.open(tmp_path / "ours.fits") as hdul:
        assert hdul[1].data.shape == (40, 48, 14, 2)
        assert hdul[1].data.dtype == np.dtype(">f4")


def test_time_axis_is_ordered_whatever_the_input_order(small_sector, tmp_path):
    shuffled = [str(p) for p in small_sector][::-1]
    ingest(shuffled, str(tmp_path / "ours.fits"))
    reference = astrocut_cube(small_sector, tmp_path / "astrocut.fits", sector=5)
    assert_same_cube(tmp_path / "ours.fits", reference)


def test_s3_multipart_cube_equals_astrocut(multipart_sector, bucket, tmp_path):
    s3 = boto3.client("s3")
    for path in multipart_sector:
        s3.upload_file(str(path), bucket, f"ffis/s0001/{path.name}")
    cube_url = f"s3://{bucket}/cubes/tess-s0001-1-1-cube.fits"
    result = ingest(resolve_inputs([f"s3://{bucket}/ffis/s0001/"]), cube_url, block_bytes=5 * MIB, workers=3)
    ours = s3.get_object(Bucket=bucket, Key="cubes/tess-s0001-1-1-cube.fits")["Body"].read()
    assert result.etag.strip('"').endswith("-3"), "three multipart parts"
    reference = astrocut_cube(multipart_sector, tmp_path / "astrocut.fits", sector=1)
    assert_same_cube(ours, reference)
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]}
    assert keys - {f"ffis/s0001/{p.name}" for p in multipart_sector} == {
        "cubes/tess-s0001-1-1-cube.fits", "cubes/tess-s0001-1-1-cube.fits.index.json"}, "staging cleaned up"
    assert not s3.list_multipart_uploads(Bucket=bucket).get("Uploads")
    index = CubeIndex.from_json(s3.get_object(Bucket=bucket, Key=result.index[len(f"s3://{bucket}/"):])["Body"].read())
    assert (index.nrows, index.ncols, index.nt, index.nplanes) == (200, 120, 60, 2)
    assert index.cube_etag == result.etag and index.cube_size == len(ours)
    with fits.open(reference) as hdul:
        table = hdul[2].data
        assert index.tstart == list(table["TSTART"]) and index.quality == list(table["DQUALITY"])
        assert index.ffi_files == [str(n) for n in table["FFI_FILE"]]
        assert index.data_offset == hdul[1]._data_offset


def test_astrocut_cuts_our_cube(small_sector, tmp_path):
    from astrocut import CutoutFactory

    ingest([str(p) for p in small_sector], str(tmp_path / "ours.fits"))
    stars = star_catalog(sector=5, camera=2, ccd=3, shape=(40, 48), seed=3)
    star = stars[np.argmin(np.hypot(stars["col"] - 24, stars["row"] - 20))]
    ra, dec = star["ra"], star["dec"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = CutoutFactory().cube_cut(str(tmp_path / "ours.fits"), f"{ra} {dec}", 5, output_path=str(tmp_path))
    with fits.open(path) as tpf:
        assert tpf[1].data["FLUX"].shape == (14, 5, 5)
        assert np.isfinite(tpf[1].data["FLUX"]).all()


ASTROCUT_12 = Path(sys.prefix) / "astrocut-1.2"


@pytest.mark.skipif(not ASTROCUT_12.is_dir(), reason="astrocut 1.2.0 is installed by dev.py into .venv/astrocut-1.2")
def test_tica_cube_equals_astrocut_1_2_tica_factory(tmp_path):
    files = make_sector(tmp_path / "tica", sector=61, camera=1, ccd=1, frames=9, shape=(30, 34), product="tica",
                        seed=2)
    ours = ingest([str(p) for p in files], str(tmp_path / "ours.fits"))
    script = textwrap.dedent(f"""
        import glob, warnings
        warnings.simplefilter("ignore")
        from astrocut import TicaCubeFactory
        TicaCubeFactory().make_cube(sorted(glob.glob({str(tmp_path / 'tica' / '*.fits')!r})),
                                    {str(tmp_path / 'astrocut.fits')!r}, sector=61, verbose=False)
    """)
    env = dict(os.environ, PYTHONPATH=str(ASTROCUT_12))
    subprocess.run([sys.executable, "-c", script], check=True, env=env)
    assert_same_cube(tmp_path / "ours.fits", tmp_path / "astrocut.fits")
    with fits.open(tmp_path / "ours.fits") as hdul:
        assert hdul[1].data.shape == (30, 34, 9, 1)
    assert ours.nt == 9


# --- bad input: a named error and nothing written ---------------------------------------

def test_mixed_ccds_are_refused(small_sector, tmp_path):
    other = make_sector(tmp_path / "other", sector=5, camera=2, ccd=4, frames=2, shape=(40, 48), seed=3)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(MixedFFIError, match="camera/CCD"):
        ingest([str(p) for p in [*small_sector, *other]], str(out / "cube.fits"))
    assert list(out.iterdir()) == []


def test_mixed_shapes_and_sectors_are_refused(small_sector, tmp_path):
    shape = make_sector(tmp_path / "shape", sector=5, camera=2, ccd=3, frames=1, shape=(41, 48), seed=3,
                        first_frame=20)
    with pytest.raises(MixedFFIError, match="shape"):
        ingest([str(p) for p in [*small_sector, *shape]], str(tmp_path / "cube.fits"))
    sector = make_sector(tmp_path / "sector", sector=6, camera=2, ccd=3, frames=1, shape=(40, 48), seed=3)
    with pytest.raises(MixedFFIError, match="sector"):
        ingest([str(p) for p in [*small_sector, *sector]], str(tmp_path / "cube.fits"))
    assert not (tmp_path / "cube.fits").exists()


def test_duplicate_start_times_are_refused(small_sector, tmp_path):
    copy = tmp_path / ("x" + small_sector[0].name)
    copy.write_bytes(small_sector[0].read_bytes())
    with pytest.raises(DuplicateTimeError):
        ingest([str(p) for p in [*small_sector, copy]], str(tmp_path / "cube.fits"))
    assert not (tmp_path / "cube.fits").exists()


def test_truncated_and_corrupt_ffis_are_refused(small_sector, tmp_path):
    truncated = tmp_path / small_sector[0].name
    truncated.write_bytes(small_sector[0].read_bytes()[:-5000])
    with pytest.raises(FFIError, match="truncated"):
        ingest([str(truncated), *map(str, small_sector[1:])], str(tmp_path / "cube.fits"))
    corrupt = tmp_path / ("c" + small_sector[0].name)
    corrupt.write_bytes(b"not a FITS file at all" * 200)
    with pytest.raises(FFIError):
        ingest([str(corrupt)], str(tmp_path / "cube.fits"))
    assert not (tmp_path / "cube.fits").exists()


def test_spoc_ffi_without_error_extension_is_refused(small_sector, tmp_path):
    with fits.open(small_sector[0]) as hdul:
        broken = tmp_path / small_sector[0].name
        fits.HDUList([hdul[0].copy(), hdul[1].copy()]).writeto(broken)
    with pytest.raises(FFIError, match="uncertainty"):
        ingest([str(broken), *map(str, small_sector[1:])], str(tmp_path / "cube.fits"))


def test_empty_input_is_refused(tmp_path):
    with pytest.raises(NoInputError):
        ingest([], str(tmp_path / "cube.fits"))
    with pytest.raises(NoInputError):
        resolve_inputs([str(tmp_path)])


def test_unwritable_targets_are_refused(small_sector, tmp_path, s3_endpoint):
    blocker = tmp_path / "file"
    blocker.write_text("a file where a folder should be")
    with pytest.raises(TargetNotWritableError):
        ingest([str(p) for p in small_sector], str(blocker / "cube.fits"))
    with pytest.raises(TargetNotWritableError):
        ingest([str(p) for p in small_sector], "s3://no-such-bucket-here/cube.fits")


def test_failed_block_aborts_the_upload(small_sector, bucket, monkeypatch):
    from cubecut.ingest import transpose

    def explode(*args, **kwargs):
        raise OSError("disk on fire")

    monkeypatch.setattr(transpose, "_read_rows", explode)
    with pytest.raises(OSError):
        ingest([str(p) for p in small_sector], f"s3://{bucket}/cubes/cube.fits")
    s3 = boto3.client("s3")
    assert not s3.list_multipart_uploads(Bucket=bucket).get("Uploads")
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket)


def test_staging_objects_carry_the_lifecycle_tag(small_sector, bucket):
    """So the bucket's ExpireIngestStaging rule can remove what a dead ingest left."""
    from cubecut.ingest.finalize import abort_ingest
    from cubecut.ingest.plan import STAGING_TAGS, make_plan

    plan = make_plan([str(p) for p in small_sector], f"s3://{bucket}/cubes/")
    s3 = boto3.client("s3")
    staged = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert staged and all(".ingest/" in key for key in staged)
    for key in staged:
        tags = {t["Key"]: t["Value"] for t in s3.get_object_tagging(Bucket=bucket, Key=key)["TagSet"]}
        assert tags == STAGING_TAGS
    abort_ingest(plan)
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket)
