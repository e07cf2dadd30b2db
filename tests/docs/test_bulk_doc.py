"""docs/bulk.md's figures are benchmarks/results/bulk.json's and the code's.

The speed-and-cost figures are recomputed from the bulk benchmark's one current result
(the doc's rounding), with the run they cite (start, commit, load) taken from its stamp; the
caps, tile sizes and batch bounds are the library's constants and template.yaml's: a new
run or a changed constant fails this test until the doc says what the file or code says.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from cubecut.bulk.job import ROWS_PER_MESSAGE
from cubecut.bulk.plan import MARGIN_PIXELS, MAX_PIXEL_FRAMES, MAX_TARGETS, TILE_PIXEL_FRAMES, TILE_TARGETS, Limits
from cubecut.bulk.worker import BATCH_BYTES, BYTES_IN_FLIGHT
from cubecut.cutout.tpf import tpf_filename
from cubecut_infra.local.template import _Loader

ROOT = Path(__file__).resolve().parents[2]
DOC = " ".join((ROOT / "docs" / "bulk.md").read_text().split())
SECTIONS = json.loads((ROOT / "benchmarks" / "results" / "bulk.json").read_text())["sections"]
TEMPLATE = yaml.load((ROOT / "template.yaml").read_text(), Loader=_Loader)


def sci(n: int) -> str:
    """``n`` as the doc writes a round large number: ``5e10``."""
    mantissa, exponent = f"{n:.0e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def met(condition: bool) -> str:
    return "met" if condition else "missed"


def speed_figures() -> list[str]:
    """The 1,000-frame section (``s0001``): the runs, the CPU split, the kernel's share, the model."""
    s = SECTIONS["s0001"]
    stamp = s["stamp"]
    by = {r["label"]: r for r in s["runs"]}
    one, bare, two = by["cubecut bulk, 1 worker"], by["cubecut bulk, 1 worker, TPFs not written"], by["cubecut bulk, 2 workers"]
    two_bare, buffered = by["cubecut bulk, 2 workers, TPFs not written"], by["cubecut bulk, 2 workers, buffered writes"]
    three, local = by["cubecut bulk, 3 workers"], by["cubecut bulk, 2 workers, cube on local disk"]
    full = [r for r in s["runs"] if not r["sample"] and not r["cube_local"]]
    split = s["cpu_split_ms"]
    write = split["write_ms"]

    def per_core(r: dict) -> float:
        return r["tpfs"] / r["wall_s"] / min(r["workers"], stamp["machine"]["cpus"])

    def per_cpu(r: dict) -> float:
        return r["tpfs"] / r["cpu_s"]

    def kernel_ms(run: dict, without: dict) -> float:
        return (run["sys_s"] / run["tpfs"] - without["sys_s"] / without["tpfs"]) * 1e3

    o_direct = [kernel_ms(one, bare), kernel_ms(two, two_bare)]
    paged = [kernel_ms(by["cubecut bulk, 1 worker, buffered writes"], bare), kernel_ms(buffered, two_bare)]

    def cpu_per_tpf(label: str) -> float:
        return by[label]["cpu_s"] / by[label]["tpfs"]

    m, shards = s["model"]["measured"], s["model"]["measured, shards"]
    a = s["model"]["assumptions"]
    return [
        f"the run of {stamp['started']}, commit {stamp['commit']}; load average {stamp['load']['start'][0]:.1f} at the "
        f"start, {stamp['load']['end'][0]:.1f} at the end",
        f"{s['targets']:,} targets of 11x11 on one cube of {s['cube']['nt']:,} frames",
        f"{min(r['servers_cpu_s'] for r in full):.0f} to {max(r['servers_cpu_s'] for r in full):.0f} CPU-seconds of theirs",
        f"All {two['tpfs']:,} targets with 2 worker processes, TPFs written to local disk: {two['wall_s']:.1f} s wall, "
        f"{two['tpfs'] / two['wall_s']:.0f} TPFs a second, **{per_core(two):.0f} TPFs/s per core by wall**",
        f"{per_cpu(two):.0f} TPFs per CPU-second of the workers; without writing them {two_bare['wall_s']:.1f} s wall "
        f"({per_core(two_bare):.0f} per core, {per_cpu(two_bare):.0f} TPFs per CPU-second)",
        f"{local['wall_s']:.1f} s wall, **{per_core(local):.0f} TPFs/s per core by wall** (the issue's target: ≥ 150, "
        f"{met(per_core(local) >= 150)} in this run), {per_cpu(local):.0f} TPFs per CPU-second",
        f"(buffered): {buffered['wall_s']:.1f} s wall, {per_cpu(buffered):.0f} TPFs per CPU-second",
        f"Bytes read {two['bytes_read'] / s['union_bytes']:.3f} x the union of the row spans the boxes need, in "
        f"{two['requests']:,} requests",
        f"Three workers on the 2 cores: {three['wall_s']:.1f} s ({three['bytes_read'] / s['union_bytes']:.3f} x the union)",
        f"a sample of {one['tpfs']} sparse targets): {split['build_ms']:.1f} ms CPU reading and building, plus "
        f"{write['O_DIRECT to local disk']:.1f} ms writing with O_DIRECT, {write['buffered to local disk']:.1f} ms "
        f"buffered, or {write['uploaded to S3 (s3rver, plain HTTP)']:.1f} ms uploading",
        f"(`tpf_bytes`) takes {s['writer_cpu_ms']['11x11']:.2f} ms for 11x11",
        f"each TPF costs {split['gets_per_target']:.1f} range GETs ({one['requests']:,} for {one['tpfs']})",
        f"the servers' CPU ({one['servers_cpu_s']:.1f} s) exceeds the worker's ({one['cpu_s']:.1f} s)",
        f"({two['requests']:,} requests for {two['tpfs']:,})",
        f"Writing a {split['tpf_mb']:.1f} MB TPF costs the kernel {min(o_direct):.2f} to {max(o_direct):.2f} ms with "
        f"O_DIRECT, {min(paged):.2f} to {max(paged):.2f} ms buffered",
        f"cubecut's per-target path {cpu_per_tpf('cubecut per target') / cpu_per_tpf('cubecut bulk, 1 worker'):.1f}x and "
        f"astrocut's loop {cpu_per_tpf('astrocut loop') / cpu_per_tpf('cubecut bulk, 1 worker'):.1f}x the bulk worker's",
        f"({a['targets']:,} targets over {a['cubes']} cubes of {a['frames']:,} frames, MaxConcurrency "
        f"{a['max_concurrency']}, {a['lambda_memory_mb']} MB workers",
        f"scaled to {a['frames']:,} frames: {m['tpf_cpu_s'] * 1e3:.1f} ms): {m['wall_s']:.0f} s and ${m['cost_usd']:.2f}, "
        f"${shards['cost_usd']:.2f} with shards ({shards['s3_puts']:,} S3 PUTs instead of {m['s3_puts']:,})",
        f"bound by its uploads ({m['upload_s']:.1f} s a tile of {a['tile_targets']} targets at "
        f"{a['s3_MBps_per_worker']:.0f} MB/s) rather than its CPU ({a['tile_targets'] * m['tpf_cpu_s']:.1f} s)",
    ]


def cadence_figures() -> list[str]:
    """The 200-s cadence section (``s0056``): its model's sector."""
    s = SECTIONS["s0056"]
    m, shards = s["model"]["measured"], s["model"]["measured, shards"]
    return [f"At 200-s cadence ({s['cube']['nt']:,} frames; `--cadence 200-s`, the run of {s['stamp']['started']}, "
            f"commit {s['stamp']['commit']}) the model gives {m['wall_s']:.0f} s and ${m['cost_usd']:.2f}, "
            f"${shards['cost_usd']:.2f} with shards"]


@pytest.mark.parametrize("expected", speed_figures() + cadence_figures())
def test_every_speed_figure_is_the_result_files(expected):
    assert " ".join(expected.split()) in DOC


def test_the_model_is_the_templates_deployment():
    """The model's MaxConcurrency and worker memory are template.yaml's defaults."""
    a = SECTIONS["s0001"]["model"]["assumptions"]
    assert a["max_concurrency"] == TEMPLATE["Parameters"]["MaxConcurrency"]["Default"]
    assert a["lambda_memory_mb"] == TEMPLATE["Resources"]["BulkBatchFunction"]["Properties"]["MemorySize"]


def test_the_settings_table_is_the_librarys_defaults():
    rows = {f"`{Limits.SETTINGS[name]}`": value for name, value in
            {"max_targets": f"{MAX_TARGETS:,}", "max_pixel_frames": sci(MAX_PIXEL_FRAMES),
             "tile_targets": f"{TILE_TARGETS}", "tile_pixel_frames": sci(TILE_PIXEL_FRAMES)}.items()}
    for setting, value in rows.items():
        assert f"| {setting} | {value} |" in DOC, setting


def test_the_plan_and_work_bounds_are_the_codes():
    assert f"a target whose box (plus {MARGIN_PIXELS:.0f} pixels) touches the image" in DOC
    assert f"tiles of at most {TILE_TARGETS} targets (and {sci(TILE_PIXEL_FRAMES)} pixel-frames" in DOC
    assert f"batches of at most {BATCH_BYTES >> 20} MiB of TPF pixels" in DOC
    assert f"(at most {BYTES_IN_FLIGHT >> 20} MiB of them waiting;" in DOC
    assert f"result rows {ROWS_PER_MESSAGE} at a time" in DOC


def test_the_tpf_name_carries_the_position_to_a_ten_millionth_of_a_degree():
    """'the astrocut name carries RA/Dec to 1e-7 degree'."""
    assert "_1.2345679_-2.0000000_" in tpf_filename("c.fits", 1.23456789, -2.0, 11, 11)
    assert "carries RA/Dec to 1e-7 degree" in DOC


def test_the_default_size_is_the_clis():
    default = re.search(r'"--size", nargs="\+", default=\["(\d+)"\]', (ROOT / "infra" / "cli" / "bulk.py").read_text()).group(1)
    assert f"(`N` or `NXxNY` pixels, columns x rows; default `--size`, {default})" in DOC
