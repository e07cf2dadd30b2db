"""Issue 15's rough edges, one test each: what a new user meets around the values.

FFIs without a sector, TICA TPF headers, named errors instead of tracebacks, messages in
the user's terms, CLI sizes and several targets, `cubecut image --prefix`, oversized boxes.
"""
from __future__ import annotations

import shutil
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
from test_ingest import assert_same_cube


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
