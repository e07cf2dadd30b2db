"""The package definition and handler import (cold start) cost (the built layer: test_build.py)."""
from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]


def test_every_python_package_is_listed_in_pyproject():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    roots = {name: ROOT / folder for name, folder in config["package-dir"].items()}
    found = {name + ("." + ".".join(init.parent.relative_to(folder).parts) if init.parent != folder else "")
             for name, folder in roots.items() for init in folder.rglob("__init__.py")}
    assert found == listed


def test_console_scripts_name_callables_of_listed_packages():
    """Every ``[project.scripts]`` entry (``cubecut``) names a callable in a packaged module:
    moving or renaming the CLI without updating pyproject.toml fails here."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages, scripts = set(project["tool"]["setuptools"]["packages"]), project["project"]["scripts"]
    assert "cubecut" in scripts
    for name, target in scripts.items():
        module, _, attribute = target.partition(":")
        assert module in packages or module.rpartition(".")[0] in packages, f"{name}: {module} is not packaged"
        assert callable(getattr(importlib.import_module(module), attribute)), f"{name}: {target}"


#: What the API handler's import must not load: each is paid by the first request that needs
#: it (astropy's coordinates/WCS/time, the cutout engine) or never (matplotlib), and the
#: X-Ray SDK by the first invocation (functions/api.py). Figures: benchmarks/results/imports.md.
NOT_AT_API_IMPORT = ("astropy", "astropy.coordinates", "astropy.wcs", "astropy.io.fits", "astropy.time", "matplotlib",
                     "aws_xray_sdk", "cubecut.cutout.engine")
#: Every module of functions/ that template.yaml names a handler in.
HANDLER_MODULES = tuple(sorted({m for m, _ in re.findall(r"Handler:\s*(\w+)\.(\w+)",
                                                         (ROOT / "template.yaml").read_text())}))
#: What no handler's import loads: the above, the bulk and ingest code that needs astropy,
#: and boto3 (the first client loads it). Each handler pays them at its first invocation
#: (cubecut_app.tracing builds the Tracer then).
NOT_AT_HANDLER_IMPORT = (*NOT_AT_API_IMPORT, "astropy.table", "boto3", "cubecut.bulk.worker", "cubecut.bulk.plan",
                         "cubecut.ingest.transpose", "cubecut.ingest.plan", "cubecut.ingest.finalize")


def _loaded_after(statement: str, modules: tuple[str, ...]) -> list[str]:
    code = f"import json, sys; {statement}; print(json.dumps([m for m in {list(modules)!r} if m in sys.modules]))"
    env = {"PATH": "", "AWS_DEFAULT_REGION": "us-east-1", "PYTHONPATH": os.environ.get("PYTHONPATH", "")}
    output = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, env=env)
    return json.loads(output.stdout.strip().splitlines()[-1])


def test_api_handler_import_loads_no_astropy_matplotlib_or_xray():
    """Tracing enabled or not (Lambda sets LAMBDA_TASK_ROOT): the Tracer is built on first use."""
    assert _loaded_after("import cubecut_functions.api", NOT_AT_API_IMPORT) == []
    assert _loaded_after("import os; os.environ['LAMBDA_TASK_ROOT'] = '/var/task'; import cubecut_functions.api",
                         NOT_AT_API_IMPORT) == []


def test_handler_modules_are_every_function():
    assert HANDLER_MODULES == ("api", "bulk", "ingest", "on_upload")


@pytest.mark.parametrize("module", HANDLER_MODULES)
def test_no_handler_import_loads_astropy_boto3_or_xray(module):
    """Tracing enabled or not: every handler builds its Tracer at its first invocation and
    imports what its work needs inside the handler."""
    for setup in ("", "import os; os.environ['LAMBDA_TASK_ROOT'] = '/var/task'; "):
        assert _loaded_after(f"{setup}import cubecut_functions.{module}", NOT_AT_HANDLER_IMPORT) == []


def test_traced_handlers_build_the_tracer_at_their_first_invocation():
    statement = ("from cubecut_app.tracing import traced, tracer; handler = traced(lambda event, context: event); "
                 "import sys; assert 'aws_xray_sdk' not in sys.modules; assert handler(7, None) == 7; "
                 "assert traced(capture_response=False)(lambda e, c: e)(8, None) == 8; "
                 "assert tracer() is tracer()")
    assert _loaded_after(statement, ("aws_xray_sdk",)) == ["aws_xray_sdk"]


def test_library_import_is_light_and_cutout_is_the_function():
    assert _loaded_after("import cubecut", NOT_AT_API_IMPORT) == []
    assert _loaded_after("import cubecut; assert callable(cubecut.cutout); from cubecut import cutout; "
                         "assert cutout.__module__ == 'cubecut.cutout.engine'", ("cubecut.cutout.engine",)) \
        == ["cubecut.cutout.engine"]


def test_template_handlers_exist():
    template = (ROOT / "template.yaml").read_text()
    for module, function in re.findall(r"Handler:\s*(\w+)\.(\w+)", template):
        source = (ROOT / "functions" / f"{module}.py").read_text()
        assert f"def {function}(" in source, f"{module}.{function} named in template.yaml"


def test_the_local_extra_asks_for_the_moto_the_engine_shim_is_tested_with():
    from cubecut_infra.local.engine_shim import TESTED_MOTO

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    (moto,) = [Requirement(r) for r in extras["local"] if Requirement(r).name == "moto"]
    assert moto.specifier == TESTED_MOTO


def test_extras_pin_nothing_exactly():
    """Exact versions live in constraints.txt (the tested set); the package's own
    requirements stay ranges, so it installs beside other software."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for requirement in project["dependencies"] + [r for rs in project["optional-dependencies"].values() for r in rs]:
        assert "==" not in str(Requirement(requirement).specifier), requirement


def test_version_is_one_fact():
    import cubecut

    assert metadata.version("cubecut") == cubecut.__version__
    assert subprocess.run([sys.executable, "-m", "cubecut_infra.cli", "--version"], capture_output=True, text=True,
                          check=True).stdout.strip() == f"cubecut {cubecut.__version__}"
