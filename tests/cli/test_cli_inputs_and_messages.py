"""Issue 15's rough edges, one test each: what a new user meets around the values.

FFIs without a sector, TICA TPF headers, named errors instead of tracebacks, messages in
the user's terms, CLI sizes and several targets, `cubecut image --prefix`, oversized boxes.
"""
from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import astropy.units as u
import numpy as np
import pytest
from astropy.io import fits

import cubecut
from cubecut.cutout import clear_cache, load_index
from cubecut.errors import InputError, NoSectorWarning
from cubecut.ingest.run import ingest
from cubecut.synth import make_sector
from cubecut_infra.cli import main
from test_cutout import sky
from test_ingest import ASTROCUT_12, assert_same_cube


@pytest.fixture(autouse=True)
def fresh_cache():
    clear_cache()
    yield
    clear_cache()


# --- FFIs without a sector ---------------------------------------------------------------

@pytest.fixture(scope="module")
def sectorless(tmp_path_factory) -> list[Path]:
    """SPOC FFIs renamed so that nothing tells their sector (synthetic FFIs, like real SPOC
    ones, carry it only in the name)."""
    folder = tmp_path_factory.mktemp("sectorless")
    files = make_sector(folder / "orig", sector=4, camera=1, ccd=2, frames=4, shape=(30, 36), seed=5)
    (folder / "custom").mkdir()
    renamed = []
    for i, path in enumerate(sorted(files)):
        target = folder / "custom" / f"reprocessed-{i:03d}-ffic.fits"
        shutil.copy(path, target)
        renamed.append(target)
    return renamed


def test_ffis_without_a_sector_make_the_cube_astrocut_makes(sectorless, tmp_path, capsys):
    from astrocut import CubeFactory

    ours = tmp_path / "ours-cube.fits"
    with pytest.warns(NoSectorWarning, match="no sector"):
        ingest([str(p) for p in sectorless], str(ours))
    header = fits.getheader(ours)
    assert "SECTOR" in header and header["SECTOR"] is None  # undefined value, as astrocut writes it
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = CubeFactory().make_cube([str(p) for p in sectorless], str(tmp_path / "astrocut-cube.fits"),
                                         verbose=False)
    assert_same_cube(ours, Path(theirs))
    index = load_index(ours)
    (tpf,) = cubecut.cutout(ours, sky(index, 18.0, 15.0), 5)
    assert np.isfinite(tpf[1].data["FLUX"]).all()
    with pytest.raises(InputError, match="no sector.*TESScut name"):
        ingest([str(p) for p in sectorless], str(tmp_path / "folder") + "/")
    capsys.readouterr()
    assert main(["ingest", *map(str, sectorless), "--out", str(tmp_path / "cli-cube.fits"), "-q"]) == 0
    err = capsys.readouterr().err
    assert "cubecut: warning: the FFIs carry no sector" in err and "Warning" not in err
    assert main(["ingest", *map(str, sectorless), "--out", str(tmp_path / "s9-cube.fits"), "-q",
                 "--sector", "9"]) == 0
    assert fits.getheader(tmp_path / "s9-cube.fits")["SECTOR"] == 9


def test_updating_a_cube_without_a_sector_keeps_it_undefined(sectorless, tmp_path):
    """An update of a sector-less cube is the cube ingesting all the FFIs makes: SECTOR stays
    undefined (not 0, which is what the index records for "unknown")."""
    from cubecut.ingest.update import update_cube

    whole, grown = tmp_path / "whole-cube.fits", tmp_path / "grown-cube.fits"
    with pytest.warns(NoSectorWarning):
        ingest([str(p) for p in sectorless], str(whole))
        ingest([str(p) for p in sectorless[:2]], str(grown))
    update_cube(str(grown), [str(p) for p in sectorless[2:]])
    assert fits.getheader(grown)["SECTOR"] is None
    assert_same_cube(grown, whole)


# --- TICA TPFs ----------------------------------------------------------------------------

@pytest.mark.skipif(not ASTROCUT_12.is_dir(), reason="astrocut 1.2.0 is installed by dev.py into .venv/astrocut-1.2")
def test_tica_tpf_primary_header_and_cadences_are_astrocut_1_2s(tmp_path):
    import lightkurve

    files = make_sector(tmp_path / "tica", sector=61, camera=3, ccd=2, frames=6, shape=(30, 34), product="tica",
                        seed=2)
    cube = tmp_path / "tica-s0061-3-2-cube.fits"
    ingest([str(p) for p in files], str(cube))
    coord = sky(load_index(cube), 17.0, 15.0)
    script = textwrap.dedent(f"""
        import glob, warnings
        warnings.simplefilter("ignore")
        from astrocut import TicaCubeFactory, CutoutFactory
        TicaCubeFactory().make_cube(sorted(glob.glob({str(tmp_path / 'tica' / '*.fits')!r})),
                                    {str(tmp_path / 'theirs.fits')!r}, sector=61, verbose=False)
        print(CutoutFactory().cube_cut({str(tmp_path / 'theirs.fits')!r}, "{coord.ra.deg} {coord.dec.deg}", 5,
                                       product="TICA", output_path={str(tmp_path)!r}))
    """)
    run = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=str(ASTROCUT_12)))
    (path,) = cubecut.cutout(cube, coord, 5, output_dir=tmp_path / "ours")
    with fits.open(run.stdout.split()[-1]) as theirs, fits.open(path) as ours:
        skip = {"CHECKSUM", "DATASUM", "CREATOR", "PROCVER"}
        mine = {(c.keyword, c.value, c.comment) for c in ours[0].header.cards if c.keyword not in skip}
        astrocut = {(c.keyword, c.value, c.comment) for c in theirs[0].header.cards if c.keyword not in skip}
        assert mine == astrocut
        header = ours[0].header
        assert (header["CAMERA"], header["CCD"]) == (3, 2)
        assert header["TELAPSE"] == pytest.approx(header["TSTOP"] - header["TSTART"]) and header["TELAPSE"] > 0
        assert header["DATE-OBS"].startswith("20")
        cadences = ours[1].data["CADENCENO"]
        np.testing.assert_array_equal(cadences, theirs[1].data["CADENCENO"])
        assert (np.diff(cadences) == 1).all()
    tpf = lightkurve.read(path)
    assert (tpf.camera, tpf.ccd, tpf.sector) == (3, 2, 61)


# --- the CLI: named errors, messages in the user's terms, sizes, several targets ---------

@pytest.fixture(scope="module")
def cube(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("cli")
    files = make_sector(folder / "ffis", sector=1, camera=1, ccd=1, frames=4, shape=(128, 128), seed=1)
    path = folder / "tess-s0001-1-1-cube.fits"
    ingest([str(p) for p in files], str(path))
    return path


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exit_info:  # argparse's own usage errors
        code = exit_info.code
    out, err = capsys.readouterr()
    return code, out, err


def centre(cube: Path) -> tuple[float, float]:
    coord = sky(load_index(cube), 64.0, 64.0)
    return float(coord.ra.deg), float(coord.dec.deg)


@pytest.mark.parametrize("argv, message", [
    (["--ra", "10", "--dec", "100"], "dec must be within [-90, 90] degrees, got 100"),
    (["--ra", "400", "--dec", "-47"], "ra must be within [0, 360] degrees, got 400"),
    (["--ra", "inf", "--dec", "-47"], "coordinates must be finite"),
    (["--ra", "nan", "--dec", "-47"], "coordinates must be finite"),
    (["--target", "20:56:12 -97:00:00"], "cannot read '20:56:12 -97:00:00' as a position"),
    (["--ra", "1", "--dec", "2", "--ra", "3"], "--ra and --dec come in pairs"),
    ([], "no position given"),
])
def test_bad_positions_are_one_named_line_without_warnings(cube, tmp_path, capsys, argv, message):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. numpy's RuntimeWarning for inf
        code, out, err = cli(capsys, "cutout", cube, *argv, "--size", "5", "--out", tmp_path)
    assert code == 2 and out == ""
    assert err.strip().splitlines() == [f"cubecut: error: {err.strip().removeprefix('cubecut: error: ')}"]
    assert message in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_far_target_says_it_is_off_the_footprint_in_degrees(cube, capsys, tmp_path):
    code, _, err = cli(capsys, "cutout", cube, "--ra", "10", "--dec", "10", "--size", "5", "--out", tmp_path)
    assert code == 2
    assert "is not on tess-s0001-1-1-cube.fits: it is off the cube's footprint (" in err
    assert "deg from the centre of its image" in err and "converge" not in err


def test_sizes_in_angles_and_fractional_pixels_name_files_as_astrocut(cube, capsys, tmp_path):
    ra, dec = centre(cube)
    code, out, err = cli(capsys, "cutout", cube, "--ra", ra, "--dec", dec, "--size", "2arcmin", "--out", tmp_path)
    assert code == 0, err
    (path,) = out.split()
    assert path.endswith("_2.0arcmin-x-2.0arcmin_astrocut.fits")
    expected = cubecut.cutout(cube, f"{ra} {dec}", 2 * u.arcmin)[0]
    with fits.open(path) as tpf:
        assert tpf[1].data["FLUX"].shape == expected[1].data["FLUX"].shape == (4, 6, 6)
    code, out, _ = cli(capsys, "cutout", cube, "--ra", ra, "--dec", dec, "--size", "11.5", "7", "--out", tmp_path)
    (path,) = out.split()
    assert path.endswith("_11.5-x-7_astrocut.fits")
    with fits.open(path) as tpf:
        assert tpf[1].data["FLUX"].shape == cubecut.cutout(cube, f"{ra} {dec}", (11.5, 7))[0][1].data["FLUX"].shape
    code, _, err = cli(capsys, "cutout", cube, "--ra", ra, "--dec", dec, "--size", "2kg")
    assert code == 2 and "neither pixels nor an angle" in err


def test_several_targets_by_pairs_target_and_targets_file(cube, capsys, tmp_path):
    ra, dec = centre(cube)
    index = load_index(cube)
    others = [sky(index, 30.0, 40.0), sky(index, 100.0, 90.0)]
    listing = tmp_path / "stars.txt"
    listing.write_text(f"# two stars\n{others[0].ra.deg} {others[0].dec.deg}\n\n"
                       f"{others[1].to_string('hmsdms', sep=':', precision=3)}  # sexagesimal, RA in hours\n")
    code, out, err = cli(capsys, "cutout", cube, "--ra", ra, "--dec", dec, "--ra", others[0].ra.deg, "--dec",
                         others[0].dec.deg, "--target", f"{others[1].ra.deg} {others[1].dec.deg}",
                         "--targets", listing, "--size", "5", "--out", tmp_path / "tpfs")
    assert code == 0, err
    paths = out.split()
    assert len(paths) == 5
    centres = []
    for path in paths:
        with fits.open(path) as tpf:
            centres.append((tpf[0].header["RA_OBJ"], tpf[0].header["DEC_OBJ"]))
    assert centres[0] == pytest.approx((ra, dec))
    assert centres[1] == centres[3] == pytest.approx((others[0].ra.deg, others[0].dec.deg))
    assert centres[2] == pytest.approx((others[1].ra.deg, others[1].dec.deg))
    assert centres[4] == pytest.approx((others[1].ra.deg, others[1].dec.deg), abs=1e-5)


def test_sexagesimal_is_hours_in_python_as_on_the_web_page():
    from cubecut.tesscut.mast import parse_coordinates as web_page_resolver
    from cubecut.cutout import parse_coordinates

    for text in ["20:56:31 -47:28:48", "20h56m31s -47d28m48s", "20:56:31.2, -47:28:48", "314.13 -47.48",
                 "314.13, -47.48", "0 90", "360 -90"]:
        (ours,) = parse_coordinates(text)
        theirs = web_page_resolver(text) or web_page_resolver(text.replace(",", " "))
        assert ours.separation(theirs).arcsec < 1e-6, text
    (coord,) = parse_coordinates("20:56:31 -47:28:48")
    assert coord.ra.deg == pytest.approx(314.129, abs=1e-3)


def test_oversized_cutout_warns_with_the_cost(cube, capsys, tmp_path):
    ra, dec = centre(cube)
    code, out, err = cli(capsys, "cutout", cube, "--ra", ra, "--dec", dec, "--size", "1000", "--out", tmp_path)
    assert code == 0
    (line,) = err.strip().splitlines()
    assert line.startswith("cubecut: warning: the 1000x1000 cutout is larger than tess-s0001-1-1-cube.fits's "
                           "128x128 image: 98% of its pixels are off the image (NaN)")
    megabytes = float(line.split("about ")[1].split(" MB")[0])
    assert megabytes == pytest.approx(Path(out.strip()).stat().st_size / 1e6, rel=0.05)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cubecut.cutout(cube, f"{ra} {dec}", 128)  # as large as the image: no warning


def test_non_fits_ingest_quicklook_and_combine_errors_are_named(cube, capsys, tmp_path):
    junk = tmp_path / "notes-ffic.fits"
    junk.write_text("these are my notes, not an image\n" * 100)
    code, _, err = cli(capsys, "ingest", junk, "--out", tmp_path / "c.fits", "-q")
    assert code == 2 and "notes-ffic.fits: not a FITS file" in err and "END card" not in err
    empty = tmp_path / "empty-ffic.fits"
    empty.write_bytes(b"")
    code, _, err = cli(capsys, "ingest", empty, "--out", tmp_path / "c.fits", "-q")
    assert code == 2 and "empty file, not a FITS file" in err
    code, _, err = cli(capsys, "quicklook", junk)
    assert code == 2 and "not a FITS file" in err and "Traceback" not in err
    ffi = sorted((cube.parent / "ffis").glob("*.fits"))[0]
    code, _, err = cli(capsys, "quicklook", ffi)
    assert code == 2 and "is not a target pixel file" in err and "cubecut image" in err
    code, _, err = cli(capsys, "quicklook", tmp_path / "missing.fits")
    assert code == 2 and "no such file" in err
    ra, dec = centre(cube)
    cuts = []
    for i, path in enumerate(sorted((cube.parent / "ffis").glob("*.fits"))[:2]):
        code, out, err = cli(capsys, "ffi-cutout", path, "--ra", ra, "--dec", dec, "--size", "5", "--extension",
                             "all", "--out", tmp_path / f"cut{i}")
        cuts.append(out.strip())
    code, out, err = cli(capsys, "combine", *cuts, "--out", tmp_path / "mean.fits", "--inverse-variance", "2")
    assert code == 0, err
    for bad in ("7", "0", "-1"):
        code, _, err = cli(capsys, "combine", *cuts, "--out", tmp_path / "bad.fits", "--inverse-variance", bad)
        assert code == 2 and f"inverse variance from extension {bad}" in err and "1..2" in err, err
    code, _, err = cli(capsys, "combine", junk, junk, "--out", tmp_path / "bad.fits")
    assert code == 2 and "not a FITS file" in err


def test_image_prefix_names_single_images(cube, capsys, tmp_path):
    ra, dec = centre(cube)
    ffis = sorted(str(p) for p in (cube.parent / "ffis").glob("*.fits"))[:2]
    _, first, _ = cli(capsys, "image", *ffis, "--ra", ra, "--dec", dec, "--size", "9", "--out", tmp_path)
    _, second, _ = cli(capsys, "image", *ffis, "--ra", ra, "--dec", dec, "--size", "9", "--out", tmp_path,
                       "--prefix", "run2", "--stretch", "linear")
    assert [Path(p).name.split("_")[0] for p in first.split()] == [Path(f).name.split("_")[0].removesuffix(".fits")
                                                                   for f in ffis]
    assert all(Path(p).name.startswith("run2_") for p in second.split())
    assert len({*first.split(), *second.split()}) == 4 and all(Path(p).exists() for p in first.split())
    three = sorted(str(p) for p in (cube.parent / "ffis").glob("*.fits"))[:3]
    _, colour, _ = cli(capsys, "image", *three, "--ra", ra, "--dec", dec, "--size", "9", "--out", tmp_path,
                       "--colour", "--prefix", "rgb")
    assert Path(colour.strip()).name.startswith("rgb_")


def test_quicklook_title_and_axis_label_do_not_touch(cube, tmp_path):
    from PIL import Image

    from cubecut.images import quicklook_png

    ra, dec = centre(cube)
    (tpf,) = cubecut.cutout(cube, f"{ra} {dec}", 9)
    tpf[0].header["OBJECT"] = "a target with a long name, as pipelines write them"  # the widest titles
    picture = np.asarray(Image.open(io.BytesIO(quicklook_png(tpf, tmp_path / "q.png"))).convert("L"))
    label_columns = picture[:, 362:520]  # where the light curve's y-axis label starts, under the title
    inked = np.nonzero((label_columns < 128).any(axis=1))[0]
    title_rows = inked[inked < 34]
    label_rows = inked[(inked >= 34) & (inked < 56)]
    assert len(title_rows) and len(label_rows)
    assert label_rows.min() - title_rows.max() > 3  # white rows between them
