"""The library is a library: its import graph holds no HTTP app, no powertools, no AWS SDK
outside storage, and nothing in it reads the environment (issue 16).

Every module under layers/cubecut is parsed (not imported), so a lazy import inside a
function counts as much as one at the top.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LIBRARY = ROOT / "layers" / "cubecut"
APP = ROOT / "layers" / "cubecut_app"
#: Top-level packages the library never imports: the app and deployment trees on top of it,
#: powertools, and HTTP frameworks.
FORBIDDEN = {"cubecut_app", "cubecut_functions", "cubecut_infra", "aws_lambda_powertools", "fastapi", "starlette",
             "flask", "werkzeug", "django", "falcon", "bottle", "aiohttp", "tornado", "pydantic"}
AWS_SDK = {"boto3", "botocore", "s3transfer"}


def _modules(root: Path, package: str) -> dict[str, tuple[ast.Module, bool]]:
    """``{module name: (its syntax tree, whether it is a package's __init__)}``."""
    found = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        name = ".".join((package, *parts[:-1])) if parts[-1] == "__init__" else ".".join((package, *parts))
        found[name] = (ast.parse(path.read_text(), filename=str(path)), parts[-1] == "__init__")
    return found


def _imports(name: str, tree: ast.Module, is_package: bool) -> set[str]:
    """Absolute names of everything ``tree`` imports (relative imports resolved)."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")[: len(name.split(".")) - node.level + (1 if is_package else 0)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def _reads_environment(tree: ast.Module) -> list[int]:
    """Lines that touch ``os.environ``/``os.getenv``/``os.putenv`` or import them from os."""
    lines = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "os" \
                and node.attr in ("environ", "environb", "getenv", "getenvb", "putenv", "unsetenv"):
            lines.add(node.lineno)
        elif isinstance(node, ast.ImportFrom) and node.module == "os" \
                and any(a.name in ("environ", "environb", "getenv", "getenvb", "putenv") for a in node.names):
            lines.add(node.lineno)
    return sorted(lines)


LIBRARY_MODULES = _modules(LIBRARY, "cubecut")
#: The only library modules that talk to the AWS SDK and read its environment (AWS_*, CUBECUT_ANON).
STORAGE = {name for name in LIBRARY_MODULES if name == "cubecut.storage" or name.startswith("cubecut.storage.")}
APP_MODULES = _modules(APP, "cubecut_app")


def _top(names: set[str]) -> set[str]:
    return {n.split(".")[0] for n in names}


def test_the_walk_sees_the_library():
    assert {"cubecut.tesscut.service", "cubecut.storage", "cubecut.cutout.engine"} <= set(LIBRARY_MODULES)
    assert "cubecut_app.routes" in APP_MODULES


@pytest.mark.parametrize("module", sorted(LIBRARY_MODULES))
def test_library_module_imports_no_http_app_powertools_or_sdk(module):
    tops = _top(_imports(module, *LIBRARY_MODULES[module]))
    assert not tops & FORBIDDEN, f"{module} imports {sorted(tops & FORBIDDEN)}"
    if module not in STORAGE:
        assert not tops & AWS_SDK, f"{module} imports {sorted(tops & AWS_SDK)}: go through cubecut.storage"


@pytest.mark.parametrize("module", sorted(LIBRARY_MODULES))
def test_library_module_reads_no_environment(module):
    lines = _reads_environment(LIBRARY_MODULES[module][0])
    if module in STORAGE:
        return
    assert not lines, f"{module} reads the environment (lines {lines}): take the value as an argument"


def test_the_app_reads_no_environment_and_uses_no_sdk():
    """The app gets its configuration as AppSettings from the edge, and S3 through the library."""
    for module, (tree, is_package) in APP_MODULES.items():
        assert not _reads_environment(tree), module
        assert not _top(_imports(module, tree, is_package)) & AWS_SDK, module


def test_the_import_walk_resolves_relative_imports():
    tree = ast.parse("from ..storage import get_bytes\nfrom . import protocol\nimport boto3.session")
    assert _imports("cubecut.tesscut.service", tree, False) == {
        "cubecut.storage", "cubecut.storage.get_bytes", "cubecut.tesscut", "cubecut.tesscut.protocol", "boto3.session"}
    assert _reads_environment(ast.parse("import os\nos.environ.get('X')\nfrom os import getenv")) == [2, 3]
