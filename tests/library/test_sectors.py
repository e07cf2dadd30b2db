"""Every sector of a position: cutouts over many cubes (paths, globs, folders, S3 prefixes)
and over MAST-style public data chosen by a footprint table, from the CLI and Python.

The data: two cubes of one CCD's sky (sector 1, and a "sector 2" made of the same FFIs with
SECTOR 2 and the pixels doubled, so the two cubes' values differ), and a footprint table in
MAST's format (a JSON object of columns) holding their polygons and a far-away sector 3's.
The S3 copies sit in a bucket that, as MAST's stpubdata, anyone may read: objects public-read
and a bucket policy allowing everyone GetObject and ListBucket; the MAST-style cutouts are
unsigned requests.
"""
from __future__ import annotations

import json
from pathlib import Path

import boto3
import numpy as np
import pytest
from astropy.io import fits

import cubecut
from cubecut import footprints, storage
from cubecut.cutout import clear_cache, ffi_wcs, load_index
from cubecut.errors import FootprintTableError, NoCubeError, ObjectNotFoundError
from cubecut.footprints import Footprint, mast_cube_url, parse_footprints
from cubecut.ingest.inputs import resolve_inputs
from cubecut.ingest.run import ingest
from cubecut.sectors import find_sectors, parse_sectors
from cubecut.synth import make_sector
from cubecut_infra.cli import main

NROWS, NCOLS, NT = 30, 36, 4


@pytest.fixture(autouse=True)
def fresh(monkeypatch):
    clear_cache()
    footprints.clear_footprints()
    storage.reset_clients()
    yield
    clear_cache()
    footprints.clear_footprints()


@pytest.fixture(scope="module")
def cubes(tmp_path_factory) -> Path:
    """A folder with tess-s0001-1-1-cube.fits and tess-s0002-1-1-cube.fits (and sidecars), and
    tess-s0001-2-1-cube.fits of another camera, which the targets are not on."""
    root = tmp_path_factory.mktemp("sectors")
    one = make_sector(root / "s1", sector=1, camera=1, ccd=1, frames=NT, shape=(NROWS, NCOLS), seed=3)
    two = root / "s2"
    two.mkdir()
    for path in one:
        with fits.open(path) as hdus:
            hdus[0].header["SECTOR"] = 2
            for hdu in hdus[1:]:
                if hdu.data is not None:
                    hdu.data = hdu.data * 2
            hdus.writeto(two / path.name.replace("-s0001-", "-s0002-"))
    elsewhere = make_sector(root / "c2", sector=1, camera=2, ccd=1, frames=2, shape=(8, 8))
    folder = root / "cubes"
    for ffis in (one, list(two.glob("*ffic.fits")), elsewhere):
        ingest(resolve_inputs([str(p) for p in ffis]), str(folder) + "/")
    return folder


def polygon(cube: Path) -> str:
    """The s_region of a cube's image: its four outer pixel corners (0-based edges at -0.5)."""
    index = load_index(cube)
    corners = [(-0.5, -0.5), (index.ncols - 0.5, -0.5), (index.ncols - 0.5, index.nrows - 0.5),
               (-0.5, index.nrows - 0.5)]
    ra, dec = ffi_wcs(index).all_pix2world(np.array(corners), 0).T
    return "POLYGON " + " ".join(f"{r:.8f} {d:.8f}" for r, d in zip(ra, dec))


def footprint_table(cubes: Path) -> bytes:
    """A footprint table in MAST's format: a JSON object of columns, one element per FFI."""
    names = ["tess-s0001-1-1", "tess-s0002-1-1", "tess-s0003-4-4"]
    regions = [polygon(cubes / f"{n}-cube.fits") for n in names[:2]]
    regions.append("POLYGON 100.0 10.0 110.0 10.0 110.0 20.0 100.0 20.0")
    return json.dumps({"obs_id": names, "s_region": regions, "sequence_number": [1, 2, 3],
                       "target_name": ["TESS FFI"] * 3}).encode()


@pytest.fixture
def public_mast(bucket, cubes, monkeypatch) -> str:
    """MAST's layout in a public bucket: cubes under tess/public/mast/, the footprint table
    under tess/public/footprints/; the environment points cubecut at them."""
    s3 = boto3.client("s3")
    for cube in sorted(cubes.glob("*-1-1-cube.fits")):  # no sidecars: MAST has none
        s3.put_object(Bucket=bucket, Key=f"tess/public/mast/{cube.name}", Body=cube.read_bytes(), ACL="public-read")
    s3.put_object(Bucket=bucket, Key="tess/public/footprints/tess_ffi_footprint_cache.json",
                  Body=footprint_table(cubes), ACL="public-read")
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": "*", "Action": ["s3:GetObject", "s3:ListBucket"],
        "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"]}]}))
    monkeypatch.setenv("CUBECUT_FOOTPRINT_URL", f"s3://{bucket}/tess/public/footprints/tess_ffi_footprint_cache.json")
    monkeypatch.setenv("CUBECUT_MAST_CUBES", f"s3://{bucket}/tess/public/mast/")  # read by the CLI
    return bucket


def mast_like(bucket: str) -> dict[str, str]:
    """The Python API's arguments that point it at the public bucket instead of MAST."""
    return {"footprints": f"s3://{bucket}/tess/public/footprints/tess_ffi_footprint_cache.json",
            "mast_cubes": f"s3://{bucket}/tess/public/mast/"}


def target(cubes: Path, x: float = 17.2, y: float = 14.7) -> str:
    world = ffi_wcs(load_index(cubes / "tess-s0001-1-1-cube.fits")).pixel_to_world(x, y)
    return f"{float(world.ra.deg)!r} {float(world.dec.deg)!r}"


def assert_same_tpf(path_a: str, path_b: str) -> None:
    with fits.open(path_a) as a, fits.open(path_b) as b:
        for column in ("FLUX", "FLUX_ERR", "TIME", "QUALITY"):
            np.testing.assert_array_equal(a[1].data[column], b[1].data[column])
        assert a[0].header["SECTOR"] == b[0].header["SECTOR"]


def test_mast_footprint_cutout_equals_one_cube_cutouts(public_mast, cubes, tmp_path):
    position = target(cubes)
    paths = cubecut.cutout_sectors(position, 5, output_dir=tmp_path / "many", **mast_like(public_mast))
    assert [Path(p).name.split("_")[0] for p in paths] == ["tess-s0001-1-1", "tess-s0002-1-1"]
    for path, sector in zip(paths, (1, 2)):
        (single,) = cubecut.cutout(cubes / f"tess-s000{sector}-1-1-cube.fits", position, 5,
                                   output_dir=tmp_path / f"one{sector}")
        assert Path(path).name == Path(single).name  # the same file a one-cube cutout writes
        assert_same_tpf(path, single)
    with fits.open(paths[0]) as a, fits.open(paths[1]) as b:  # the two sectors are two cubes
        np.testing.assert_array_equal(b[1].data["FLUX"], 2 * a[1].data["FLUX"])


def test_mast_cli_sectors_choice_and_listing(public_mast, cubes, tmp_path, capsys):
    ra, dec = target(cubes).split()
    assert main(["cutout", "--mast", "--ra", ra, "--dec", dec, "--size", "5", "--sectors", "2",
                 "--out", str(tmp_path)]) == 0
    (printed,) = capsys.readouterr().out.split()
    (single,) = cubecut.cutout(cubes / "tess-s0002-1-1-cube.fits", f"{ra} {dec}", 5, output_dir=tmp_path / "one")
    assert_same_tpf(printed, single)
    assert main(["sectors", ra, dec]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["product", "sector", "camera", "ccd", "cube"]
    assert [line.split()[:4] for line in lines[1:]] == [["SPOC", "1", "1", "1"], ["SPOC", "2", "1", "1"]]
    assert lines[1].split()[4] == f"s3://{public_mast}/tess/public/mast/tess-s0001-1-1-cube.fits"


def test_footprint_table_is_read_once_per_process(public_mast, cubes):
    position = target(cubes)
    assert len(find_sectors(position, **mast_like(public_mast))) == 2
    boto3.client("s3").delete_object(Bucket=public_mast, Key="tess/public/footprints/tess_ffi_footprint_cache.json")
    assert [c.sector for c in find_sectors(position, sectors={2}, **mast_like(public_mast))] == [2]  # cached


def test_globs_folders_and_prefixes_cut_every_covering_cube(bucket, cubes, tmp_path, capsys):
    position = target(cubes)
    ra, dec = position.split()
    expected = [cubecut.cutout(cubes / f"tess-s000{s}-1-1-cube.fits", position, 4, output_dir=tmp_path / f"o{s}")[0]
                for s in (1, 2)]
    s3 = boto3.client("s3")
    for path in cubes.iterdir():
        s3.put_object(Bucket=bucket, Key=f"cubes/{path.name}", Body=path.read_bytes())
    for i, cube_args in enumerate([[str(cubes / "*-cube.fits")], [str(cubes)], [f"s3://{bucket}/cubes/"],
                                   [f"s3://{bucket}/cubes/tess-*-cube.fits"],
                                   [str(cubes / "tess-s0001-1-1-cube.fits"), str(cubes / "tess-s0002-1-1-cube.fits")]]):
        out = tmp_path / f"run{i}"
        assert main(["cutout", *cube_args, "--ra", ra, "--dec", dec, "--size", "4", "--out", str(out)]) == 0, cube_args
        printed = capsys.readouterr().out.split()
        assert len(printed) == 2, cube_args
        for path, single in zip(printed, expected):
            assert_same_tpf(path, single)
    assert main(["sectors", ra, dec, "--cubes", f"s3://{bucket}/cubes/", "--sectors", "1"]) == 0
    assert capsys.readouterr().out.splitlines()[1].split()[:4] == ["SPOC", "1", "1", "1"]
    paths = cubecut.cutout_sectors(position, 4, cubes=f"s3://{bucket}/cubes/", sectors=[2])
    assert len(paths) == 1 and paths[0][0].header["SECTOR"] == 2


def test_positions_off_every_cube_are_one_named_error(cubes, tmp_path, capsys):
    with pytest.raises(NoCubeError, match="no cube covers"):
        cubecut.cutout_sectors("100.0 -10.0", 5, cubes=str(cubes))
    assert main(["cutout", str(cubes), "--ra", "100", "--dec", "-10", "--size", "5"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cubecut: error: no cube covers") and len(err.splitlines()) == 1
    assert main(["cutout", "--ra", "100", "--dec", "-10", "--size", "5"]) == 2
    assert "or --mast" in capsys.readouterr().err


def test_footprint_geometry_and_table_errors():
    square = Footprint(1, 1, 1, ((9.0, -1.0), (11.0, -1.0), (11.0, 1.0), (9.0, 1.0)))
    assert square.touches(10.0, 0.0) and not square.touches(12.0, 0.0)
    assert square.touches(11.2, 0.0, radius_deg=0.25) and not square.touches(11.3, 0.0, radius_deg=0.25)
    wrapped = Footprint(1, 1, 1, ((-1.0, -1.0), (1.0, -1.0), (1.0, 1.0), (-1.0, 1.0)))
    assert wrapped.touches(359.5, 0.5) and wrapped.touches(0.5, -0.5)
    assert not square.touches(190.0, 0.0)  # the antipode is not inside
    with pytest.raises(FootprintTableError, match="obs_id and s_region"):
        parse_footprints(b"[1, 2]")
    with pytest.raises(FootprintTableError, match="not a POLYGON"):
        parse_footprints(json.dumps({"obs_id": ["tess-s0001-1-1"], "s_region": ["CIRCLE 1 2 3"]}).encode())
    assert mast_cube_url(27, 1, 2, "TICA") == "s3://stpubdata/tess/public/mast/tica/tica-s0027-1-2-cube.fits"
    assert mast_cube_url(1, 4, 2) == "s3://stpubdata/tess/public/mast/tess-s0001-4-2-cube.fits"
    assert parse_sectors("1,3-5") == {1, 3, 4, 5}
    with pytest.raises(Exception, match="1,3,5-8"):
        parse_sectors("one")


def test_a_folder_given_to_one_cube_cutout_is_a_named_error(cubes):
    with pytest.raises(ObjectNotFoundError, match="is a folder"):
        cubecut.cutout(cubes, target(cubes), 5)
