"""Issue 15's rough edges, one test each: what a new user meets around the values.

FFIs without a sector, TICA TPF headers, named errors instead of tracebacks, messages in
the user's terms, CLI sizes and several targets, `cubecut image --prefix`, oversized boxes.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

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
