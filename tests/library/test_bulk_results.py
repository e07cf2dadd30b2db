"""Bulk results a user can use (issue 26): the catalog's identity in the TPFs, RA off the
sphere is malformed, the shard summary names the shards, and Ctrl-C says what is written
and what is left."""
from __future__ import annotations

import csv
import re
from pathlib import Path

import lightkurve as lk
import pytest
from astropy.io import fits

from cubecut.bulk import job, run_job
from cubecut.bulk.stars import parse_targets
from cubecut.cutout.identity import Identity, set_identity, ticid_of
from cubecut.ingest.run import ingest
from cubecut.synth import make_sector
from cubecut_infra.cli import main
from test_bulk import sky


@pytest.fixture(scope="module")
def cube(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("bulk26")
    ffis = make_sector(folder / "ffis", sector=7, camera=1, ccd=1, frames=3, shape=(24, 30), seed=2)
    return ingest([str(p) for p in ffis], str(folder / "cubes") + "/", workers=1).cube


def catalog(cube: str, path: Path, count: int = 6) -> Path:
    rows = ["ID,RA,Dec,TICID,Tmag"]
    for i in range(count):
        rows.append("star%d,%r,%r,%d,%s" % (i, *sky(cube, 5 + 3 * i, 6 + 2 * i), 1000 + i, 9.5 + i))
    path.write_text("\n".join(rows) + "\n")
    return path


def test_catalog_identity_goes_into_object_ticid_tessmag(cube, tmp_path, capsys):
    cat = catalog(cube, tmp_path / "cat.csv", 2)
    assert main(["bulk", str(cat), "--cubes", cube, "--out", str(tmp_path / "out"), "--size", "5", "--quiet"]) == 0
    capsys.readouterr()
    tpfs = sorted((tmp_path / "out" / "tpfs").rglob("*.fits"))
    assert len(tpfs) == 2
    by_object = {}
    for path in tpfs:
        with fits.open(path, checksum=True) as hdus:  # the rewritten header's CHECKSUM verifies
            header = hdus[0].header
            by_object[header["OBJECT"]] = (header["TICID"], header["TESSMAG"])
    assert by_object == {"star0": (1000, 9.5), "star1": (1001, 10.5)}
    assert {lk.read(str(path)).targetid for path in tpfs} == {1000, 1001}


def test_identity_columns_are_case_insensitive_and_checked(cube):
    text = "ra,dec,Tic,TMAG\n1,1,TIC 42,8.25\n1,1,,\n1,1,x,1\n1,1,5,bright\n361,1,6,1\n"
    parsed = parse_targets(text, (5, 5))
    assert [t.identity for t in parsed.targets] == [Identity("TIC 42", 42, 8.25), Identity()]
    assert [t.id for t in parsed.targets] == ["TIC 42", "row2"]
    assert [p.reason for p in parsed.problems] == ["tic 'x' is not a TIC number", "tmag 'bright' is not a number",
                                                   "ra 361.0 is outside [0, 360] degrees"]
    assert ticid_of("261136679") == 261136679 and ticid_of("WASP-18") is None


def test_set_identity_leaves_a_tpf_without_identity_alone():
    data = bytearray(b"unchanged")
    set_identity(data, Identity())
    assert data == b"unchanged"


def test_shard_summary_names_the_shards(cube, tmp_path, capsys):
    cat = catalog(cube, tmp_path / "cat.csv", 3)
    summary = run_job(str(cat), str(tmp_path / "out"), cubes=[cube], size=(5, 5), shards=True)
    assert summary.as_dict()["tpfs"].endswith("/out/shards/")
    assert main(["bulk", str(cat), "--cubes", cube, "--out", str(tmp_path / "out2"), "--size", "5", "--shards",
                 "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "TPFs under " + str(tmp_path / "out2" / "shards") + "/" in printed
    assert (tmp_path / "out2" / "shards").is_dir() and not (tmp_path / "out2" / "tpfs").exists()


def test_ctrl_c_says_what_is_written_and_left_and_the_rerun_resumes(cube, tmp_path, monkeypatch, capsys):
    """Ctrl-C arrives once the first tile (3 targets) is written: one line with the counts
    of the files on disk; the same command run again writes the rest."""
    cat = catalog(cube, tmp_path / "cat.csv", 7)
    out = tmp_path / "out"
    command = ["bulk", str(cat), "--cubes", cube, "--out", str(out), "--size", "5", "--quiet"]
    monkeypatch.setenv("CUBECUT_BULK_TILE_TARGETS", "3")
    real = job.run_tiles

    def interrupted(tiles, **kwargs):
        real(tiles[:1], **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(job, "run_tiles", interrupted)
    assert main(command) == 130
    lines = capsys.readouterr().err.splitlines()
    assert lines == ["cubecut: interrupted: 3 written, 4 left; run the same command to resume"]
    assert len(list(out.rglob("*.fits"))) == 3
    monkeypatch.setattr(job, "run_tiles", real)
    assert main(command) == 0
    with open(out / "results.csv") as results:
        statuses = sorted(row["status"] for row in csv.DictReader(results))
    assert statuses == ["skipped"] * 3 + ["written"] * 4
    assert re.search(r"7 catalog rows: 3 skipped, 4 written", capsys.readouterr().out)
