"""``cubecut local up`` as a user runs it in one shell while working in another: stack.env
holds everything the second shell needs (``cubecut bulk --stack`` included), and with
``--data-dir`` the bucket outlives a restart (issue 26)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from cubecut.cutout import ffi_wcs, load_index
from cubecut.ingest.run import ingest
from cubecut.synth import make_sector

pytestmark = pytest.mark.slow

CLI = [sys.executable, "-m", "cubecut_infra.cli"]


def start(folder: Path, data: Path, **popen) -> tuple[subprocess.Popen, dict[str, str]]:
    """``cubecut local up --env-file stack.env --data-dir DATA`` in ``folder``, and the
    environment a second shell has after ``source stack.env``."""
    env_file = folder / "stack.env"
    process = subprocess.Popen([*CLI, "local", "up", "--env-file", str(env_file), "--data-dir", str(data)],
                               cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, **popen)
    deadline = time.monotonic() + 120
    while not (env_file.exists() and env_file.stat().st_size):
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        assert time.monotonic() < deadline, "the stack did not come up"
        time.sleep(0.2)
    exports = dict(line.removeprefix("export ").split("=", 1) for line in env_file.read_text().splitlines())
    return process, {**{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CUBECUT_"))}, **exports}


def stop(process: subprocess.Popen, how: signal.Signals = signal.SIGINT) -> None:
    process.send_signal(how)  # Ctrl-C in the first shell, or `kill`
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        raise


def sectors(env: dict[str, str], ra: float, dec: float) -> list[str]:
    url = f"{env['CUBECUT_API_URL']}/tesscut/api/v0.1/sector?ra={ra}&dec={dec}"
    with urllib.request.urlopen(url, timeout=30) as response:
        return [entry["sectorName"] for entry in json.loads(response.read())["results"]]


def test_stack_env_joins_bulk_and_data_dir_survives_a_restart(tmp_path):
    ffis = make_sector(tmp_path / "ffis", sector=1, camera=1, ccd=1, frames=3, shape=(16, 16))
    local = ingest([str(p) for p in ffis], str(tmp_path / "local") + "/").cube
    world = ffi_wcs(load_index(local)).pixel_to_world(8, 8)
    ra, dec = float(world.ra.deg), float(world.dec.deg)
    (tmp_path / "cat.csv").write_text(f"id,ra,dec\nstar,{ra!r},{dec!r}\n")
    data = tmp_path / "data"

    process, env = start(tmp_path, data)
    try:
        assert env["CUBECUT_BULK_JOBS_STATE_MACHINE_ARN"].startswith("arn:aws:states:")
        subprocess.run([*CLI, "ingest", str(tmp_path / "ffis" / "*ffic.fits"), "--out",
                        env["CUBECUT_CUBES"] + "tess-s0001-1-1-cube.fits", "-q"], env=env, check=True, cwd=tmp_path)
        bulk = subprocess.run([*CLI, "bulk", "cat.csv", "--out", "s3://cubecut-local/results/job1", "--stack",
                               "--quiet"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert bulk.returncode == 0, bulk.stderr
        assert "1 written" in bulk.stdout
        assert sectors(env, ra, dec) == ["tess-s0001-1-1"]
    finally:
        stop(process, signal.SIGTERM)
    assert not (tmp_path / "stack.env").exists()
    assert (data / "cubes" / "tess-s0001-1-1-cube.fits").stat().st_size == Path(local).stat().st_size

    process, env = start(tmp_path, data)  # a new stack: moto's memory is empty, the folder is not
    try:
        assert sectors(env, ra, dec) == ["tess-s0001-1-1"]
        out = subprocess.run([*CLI, "cutout", env["CUBECUT_CUBES"], "--ra", repr(ra), "--dec", repr(dec),
                              "--size", "3", "--out", "tpfs"], env=env, cwd=tmp_path, capture_output=True,
                             text=True, timeout=120)
        assert out.returncode == 0 and "tess-s0001-1-1" in out.stdout, out.stderr
        assert "does not describe" not in out.stderr  # the sidecar was re-bound to the restored cube
    finally:
        stop(process)


def test_ctrl_c_stops_a_stack_started_with_sigint_ignored(tmp_path):
    """A script's `&` job starts with SIGINT ignored, which Python keeps: the stack still
    stops on SIGINT (Ctrl-C, `kill -INT`) and removes its env file."""
    process, _ = start(tmp_path, tmp_path / "data",
                       preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    stop(process, signal.SIGINT)
    assert process.returncode == 0 and not (tmp_path / "stack.env").exists()
