"""``cubecut demo`` end to end, small: it must finish and leave a readable TPF and a PNG."""
from __future__ import annotations

import lightkurve as lk
import pytest

from cubecut_infra.local.demo import run_demo

pytestmark = pytest.mark.slow


def test_demo_writes_a_tpf_lightkurve_reads_and_a_png(tmp_path, capsys):
    assert run_demo(workdir=str(tmp_path), frames=16, shape=(96, 112), size=9) == 0
    lines = dict(line.split(": ", 1) for line in capsys.readouterr().out.strip().splitlines())
    tpf = lk.read(lines["TPF"])
    assert tpf.flux.shape == (16, 9, 9)
    assert tpf.to_lightcurve().flux.size == 16
    with open(lines["PNG"], "rb") as png:
        assert png.read(8) == b"\x89PNG\r\n\x1a\n"
