"""astrocut's own ``CubeFactory`` tests (``astrocut/tests/test_cube_factory.py`` as the
installed astrocut ships it), run unchanged against cubecut.

astrocut's test module is imported with ``astrocut.cube_factory.CubeFactory`` replaced by
:class:`CLICubeFactory`, whose ``make_cube``/``update_cube`` run ``cubecut ingest`` /
``cubecut update`` (the CLI's ``main``) and answer as astrocut's do: the cube's path, or
astrocut's exception where astrocut raises one, translated from the CLI's one-line message
(``nothing to add`` -> astrocut's duplicate-file warning and "No new images were found";
a cube that is not there -> "Cube file was not found"). ``test_iteration`` counts astrocut's
own log lines ("Completed block"), which say how astrocut splits its work; cubecut plans its
blocks its own way, so that test is not run.
"""
from __future__ import annotations

import contextlib
import importlib
import io
import sys
import warnings
from pathlib import Path

import py
import pytest
from astrocut import cube_factory
from astrocut.exceptions import DataWarning, InvalidInputError

from cubecut_infra.cli import main


class CLICubeFactory:
    """astrocut's ``CubeFactory`` interface, carried out by the ``cubecut`` command line."""

    def make_cube(self, file_list, cube_file="cube.fits", sector=None, max_memory=50, verbose=True):
        """``cubecut ingest FILES --out CUBE [--sector N]``; returns the cube's path."""
        _cli(["ingest", *map(str, file_list), "--out", str(cube_file), "-q",
              *(["--sector", str(sector)] if sector is not None else [])])
        return str(cube_file)

    def update_cube(self, file_list, cube_file, sector=None, max_memory=50, verbose=True):
        """``cubecut update CUBE FILES``; returns the cube's path."""
        code, out, err = _cli(["update", str(cube_file), *map(str, file_list), "-q"], check=False)
        if code == 0 and out.startswith("nothing to add"):
            warnings.warn(f"Removed duplicate file(s): {out.strip()}", DataWarning)
            raise InvalidInputError("No new images were found in the given file list.")
        if code != 0 and ("no such file" in err or "not found" in err):
            raise InvalidInputError(f"Cube file was not found at {cube_file}")
        if code != 0:
            raise RuntimeError(err)
        return str(cube_file)


def _cli(argv: list[str], *, check: bool = True) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    if check and code != 0:
        raise RuntimeError(err.getvalue())
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def astrocut_tests():
    """astrocut's test module, bound to the stand-in."""
    original = cube_factory.CubeFactory
    cube_factory.CubeFactory = CLICubeFactory
    try:
        sys.modules.pop("astrocut.tests.test_cube_factory", None)
        module = importlib.import_module("astrocut.tests.test_cube_factory")
    finally:
        cube_factory.CubeFactory = original
    assert module.CubeFactory is CLICubeFactory
    yield module
    sys.modules.pop("astrocut.tests.test_cube_factory", None)


def test_make_cube(astrocut_tests, tmp_path: Path):
    astrocut_tests.test_make_cube(py.path.local(tmp_path), 10, 100, tmp_path)


def test_make_and_update_cube(astrocut_tests, tmp_path: Path):
    """Including astrocut's last step: re-adding an FFI that is already in the cube."""
    astrocut_tests.test_make_and_update_cube(py.path.local(tmp_path), 10, 100)


def test_invalid_inputs(astrocut_tests, tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # astrocut's test names a cube relative to the current folder
    astrocut_tests.test_invalid_inputs(py.path.local(tmp_path), 10, 10)
