"""docs/ingest-at-scale.md's figures outside the two-stage tables (test_ingest_two_stage_doc.py).

The full-size measurements and their extrapolation are rebuilt from
benchmarks/results/ingest-scale.json, the two-stage conclusions from
ingest-two-stage.json, and the model's inputs from ``cubecut.ingest.sizing``'s constants
(the doc's rounding): a new run or a changed constant fails this test until the doc says
what the file or the code says. The plans' limits (parts, GETs, S3's and Lambda's rules)
are asserted by tests/library/test_ingest_scale.py.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from cubecut.ingest import sizing

ROOT = Path(__file__).resolve().parents[2]
DOC = " ".join((ROOT / "docs" / "ingest-at-scale.md").read_text().split())
RESULTS = ROOT / "benchmarks" / "results"
SCALE = json.loads((RESULTS / "ingest-scale.json").read_text())
TWO = json.loads((RESULTS / "ingest-two-stage.json").read_text())
MIB = 2**20
#: FFI columns and rows, and the bytes of one pixel of each plane (float32).
COLUMNS, ROWS, PIXEL_BYTES = 2136, 2078, 4


def row_figures() -> list[str]:
    """The first paragraph: a cube row's and a cube's size at each cadence."""
    frames = [c["frames"] for c in SCALE["cadences"]]
    rows = [COLUMNS * n * 2 * PIXEL_BYTES for n in frames]
    assert all(c["plan_only"]["row_bytes"] == r for c, r in zip(SCALE["cadences"], rows, strict=True))
    return [f"{rows[0] / 1e6:.0f} MB at {frames[0]:,} frames", f"{rows[1] / 1e6:.0f} MB at {frames[1]:,}",
            f"{rows[2] / 1e6:.0f} MB at {frames[2]:,}",
            "the cube of 2078 rows is ~" + " / ".join(f"{ROWS * r / 1e9:.0f}" for r in rows) + " GB"]


def model_figures() -> list[str]:
    """The model's inputs (sizing's constants) and how they compare with the measurements."""
    blocks = [b for c in SCALE["cadences"] for b in c["blocks"]]
    over_part = [(b["peak_rss"] - b["part_bytes"]) / MIB for b in blocks]
    slowest = min(b["part_bytes"] / b["cpu_s"] for b in blocks)
    assert slowest >= sizing.BLOCK_CPU_BYTES_S, "the model's CPU rate is no faster than any block measured"
    return [
        f"**Worker memory** = {sizing.RUNTIME_BYTES // MIB} MiB runtime + the part + 2 x reads in flight "
        f"({SCALE['cadences'][-1]['plan_only']['reads_in_flight']}) x one read (measured below: the part + "
        f"{min(over_part):.0f}-{max(over_part):.0f} MiB)",
        f"waves of 128 GETs x {sizing.FIRST_BYTE_S * 1e3:.0f} ms first byte",
        f"at {sizing.NETWORK_BYTES_S / 1e6:.0f} MB/s per worker + CPU at {sizing.BLOCK_CPU_BYTES_S / 1e6:.1f} MB of part "
        f"per second (the slowest block measured below did {slowest / 1e6:.1f} MB/s)",
        f"more than {sizing.S3_GETS_PER_PREFIX_S:,} GET/s",
        f"**Plan time** = {sizing.PLAN_CPU_S_PER_FFI * 1e3:.0f} ms CPU per FFI "
        f"({SCALE['cadences'][-1]['plan']['cpu_s_per_ffi'] * 1e3:.1f} ms measured at 200-s, below) x "
        f"{sizing.PLAN_MEMORY_MB} / the PlanFunction's MB",
        f"first bytes at {sizing.PLAN_THREADS} in flight; **finalize** {sizing.FINALIZE_S:.0f} s",
        f"Lambda ${sizing.LAMBDA_GB_SECOND_USD:.10f} per GB-s (blocks at {sizing.BLOCK_MEMORY_MB} MB",
        f"${sizing.LAMBDA_REQUEST_USD * 1e6:.2f} per million invocations; S3 GETs ${sizing.S3_GET_USD * 1e3:.4f} per 1,000",
        f"PUTs/UploadParts ${sizing.S3_PUT_USD * 1e3:.3f} per 1,000; Step Functions ${sizing.STEP_TRANSITION_USD * 1e3:.3f} "
        f"per 1,000 transitions ({sizing.TRANSITIONS_PER_BLOCK} per block + {sizing.TRANSITIONS_PER_INGEST})",
    ]


def scale_rows() -> list[str]:
    """The two tables of "Measured at full size, without the disk"."""
    measured, extrapolated = [], []
    for c in SCALE["cadences"]:
        plan, lam = c["plan_only"], c["lambda"]
        middle = next(b for b in c["blocks"] if 0 < b["block"] < plan["parts"] - 1)
        measured.append(f"| {c['cadence']}, {c['frames']:,} | {plan['parts']} x {plan['rows_per_part']} | "
                        f"{plan['part_bytes_max'] / MIB:,.0f} MiB | {plan['get_requests'] / 1e6:.2f} M | "
                        f"{lam['s3_get_usd']:.2f} | {lam['peak_rss'] / MIB:,.0f} MiB | {middle['cpu_s']:.1f} s | "
                        f"{c['plan']['cpu_s_per_ffi'] * 1e3:.1f} ms |")
        extrapolated.append(f"| {c['cadence']} | {lam['block_s']:.0f} s | {lam['cube_wall_s'] / 60:.1f} min | "
                            f"{lam['cube_usd']:.2f} ({lam['lambda_usd']:.2f} + {lam['s3_get_usd']:.2f}) | "
                            f"{lam['sector_wall_s'] / 60:.1f} min | {lam['sector_usd']:.2f} |")
    return measured + extrapolated


def scale_figures() -> list[str]:
    """The prose around those tables and the plan step's section."""
    stamp, last = SCALE["stamp"], SCALE["cadences"][-1]
    plan = last["plan"]
    return [
        f"run of {stamp['started'].replace(' UTC', '')}", f"commit {stamp['commit']}, 2 shared cores at load "
        f"{stamp['load_before'][0]:.1f} before, {SCALE['load_after'][0]:.1f} after",
        "makes up " + " / ".join(f"{c['frames']:,}" for c in SCALE["cadences"]) + " full-size SPOC FFIs on request over "
        f"{last['plan_only']['prefixes']} day prefixes",
        f"({sizing.DEPLOYED_CONCURRENCY} workers of {sizing.BLOCK_MEMORY_MB} MB",
        f"(${last['lambda']['s3_get_usd']:.2f} against ${last['lambda']['lambda_usd']:.2f})",
        f"took {plan['cpu_s_per_ffi'] * 1e3:.1f} ms of CPU each in the run above ({plan['requests'] // last['frames']} "
        f"requests per FFI",
        f"{plan['cpu_s'] * sizing.PLAN_MEMORY_MB / 1024:.0f} s of CPU on a 1024 MB function "
        f"({1024 / sizing.PLAN_MEMORY_MB:.2f} vCPU)",
        f"has {sizing.PLAN_MEMORY_MB} MB (one vCPU) and {sizing.PLAN_TIMEOUT_S} s: the plan step is extrapolated to "
        f"{last['lambda']['plan_s']:.0f} s for {last['frames']:,} FFIs",
    ]


def two_stage_figures() -> list[str]:
    """The conclusions of "The two-stage transpose, measured" (ingest-two-stage.json)."""
    sample, rates = TWO["sample"], TWO["model"]["cpu_bytes_per_s"]
    runs = {r["kind"]: r for r in sample["runs"]}
    model = TWO["model"]["cadences"]
    one, two = model["200-s"]["one_stage"], model["200-s"]["two_stage"]

    def minutes(cadence: str) -> str:
        m = model[cadence]
        return f"{m['two_stage']['lambda_wall_seconds'] / 60:.1f} against {m['one_stage']['lambda_wall_seconds'] / 60:.1f} min"

    def moved(plan: dict) -> int:
        return plan["bytes_read"] + plan["bytes_written"]

    stage1 = runs["stage-1"]
    return [
        f"{sample['frames']:,} full-size SPOC FFIs of sector 56",
        f"a worker reads {sample['slab_frames']} FFIs whole",
        f"middle block (rows {sample['rows'][0]}-{sample['rows'][1] - 1})",
        f"at 200-s ${two['cost_usd']['total']:.2f} against ${one['cost_usd']['total']:.2f} a cube: GETs "
        f"${two['cost_usd']['s3_get']:.2f} instead of ${one['cost_usd']['s3_get']:.2f}",
        f"stage 2 places slab rows {rates['stage2'] / rates['sample_block']:.1f}x faster per byte",
        f"{rates['stage2'] / 1e6:.0f} against {rates['sample_block'] / 1e6:.1f} MB/s",
        f"slower at 30-min ({minutes('30-min')}) and 10-min ({minutes('10-min')})",
        f"one {stage1['slab_bytes'] / 1e9:.1f} GB slab",
        f"level at 200-s ({minutes('200-s')})",
        f"({moved(two) / 1e12:.2f} TB read and written for a 200-s cube against {moved(one) / 1e12:.2f} TB)",
        f"a stage-1 worker needs {two['worker_memory_bytes'] / MIB:,.0f} MiB (modelled; "
        f"{(stage1['peak_rss'] - stage1['base_rss']) / MIB:,.0f} MiB over the process's base measured)",
        f"take a 200-s cube from ${one['cost_usd']['total']:.2f} to ~${two['cost_usd']['total']:.2f}",
        f"{one['lambda_wall_seconds'] / 60:.1f} against {SCALE['cadences'][-1]['lambda']['cube_wall_s'] / 60:.1f} min at 200-s",
    ]


@pytest.mark.parametrize("row", scale_rows())
def test_every_table_row_is_the_result_files(row):
    assert row in DOC


@pytest.mark.parametrize("expected", row_figures() + model_figures() + scale_figures() + two_stage_figures())
def test_every_figure_is_the_result_files_or_the_models(expected):
    assert " ".join(expected.split()) in DOC
