"""Docs and code cite only files that are in the repository.

Every path into one of the repository's folders (``tests/...``, ``docs/...``, ``layers/...``,
``functions/...``, ``infra/...``, ``benchmarks/...``) written in a tracked text file (docs,
code, configuration) must name a file or folder that exists (a glob must match one). The
failure lists each missing path with the files that cite it, so a moved or renamed file
shows every reference left behind.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: Folders that hold no sources: environments, caches, build and run outputs (.gitignore).
SKIP = {".git", ".venv", ".mypy_cache", ".ruff_cache", ".hypothesis", ".pytest_cache", "__pycache__",
        ".aws-sam", "node_modules", "build", "cubecut.egg-info", "cubecut-demo"}
#: Outputs that tests and benchmarks write, cited as where to find them (.gitignore).
OUTPUTS = ("tests/artifacts/", "benchmarks/work/")
TEXT = {".py", ".md", ".yaml", ".yml", ".toml", ".txt", ".json", ".js", ".html", ".cfg"}
CITED = re.compile(r"(?<![\w/.-])((?:layers|functions|infra|tests|benchmarks|docs)/[\w./*-]*\w\.[a-z]+)")


def sources() -> list[Path]:
    found = []
    for folder, subfolders, files in os.walk(ROOT):
        here = Path(folder)
        subfolders[:] = [name for name in subfolders if name not in SKIP
                         and not f"{(here / name).relative_to(ROOT)}/".startswith(OUTPUTS)]
        found += [here / name for name in files if Path(name).suffix in TEXT or name in ("Makefile", "run")]
    return found


def test_every_cited_path_exists() -> None:
    missing: dict[str, set[str]] = {}
    for source in sources():
        for cited in CITED.findall(source.read_text(errors="replace")):
            if not cited.startswith(OUTPUTS) and not any(ROOT.glob(cited)):
                missing.setdefault(cited, set()).add(str(source.relative_to(ROOT)))
    assert not missing, "paths cited but not in the repository:\n" + "\n".join(
        f"  {cited}  (cited in {', '.join(sorted(where))})" for cited, where in sorted(missing.items()))


def test_the_pattern_finds_citations() -> None:
    text = "see tests/conftest.py and `docs/api.md`, not astrocut/tests/test_cube_factory.py"
    assert CITED.findall(text) == ["tests/conftest.py", "docs/api.md"]
