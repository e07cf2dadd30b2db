#!/usr/bin/env python3
"""Set up and run cubecut from a fresh checkout with nothing but Python 3.11+.

    python3 dev.py demo          # the main job: local serverless stack, synthetic sector, cutout
    python3 dev.py test          # sam build, then the whole test suite (what CI runs)
    python3 dev.py build         # sam build (arm64, as deployed) + the twin for this machine
    python3 dev.py cubecut ARGS  # any cubecut command inside the project's environment
    python3 dev.py bench ARGS    # the benchmark suite (benchmarks/README.md)

The first run creates ``.venv`` next to this file and installs the project with the
pinned versions of ``constraints.txt``; later runs reuse it until pyproject.toml or
constraints.txt change.
"""
from __future__ import annotations

import glob
import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
STAMP = VENV / ".cubecut-installed"


def lambda_python() -> str:
    """The Lambda runtime's Python version (``3.13``), read from template.yaml's ``Runtime``."""
    match = re.search(r"^\s*Runtime:\s*python(3\.\d+)\s*$", (ROOT / "template.yaml").read_text(), re.M)
    if match is None:
        sys.exit("dev.py: template.yaml names no python runtime (Globals.Function.Runtime)")
    return match.group(1)


def interpreter() -> str:
    """The interpreter the environment is made with: the Lambda runtime's version where this
    machine has it (on PATH as ``python3.X``, or under pyenv), so what is tested is what
    runs in Lambda; otherwise this interpreter, with a warning."""
    version = lambda_python()
    if f"{sys.version_info.major}.{sys.version_info.minor}" == version:
        return sys.executable
    candidates = [shutil.which(f"python{version}"), *sorted(glob.glob(os.path.expanduser(
        f"~/.pyenv/versions/{version}.*/bin/python{version}")), reverse=True)]
    for found in filter(None, candidates):
        # A pyenv shim exists for every installed version but fails unless it is selected.
        if subprocess.run([found, "-c", "import venv, ensurepip"], capture_output=True).returncode == 0:
            return found
    print(f"[dev] warning: Python {version} (the Lambda runtime's) is not on this machine; using "
          f"{sys.version.split()[0]}, so the suite does not run on the deployed version", flush=True)
    return sys.executable


def _fingerprint() -> str:
    digest = hashlib.sha256()
    for name in ("pyproject.toml", "constraints.txt"):
        digest.update((ROOT / name).read_bytes())
    digest.update(lambda_python().encode())
    return digest.hexdigest()


def ensure_env() -> None:
    """Create the virtual environment and install the project if it is missing or stale."""
    if sys.version_info < (3, 11):
        sys.exit(f"cubecut needs Python 3.11 or newer; this is {sys.version.split()[0]}")
    wanted = _fingerprint()
    if STAMP.exists() and STAMP.read_text() == wanted:
        return
    python = interpreter()
    version = subprocess.run([python, "-c", "import sys; print(sys.version_info[:2])"], capture_output=True,
                             text=True, check=True).stdout
    if (BIN / "python").exists() and subprocess.run([str(BIN / "python"), "-c", "import sys; print(sys.version_info[:2])"],
                                                   capture_output=True, text=True).stdout != version:
        print(f"[dev] {VENV} was made with another Python; making it anew", flush=True)
        shutil.rmtree(VENV)
    if not (BIN / "python").exists():
        print(f"[dev] creating virtual environment in {VENV} with {python}", flush=True)
        subprocess.run([python, "-m", "venv", str(VENV)], check=True)
    py = str(BIN / "python")
    print("[dev] installing cubecut and its pinned dependencies (first run takes a few minutes)", flush=True)
    pip = [py, "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    subprocess.run([*pip, "-c", str(ROOT / "constraints.txt"), "-e", f"{ROOT}[local,test]"], check=True)
    # astrocut 1.3 removed TicaCubeFactory; the TICA compatibility tests run 1.2.0 from its
    # own folder (in a subprocess) to compare our TICA cubes with its layout.
    subprocess.run([*pip, "--no-deps", "--target", str(VENV / "astrocut-1.2"), "astrocut==1.2.0"], check=True)
    STAMP.write_text(wanted)


SAM_VENV = VENV / "sam"
SAM_STAMP = SAM_VENV / ".installed"
BUILD_DIR = ROOT / ".aws-sam" / "build"
#: The layer built the same way for this machine's architecture: the build smoke test serves it.
TWIN_DIR = ROOT / ".aws-sam" / "twin"


def ensure_sam() -> Path:
    """aws-sam-cli and cfn-lint's serverless rules, pinned, in their own environment
    (aws-sam-cli pins click and boto3 apart from the project's set); returns its bin folder."""
    tools = ROOT / "infra" / "sam"
    wanted = hashlib.sha256(b"".join((tools / name).read_bytes()
                                     for name in ("sam-requirements.txt", "sam-constraints.txt"))).hexdigest()
    sam_bin = SAM_VENV / BIN.name
    if SAM_STAMP.exists() and SAM_STAMP.read_text() == wanted:
        return sam_bin
    print("[dev] installing aws-sam-cli and cfn-lint-serverless (pinned) into .venv/sam", flush=True)
    subprocess.run([str(BIN / "python"), "-m", "venv", "--clear", str(SAM_VENV)], check=True)
    subprocess.run([str(sam_bin / "python"), "-m", "pip", "install", "--disable-pip-version-check", "-q",
                    "-r", str(tools / "sam-requirements.txt"), "-c", str(tools / "sam-constraints.txt")], check=True)
    SAM_STAMP.write_text(wanted)
    return sam_bin


def build(env: dict[str, str]) -> int:
    """``sam build`` of template.yaml into .aws-sam/build (the deployed architecture), its
    lint (``sam validate --lint``, cfn-lint with the serverless rules), and the layer's twin
    for this machine (layers/Makefile with ARCH set) that the build smoke test serves."""
    import platform
    import time

    sam_bin = ensure_sam()
    # No telemetry to AWS from a build or a test run.
    env = dict(env, SAM_CLI_TELEMETRY="0", AWS_DEFAULT_REGION=env.get("AWS_DEFAULT_REGION", "us-east-1"))
    steps = [
        ("sam build", [str(sam_bin / "sam"), "build", "--template-file", "template.yaml", "--build-dir",
                       str(BUILD_DIR)]),
        ("sam validate --lint", [str(sam_bin / "sam"), "validate", "--lint", "--template-file", "template.yaml"]),
        ("cfn-lint + serverless rules", [str(sam_bin / "cfn-lint"), "--append-rules", "cfn_lint_serverless.rules",
                                         "--", "template.yaml"]),
        (f"layer twin for {platform.machine()}", ["make", "--no-print-directory", "-f", "layers/Makefile",
                                                   "build-CubecutLayer", f"ARCH={platform.machine()}",
                                                   f"ARTIFACTS_DIR={TWIN_DIR / 'CubecutLayer'}"]),
    ]
    shutil.rmtree(TWIN_DIR, ignore_errors=True)
    for name, command in steps:
        started = time.monotonic()
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            print(done.stdout[-4000:], done.stderr[-4000:], sep="\n", file=sys.stderr)
            print(f"[dev] {name} failed (exit {done.returncode})", file=sys.stderr, flush=True)
            return done.returncode
        print(f"[dev] {name}: ok in {time.monotonic() - started:.1f} s", flush=True)
    return 0


def ensure_browser() -> None:
    """Headless Chromium for the web-page test (Debian packages); best effort: without it
    that one test is skipped with a message saying so."""
    if shutil.which("chromium") or not shutil.which("apt-get") or os.geteuid() != 0:
        return
    print("[dev] installing chromium + chromium-driver for the browser test (Debian packages)", flush=True)
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    if subprocess.run(["apt-get", "update", "-qq"], env=env, **quiet).returncode == 0:
        subprocess.run(["apt-get", "install", "-y", "-qq", "chromium", "chromium-driver"], env=env, **quiet)


def main(argv: list[str]) -> int:
    if not argv or argv[0] in {"-h", "--help", "help"}:
        print(__doc__)
        return 0
    ensure_env()
    command, rest = argv[0], argv[1:]
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    if command == "build":
        return build(env)
    if command == "test":
        # What is tested is what deploys: the suite inspects and serves the built artifact.
        if build(env) != 0:
            return 1
        ensure_browser()
        # Two workers (CI has two cores); whole files per worker so module fixtures that
        # start a local stack or build a cube run once.
        args = [str(BIN / "python"), "-m", "pytest", "-n", "2", "--dist", "loadfile", *rest]
    elif command == "bench":
        args = [str(BIN / "python"), str(ROOT / "benchmarks" / "run.py"), *rest]
    elif command == "cubecut":
        args = [str(BIN / "cubecut"), *rest]
    else:
        args = [str(BIN / "cubecut"), command, *rest]
    return subprocess.run(args, cwd=ROOT if command == "test" else None, env=env).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
