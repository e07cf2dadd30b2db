"""README's commands, copy-pasted: each journey runs the README's own ``bash`` blocks, as
written, in bash, in a fresh folder with a fresh HOME and no AWS credentials.

Journeys: the first cutout (synth → ingest → cutout); the local stack started in one
shell and joined from a second one (ingest into it, curl its API); astroquery and
lightkurve pointed at it; a public-bucket cutout with no account. Nothing leaves the
machine: HTTP(S)_PROXY point at a closed port, so a command that needed the internet would
fail here (except MAST's name resolver, which lightkurve always asks: a stand-in answers).
"""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from stack_fixtures import ResolverProxy

README = Path(__file__).resolve().parents[2] / "README.md"
BLOCKS = re.findall(r"```bash\n(.*?)```", README.read_text(), flags=re.S)


def block(containing: str) -> str:
    """The one bash block of README.md that contains ``containing``."""
    (found,) = [b for b in BLOCKS if containing in b]
    return found


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def shell_env(tmp_path) -> dict[str, str]:
    """A user's shell: the venv's commands on PATH, an empty HOME, no AWS anything."""
    home = tmp_path / "home"
    home.mkdir()
    nowhere = f"http://127.0.0.1:{closed_port()}"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AWS_", "CUBECUT_", "XDG_", "HTTP", "http", "NO_PROXY", "no_proxy"))}
    env.update(PATH=f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}", HOME=str(home),
               HTTP_PROXY=nowhere, HTTPS_PROXY=nowhere, http_proxy=nowhere, https_proxy=nowhere,
               NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost", AWS_EC2_METADATA_DISABLED="true",
               MPLBACKEND="Agg")
    return env


def bash(script: str, cwd: Path, env: dict[str, str], timeout: float = 600) -> str:
    done = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", script], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)
    assert done.returncode == 0, f"{script}\n--- stdout\n{done.stdout[-3000:]}\n--- stderr\n{done.stderr[-3000:]}"
    return done.stdout


@pytest.mark.slow
def test_readme_journeys_as_written(tmp_path, shell_env):
    work = tmp_path / "work"
    work.mkdir()

    # 1. The first cutout.
    out = bash(block("cubecut synth ffis/"), work, shell_env)
    tpf_path = out.strip().splitlines()[-1]
    with fits.open(work / tpf_path) as tpf:
        assert tpf[1].data["FLUX"].shape == (50, 11, 11) and np.isfinite(tpf[1].data["FLUX"]).all()

    # 2. The local stack in one shell, joined from a second one.
    first_shell = subprocess.Popen(["bash", "-e", "-c", block("cubecut local up --env-file")], cwd=work,
                                   env=shell_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                   start_new_session=True)
    try:
        second = block("source stack.env")
        out = bash(second, work, shell_env, timeout=300)
        assert (work / "stack.env").exists()
        curl_answer = json.loads(out.strip().splitlines()[-1])
        assert [r["sectorName"] for r in curl_answer["results"]] == ["tess-s0001-1-1"]

        # 3. astroquery and lightkurve, in that second shell (the variables sourced). The
        # internet's MAST name resolver, which lightkurve asks first, is the stack's
        # stand-in behind an HTTP proxy, as in test_tesscut_api.
        join = second.splitlines()[0]
        api_url = re.search(r"CUBECUT_API_URL=(\S+)", (work / "stack.env").read_text()).group(1)
        resolver = ResolverProxy(api_url)
        try:
            with_resolver = dict(shell_env, HTTP_PROXY=resolver.url, http_proxy=resolver.url)
            out = bash(f"{join}\n{block('astroquery.cfg')}", work, with_resolver, timeout=300)
        finally:
            resolver.stop()
        assert "tess-s0001-1-1" in out
        assert out.strip().splitlines()[-1] == "(50, 5, 5)"  # lightkurve: frames, rows, columns
        assert resolver.forwarded  # lightkurve did ask the (stand-in) resolver
    finally:
        os.killpg(first_shell.pid, signal.SIGINT)  # Ctrl-C in the first shell
        try:
            first_shell.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(first_shell.pid, signal.SIGKILL)
            raise
    banner = first_shell.stdout.read()
    assert first_shell.returncode == 0, first_shell.stderr.read()[-3000:]
    assert "other shells: source stack.env" in banner
    assert not (work / "stack.env").exists()  # a stopped stack leaves no stale endpoints behind


@pytest.mark.slow
def test_readme_public_bucket_command_as_written(tmp_path, shell_env, s3_endpoint):
    """README's MAST command, as written, against a local bucket of that name and key holding
    a synthetic cube of sector 38, camera 2, CCD 2 (real WCS; the README's position lies on
    it), that anyone may read, without a sidecar, from a shell with no AWS credentials."""
    import boto3

    from cubecut.ingest.run import ingest
    from cubecut.synth import make_sector

    files = make_sector(tmp_path / "ffis", sector=38, camera=2, ccd=2, frames=3, shape=(128, 128), seed=1)
    cube = tmp_path / "tess-s0038-2-2-cube.fits"
    ingest([str(p) for p in files], str(cube))
    s3 = boto3.client("s3")
    if "stpubdata" not in [b["Name"] for b in s3.list_buckets()["Buckets"]]:
        s3.create_bucket(Bucket="stpubdata")
    s3.put_object(Bucket="stpubdata", Key="tess/public/mast/tess-s0038-2-2-cube.fits", Body=cube.read_bytes(),
                  ACL="public-read")
    work = tmp_path / "work"
    work.mkdir()
    out = bash(block("s3://stpubdata/"), work, dict(shell_env, AWS_ENDPOINT_URL=s3_endpoint))
    (path,) = out.split()
    import astropy.units as u

    import cubecut

    ra, dec = (float(v) for v in re.search(r"--ra (\S+) --dec (\S+)", block("s3://stpubdata/")).groups())
    (expected,) = cubecut.cutout(cube, f"{ra} {dec}", 2 * u.arcmin)
    with fits.open(work / path) as tpf:
        assert tpf[0].header["SECTOR"] == 38
        np.testing.assert_array_equal(tpf[1].data["FLUX"], expected[1].data["FLUX"])
