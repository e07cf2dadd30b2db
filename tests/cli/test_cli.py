"""The ``cubecut`` command line: every command has --help; synth → ingest → cutout works."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from cubecut.synth import star_catalog
from cubecut_infra.cli import build_parser, main

COMMANDS = [["synth"], ["ingest"], ["update"], ["cutout"], ["janitor"], ["local"], ["local", "up"], ["demo"],
            ["moving"], ["moving-sectors"], ["sectors"], ["ffi-cutout"], ["combine"], ["image"], ["quicklook"]]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--help"])
    assert exit_info.value.code == 0
    assert "usage: cubecut" in capsys.readouterr().out


def test_synth_ingest_cutout_round_trip(tmp_path, capsys):
    ffis = tmp_path / "ffis"
    assert main(["synth", str(ffis), "--sector", "2", "--camera", "1", "--ccd", "2", "--frames", "6",
                 "--shape", "48", "64", "-q"]) == 0
    assert len(list(ffis.glob("*ffic.fits"))) == 6
    cube = tmp_path / "cube.fits"
    assert main(["ingest", str(ffis / "*ffic.fits"), "--out", str(cube), "-q"]) == 0
    assert cube.exists() and Path(str(cube) + ".index.json").exists()
    stars = star_catalog(sector=2, camera=1, ccd=2, shape=(48, 64), seed=0)
    star = stars[(stars["col"] > 50) & (stars["row"] > 10) & (stars["row"] < 38)][0]
    capsys.readouterr()
    assert main(["cutout", str(cube), "--ra", str(star["ra"]), "--dec", str(star["dec"]), "--size", "5", "3",
                 "--out", str(tmp_path / "tpfs")]) == 0
    (printed,) = capsys.readouterr().out.split()
    with fits.open(printed) as tpf:
        assert tpf[1].data["FLUX"].shape == (6, 3, 5)
        assert np.isfinite(tpf[1].data["FLUX"]).all()


def test_moving_sectors_names_each_cube_by_its_product(monkeypatch, capsys):
    import cubecut.moving as moving
    from cubecut.moving.path import PathCrossing

    crossings = [PathCrossing("s3://b/tica-s0005-2-3-cube.fits", "TICA", 5, 2, 3, 10, 1.0, 2.0),
                 PathCrossing("s3://b/tess-s0005-2-3-cube.fits", "SPOC", 5, 2, 3, 12, 1.0, 2.5)]
    monkeypatch.setattr(moving, "load_ephemeris", lambda *args, **kwargs: "path")
    monkeypatch.setattr(moving, "path_crossings", lambda path, cubes: crossings if path == "path" else [])
    assert main(["moving-sectors", "s3://b/tica-s0005-2-3-cube.fits", "--ephemeris", "path.ecsv"]) == 0
    names = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert names == ["tica-s0005-2-3", "tess-s0005-2-3"]


def test_errors_are_one_clear_line_and_exit_2(tmp_path, capsys):
    assert main(["ingest", str(tmp_path / "nothing*.fits"), "--out", str(tmp_path / "c.fits"), "-q"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cubecut: error:") and "Traceback" not in err


def test_parser_rejects_bad_arguments():
    with pytest.raises(SystemExit):
        build_parser().parse_args(["synth", "out", "--sector", "1", "--camera", "7", "--ccd", "1", "--frames", "2"])


@pytest.mark.slow
def test_local_up_prints_env_for_other_shells():
    process = subprocess.Popen([sys.executable, "-m", "cubecut_infra.cli", "local", "up", "--print-env"],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                               env=dict(os.environ, PYTHONUNBUFFERED="1"))
    try:
        lines = [process.stdout.readline().strip() for _ in range(3)]
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
    assert lines[0].startswith("export AWS_ENDPOINT_URL=http://127.0.0.1:")
    assert lines[1].startswith("export CUBECUT_API_URL=http://127.0.0.1:")
    assert lines[2] == "export CUBECUT_CUBES=s3://cubecut-local/cubes/"


def _limit_file_size() -> None:
    """In the child: files may not grow past 300 kB (a full disk, as the writer sees it:
    writes fail with an OSError instead of killing the process)."""
    import resource

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (300_000, 300_000))


def test_a_full_disk_and_an_unwritable_output_are_one_line_errors(tmp_path):
    """issue 25, finding 5: no traceback, exit status 2, the error named."""
    from cubecut.synth import make_sector

    make_sector(tmp_path / "ffis", sector=3, camera=1, ccd=1, frames=4, shape=(128, 128), seed=1)
    command = [sys.executable, "-m", "cubecut_infra.cli", "ingest", str(tmp_path / "ffis"), "--workers", "1", "--out"]
    full = subprocess.run([*command, str(tmp_path / "cubes") + "/"], capture_output=True, text=True, timeout=300,
                          preexec_fn=_limit_file_size)
    (tmp_path / "a-file").write_text("not a folder")
    unwritable = subprocess.run([*command, str(tmp_path / "a-file" / "cube.fits")], capture_output=True, text=True,
                                timeout=300)
    for result in (full, unwritable):
        lines = [line for line in result.stderr.splitlines() if line.startswith("cubecut: error:")]
        assert result.returncode == 2 and len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert "File too large" in full.stderr or "No space left" in full.stderr, full.stderr
