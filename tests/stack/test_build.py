"""What ``sam build`` made, as it would be deployed: `python3 dev.py build` (which `python3 dev.py
test` runs first) builds template.yaml into ``.aws-sam/build`` for the template's architecture,
and the layer's twin for this machine into ``.aws-sam/twin`` with the same Makefile and pins.

The deployed artifact is inspected without running it (ELF headers, glibc symbol versions,
sizes, package versions); the twin is served through the local stack with the built handler
modules, so one ingest and one cutout run on exactly the files that deploy.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from astropy.io import fits
from packaging.utils import canonicalize_name

import cubecut
from cubecut_infra.local.template import _Loader

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / ".aws-sam" / "build"
TWIN_LAYER = ROOT / ".aws-sam" / "twin" / "CubecutLayer" / "python"
#: ELF ``e_machine`` of each Lambda architecture.
ELF_MACHINE = {"arm64": 183, "x86_64": 62}
#: The newest glibc each Python runtime's OS has: python3.12-3.14 run on Amazon Linux 2023.
RUNTIME_GLIBC = {"python3.12": (2, 34), "python3.13": (2, 34), "python3.14": (2, 34)}
#: Lambda's limit on a function and all its layers, unzipped.
UNZIPPED_LIMIT = 262_144_000
#: What the Lambda Python runtime already has (the AWS SDK and its dependencies).
PROVIDED_BY_RUNTIME = {"boto3", "botocore", "s3transfer", "jmespath", "python-dateutil", "six", "urllib3"}


@pytest.fixture(scope="module")
def built() -> dict[str, Any]:
    """The built template (as sam build rewrote it, with CodeUri/ContentUri into .aws-sam/build)."""
    if not (BUILD / "template.yaml").exists() or not TWIN_LAYER.is_dir():
        pytest.fail("no build in .aws-sam: run `python3 dev.py build` (`python3 dev.py test` does)")
    return yaml.load((BUILD / "template.yaml").read_text(), Loader=_Loader)


def _resources(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in template["Resources"].items() if r["Type"] == kind}


def _layer_dir(template: dict[str, Any]) -> Path:
    (layer,) = _resources(template, "AWS::Serverless::LayerVersion").values()
    return BUILD / layer["Properties"]["ContentUri"]


def _makefile_setting(name: str) -> str:
    return re.search(rf"^{name} \?= (\S+)$", (ROOT / "layers" / "Makefile").read_text(), re.M).group(1)


def _elf_files(tree: Path) -> list[tuple[Path, bytes]]:
    found = []
    for path in tree.rglob("*"):
        if path.is_file() and not path.is_symlink():
            with path.open("rb") as handle:
                if handle.read(4) == b"\x7fELF":
                    found.append((path, path.read_bytes()))
    return found


def _glibc_needed(data: bytes) -> set[tuple[int, int]]:
    """The ``GLIBC_x.y`` symbol versions an ELF file names (its version needs; a library
    that names a version it does not need only makes this stricter)."""
    return {(int(a), int(b)) for a, b in re.findall(rb"GLIBC_(\d+)\.(\d+)", data)}


def _distributions(site: Path) -> dict[str, str]:
    versions = {}
    for info in site.glob("*.dist-info"):
        metadata = (info / "METADATA").read_text(errors="replace")
        name = re.search(r"^Name: (.+)$", metadata, re.M).group(1).strip()
        versions[canonicalize_name(name)] = re.search(r"^Version: (.+)$", metadata, re.M).group(1).strip()
    return versions


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if "==" in line:
            name, version = line.split("==")
            pins[canonicalize_name(name)] = version
    return pins


def _tree_bytes(tree: Path) -> int:
    return sum(p.stat().st_size for p in tree.rglob("*") if p.is_file() and not p.is_symlink())


def test_the_layer_is_built_for_the_template_runtime_and_architecture(built: dict[str, Any]) -> None:
    runtime = built["Globals"]["Function"]["Runtime"]
    (architecture,) = built["Globals"]["Function"]["Architectures"]
    (layer,) = _resources(built, "AWS::Serverless::LayerVersion").values()
    assert layer["Properties"]["CompatibleRuntimes"] == [runtime]
    assert layer["Properties"]["CompatibleArchitectures"] == [architecture]
    assert f"python{_makefile_setting('PYTHON_VERSION')}" == runtime
    assert _makefile_setting("ARCH") == {"arm64": "aarch64", "x86_64": "x86_64"}[architecture]
    assert (2, int(_makefile_setting("GLIBC_MINOR"))) == RUNTIME_GLIBC[runtime]


def test_every_compiled_library_is_for_the_architecture_and_the_runtime_glibc(built: dict[str, Any]) -> None:
    runtime = built["Globals"]["Function"]["Runtime"]
    (architecture,) = built["Globals"]["Function"]["Architectures"]
    elves = _elf_files(_layer_dir(built))
    assert len(elves) > 20, "numpy, astropy, pydantic-core, pillow and obstore ship compiled code"
    wrong = [str(p) for p, data in elves if int.from_bytes(data[18:20], "little") != ELF_MACHINE[architecture]]
    assert wrong == []
    needed = {p.name: max(_glibc_needed(data), default=(0, 0)) for p, data in elves}
    newest = max(needed.values())
    print(f"\n[build] {len(elves)} ELF files, all {architecture}; newest glibc symbol needed: "
          f"GLIBC_{newest[0]}.{newest[1]} (by {', '.join(sorted(n for n, v in needed.items() if v == newest)[:3])})")
    assert newest <= RUNTIME_GLIBC[runtime]


def test_each_function_with_its_layer_fits_lambda_unzipped(built: dict[str, Any]) -> None:
    layer = _tree_bytes(_layer_dir(built))
    functions = _resources(built, "AWS::Serverless::Function")
    assert functions
    for name, function in functions.items():
        total = layer + _tree_bytes(BUILD / function["Properties"]["CodeUri"])
        assert total <= UNZIPPED_LIMIT, f"{name}: {total / 1e6:.1f} MB"
    print(f"\n[build] layer {layer / 1e6:.1f} MB unzipped (limit with a function: {UNZIPPED_LIMIT / 1e6:.0f} MB)")


def test_the_layer_holds_exactly_the_tested_pins(built: dict[str, Any]) -> None:
    shipped = _distributions(_layer_dir(built) / "python")
    pins = _pins(ROOT / "constraints.txt")
    assert {name: pins.get(name) for name in shipped} == shipped
    for required in ("numpy", "astropy", "aws-lambda-powertools", "pydantic", "pillow", "obstore", "pyyaml"):
        assert required in shipped, required


def test_runtime_packages_ship_only_because_boto3_is_pinned_on_purpose(built: dict[str, Any]) -> None:
    """The runtime's SDK is shadowed by the layer's only as a whole, pinned on purpose
    (layers/requirements.txt says why): never a stray botocore under the runtime's boto3."""
    shipped = set(_distributions(_layer_dir(built) / "python"))
    requirements = {canonicalize_name(line.split("#")[0].strip())
                    for line in (ROOT / "layers" / "requirements.txt").read_text().splitlines()
                    if line.split("#")[0].strip()}
    duplicated = shipped & PROVIDED_BY_RUNTIME
    assert not duplicated or "boto3" in requirements, duplicated
    assert "Pinned on purpose" in (ROOT / "layers" / "requirements.txt").read_text()


def test_the_layer_holds_this_library_with_its_version(built: dict[str, Any]) -> None:
    site = _layer_dir(built) / "python"
    for package in ("cubecut", "cubecut_app"):
        assert (site / package / "__init__.py").is_file(), package
    version = re.search(r'__version__ = "(.+)"', (site / "cubecut" / "_version.py").read_text()).group(1)
    assert version == cubecut.__version__
    assert not list(site.rglob("__pycache__"))


SMOKE = """
import json, sys
from pathlib import Path
import cubecut, numpy, pydantic_core
from cubecut_infra.local.demo import run_demo

layer, code, work = (Path(p) for p in sys.argv[1:4])
code_of = {name: Path(module.__file__) for name, module in
           (("cubecut", cubecut), ("numpy", numpy), ("pydantic_core", pydantic_core))}
status = run_demo(workdir=str(work), frames=12, shape=(128, 128), size=9)
code_of.update({name: Path(sys.modules[name].__file__) for name in ("api", "ingest", "on_upload")})
print(json.dumps({"status": status, "from_layer": {n: p.is_relative_to(layer) for n, p in code_of.items()
                                                   if n in ("cubecut", "numpy", "pydantic_core")},
                  "from_build": {n: p.is_relative_to(code) for n, p in code_of.items()
                                 if n in ("api", "ingest", "on_upload")}}))
"""


@pytest.mark.slow
def test_the_built_handlers_and_layer_serve_an_ingest_and_a_cutout(built: dict[str, Any], tmp_path: Path) -> None:
    """The twin layer and the built handler modules, first on the path as in Lambda (/opt/python,
    /var/task), run the demo: S3 event -> ingest state machine -> cutout API -> presigned TPF."""
    code = BUILD / built["Resources"]["ApiFunction"]["Properties"]["CodeUri"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(code), str(TWIN_LAYER)]),
           "CUBECUT_LOCAL_HANDLER_PACKAGE": ""}
    done = subprocess.run([sys.executable, "-c", SMOKE, str(TWIN_LAYER), str(code), str(tmp_path / "demo")],
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    report = json.loads(lines[-1])
    assert report["status"] == 0
    assert all(report["from_layer"].values()) and all(report["from_build"].values()), report
    tpf = Path(next(line for line in lines if line.startswith("TPF: ")).removeprefix("TPF: "))
    with fits.open(tpf) as hdul:
        assert hdul[0].header["PROCVER"] == cubecut.__version__
        assert hdul[1].data["FLUX"].shape == (12, 9, 9)
