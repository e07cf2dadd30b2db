"""Lint (ruff) and type check (mypy) of layers/ and functions/, as configured in pyproject.toml.

Both run from the checkout's root, where their configuration names what they check; a
finding fails the test with the tool's own report.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("command", [["ruff", "check", "--output-format", "concise"], ["mypy"]],
                         ids=["ruff", "mypy"])
def test_tool_passes(command: list[str]) -> None:
    result = subprocess.run([sys.executable, "-m", *command], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"`{' '.join(command)}` found problems:\n{result.stdout}{result.stderr}"
