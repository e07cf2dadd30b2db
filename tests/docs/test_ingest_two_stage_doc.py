"""docs/ingest-at-scale.md's two-stage figures are benchmarks/results/ingest-two-stage.json's.

Every row of the section's two tables is rebuilt here from the result file (rounding as
the doc's cells), and the run it cites (start, commit) is the file's stamp: a new run that
changes a figure fails this test until the doc says what the file says.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RESULT = json.loads((ROOT / "benchmarks" / "results" / "ingest-two-stage.json").read_text())
SECTION = re.search(r"^## The two-stage transpose, measured\n(.*?)(?=^## |\Z)",
                    (ROOT / "docs" / "ingest-at-scale.md").read_text(), flags=re.S | re.M).group(1)
MIB = 2**20


def sample_rows() -> list[str]:
    runs = {r["kind"]: r for r in RESULT["sample"]["runs"]}
    labels = {"one-stage": "one-stage block (`write_block`)",
              "stage-1": f"stage 1, one slab of {RESULT['sample']['slab_frames']} FFIs",
              "stage-2": f"stage 2, the block from {runs['stage-2']['get_requests']} slabs",
              "astrocut": "astrocut 1.3.0 `CubeFactory`, the same FFIs cut down to these rows (local files)"}
    rows = []
    for kind, label in labels.items():
        r = runs[kind]
        out = r.get("part_bytes", r.get("slab_bytes", r.get("cube_bytes")))
        gets = f"{r['get_requests']:,}" if "get_requests" in r else "–"
        rows.append(f"| {label} | {out / MIB:,.0f} MiB | {r['cpu_s']:.1f} s | {r['wall_s']:.1f} s | "
                    f"{(r['peak_rss'] - r['base_rss']) / MIB:,.0f} MiB | {gets} |")
    return rows


def model_rows() -> list[str]:
    rows = []
    for cadence, plans in RESULT["model"]["cadences"].items():
        for name, m in plans.items():
            c = m["cost_usd"]
            rows.append(f"| {cadence} | {name.replace('_', '-')} | {m['get_requests'] / 1e6:.3f} M | "
                        f"{m['put_requests']:,} | {m['worker_memory_bytes'] / MIB:,.0f} MiB | "
                        f"{m['lambda_wall_seconds'] / 60:.1f} min | {c['total']:.2f} |")
    return rows


@pytest.mark.parametrize("row", sample_rows() + model_rows())
def test_every_row_is_the_result_files(row):
    assert row + "\n" in SECTION


def test_the_cited_run_is_the_result_files():
    stamp = RESULT["stamp"]
    assert f"run\nof {stamp['started']}, commit {stamp['commit']}" in SECTION
    runs = {r["kind"]: r for r in RESULT["sample"]["runs"]}
    assert runs["astrocut"]["same_pixels_as_block"] and "astrocut's cube holds the same pixels" in SECTION
    assert all(r["server"]["all_parts_identical"] for kind, r in runs.items() if kind != "astrocut")
