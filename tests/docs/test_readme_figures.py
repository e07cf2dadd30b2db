"""README's speed figures are the result files' figures.

Every row of the tables in README's "Speed" section is rebuilt here from the result file
it cites (``benchmarks/results/*.json``, each the one current result of its benchmark),
and every figure the prose states is recomputed the same way: a new run that changes a
figure fails this test until README says what the file says. Rounding is README's (the
cell's number of decimals); medians are ``sorted(values)[len(values) // 2]``, as
benchmarks/report.py takes them.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"
SPEED = re.search(r"^## Speed\n(.*?)^## ", (ROOT / "README.md").read_text(), flags=re.S | re.M).group(1)


def result(name: str) -> dict:
    return json.loads((RESULTS / f"{name}.json").read_text())


def median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def headline_rows() -> list[str]:
    """The 30x30, 1,000-frame, 30 ms table (results.json's ``cutout`` runs)."""
    runs = {c["tool"]: c for c in result("results")["cutout"]
            if c["latency_ms"] == 30 and c["cube"] == "s0001" and c["size"] == 30}
    cube, astro, tess = runs["cubecut auto"], runs["astrocut auto"], runs["tesscube"]
    rounds = result("results")["headline"]
    repeat = {tool: median([h["cold"]["wall_s"] for h in rounds if h["tool"] == tool])
              for tool in ("cubecut auto", "astrocut auto")}

    def over(run: dict) -> float:
        return run["cold"]["proxy_bytes"] / run["min_bytes"]

    def x(run: dict) -> float:
        return run["cold"]["wall_s"] / cube["cold"]["wall_s"]

    return [
        f"| wall, cold / warm | {cube['cold']['wall_s']:.3f} / {cube['warm']['wall_s']:.3f} s | "
        f"{astro['cold']['wall_s']:.3f} s | {tess['cold']['wall_s']:.3f} / {tess['warm']['wall_s']:.3f} s |",
        f"| ratio (cold) | 1 | {x(astro):.1f}x slower "
        f"({repeat['astrocut auto'] / repeat['cubecut auto']:.1f}x in the interleaved repeat) | {x(tess):.1f}x slower |",
        f"| requests, cold / warm | {cube['cold']['proxy_requests']} / {cube['warm']['proxy_requests']} "
        f"(the index + {cube['warm']['proxy_requests']} rows, then the rows) | {astro['cold']['proxy_requests']} | "
        f"{tess['cold']['proxy_requests']} / {tess['warm']['proxy_requests']} |",
        f"| bytes read / minimum | {over(cube):.3f} | {over(astro):.3f} | {over(tess):.3f} |",
    ]


def other_rows() -> list[str]:
    """The "other cases" table (results.json, bulk.json)."""
    r = result("results")
    multi, three = r["multi"], r["multi"]["three_sectors"]
    ingest = {run["label"]: run for run in r["ingest"]["runs"]}
    ours, theirs = ingest["cubecut local W=2"], ingest["astrocut make_cube max_memory=0.3 GB"]
    bulk = result("bulk")["sections"]["s0001"]
    runs = {run["label"]: run for run in bulk["runs"]}
    two, loop = runs["cubecut bulk, 2 workers"], runs["astrocut loop"]
    cubecut_s, astrocut_s = multi["cubecut"]["cold"]["wall_s"], multi["astrocut"]["cold"]["wall_s"]
    return [
        f"| 100 targets 10x10 on one cube | {cubecut_s:.2f} s | {astrocut_s:.1f} s ({astrocut_s / cubecut_s:.0f}x) "
        "| `results.json` |",
        f"| 3 sectors, 30x30, one request | {three['cubecut']['cold']['wall_s']:.2f} s (concurrent) | "
        f"{three['astrocut']['cold']['wall_s']:.2f} s (sequential) | `results.json` |",
        f"| ingest {r['ingest']['ffis']} full FFIs ({r['ingest']['input_bytes'] / 1e9:.1f} GB), local disk | "
        f"{ours['cube_mb_s']:.0f} MB/s at {ours['peak_rss_mb']:.0f} MB RSS ({ours['workers']} workers) | "
        f"{theirs['cube_mb_s']:.0f} MB/s at {theirs['peak_rss_mb'] / 1e3:.1f} GB | `results.json` |",
        f"| {bulk['targets']:,} targets 11x11 (bulk), {bulk['cube']['nt']:,} frames | {two['wall_s']:.1f} s with "
        f"{two['workers']} workers | {loop['wall_s'] / loop['tpfs'] * bulk['targets']:,.0f} s (its loop, timed on a "
        "sample, scaled) | `bulk.json` |",
        deep_bulk_row(result("bulk")["sections"]["s0056"]),
    ]


def deep_bulk_row(section: dict) -> str:
    """The bulk row at a 200-s sector's depth (bulk.json's 11,700-frame cube)."""
    runs = {run["label"]: run for run in section["runs"]}
    two, one, shards = runs["cubecut bulk, 2 workers"], runs["cubecut bulk, 1 worker"], runs["cubecut bulk, 1 worker, shards"]
    cpus = section["stamp"]["machine"]["cpus"]

    def rate(run: dict) -> float:
        return run["tpfs"] / run["wall_s"]

    return (f"| {section['targets']:,} targets 11x11 (bulk), {section['cube']['nt']:,} frames | {two['wall_s']:.1f} s with "
            f"{two['workers']} workers: {rate(two) / min(two['workers'], cpus):.1f} TPFs/s per core, "
            f"{two['out_bytes'] / 1e9:.2f} GB out ({two['out_bytes'] / two['tpfs'] / 1e6:.1f} MB a TPF); as tar shards, "
            f"1 worker: {rate(shards):.1f} TPFs/s ({rate(one):.1f} as files) | – | `bulk.json` |")


def cadence_rows() -> list[str]:
    """The table of the three cadences (ingest-scale.json)."""
    names = {"30-min": "30 min", "10-min": "10 min", "200-s": "200 s"}
    rows = []
    for c in result("ingest-scale")["cadences"]:
        plan, model = c["plan_only"], c["lambda"]
        peak = model["peak_rss"] / 2**20
        rows.append(
            f"| {names[c['cadence']]}, {c['frames']:,} FFIs, {plan['cube_bytes'] / 1e9:.0f} GB | "
            f"{model['cube_wall_s'] / 60:.1f} min, ${model['cube_usd']:.2f} | "
            f"{plan['get_requests'] / 1e6:.2f} M (${model['s3_get_usd']:.2f}) | "
            + (f"{peak:.0f} MiB |" if peak < 1024 else f"{peak / 1024:.1f} GiB |"))
    return rows


def prose() -> list[str]:
    """Figures the prose states (limit.json, sidecar.json) and when the tables' runs started
    (their stamps)."""
    limit = result("limit")
    sidecar = result("sidecar")
    old, new = sidecar["versions"]["1"], sidecar["versions"]["2"]
    cpu, concurrent = limit["cpu"], limit["headline_concurrent"]
    bound = concurrent["median_s"]["astrocut cold"] / concurrent["floor"]["cold_s"]
    return [
        f"costs {cpu['cubecut']['cpu_ms_median']:.1f} ms of CPU, against\n"
        f"{cpu['reference']['cpu_ms_median']:.1f} ms with astropy's writer and "
        f"{cpu['astrocut']['cpu_ms_median']:.1f} ms for astrocut",
        f"at most ~{bound:.1f}x faster than astrocut",
        f"it is {concurrent['x_vs_astrocut_cold']:.1f}x on a",
        f"warm it is {concurrent['warm_vs_floor']:.2f}x the physical\nfloor",
        f"At {sidecar['frames']:,} frames it is {new['bytes'] / 1e6:.2f} MB and\ncosts "
        f"{new['s3_model_extra_s'] * 1e3:.1f} ms beyond that round trip on S3",
        f"against {old['bytes'] / 1e6:.2f} MB and {old['s3_model_extra_s'] * 1e3:.1f} ms with that table as JSON lists",
        f"The run of\n{result('results')['stamps']['cutout']['started']}",
        f"the run of {result('ingest-scale')['stamp']['started']}",
    ]


@pytest.mark.parametrize("expected", headline_rows() + other_rows() + cadence_rows())
def test_every_table_row_is_its_result_files(expected):
    assert expected + "\n" in SPEED


def test_every_table_row_is_checked():
    """No row of the speed tables escapes the rebuild above (headers and rules aside)."""
    rows = [line for line in SPEED.splitlines() if line.startswith("| ") and not line.startswith("|---")]
    checked = set(headline_rows() + other_rows() + cadence_rows())
    headers = [line for line in rows if line not in checked]
    assert len(headers) == 3, headers  # one header row per table


@pytest.mark.parametrize("expected", prose())
def test_every_figure_in_the_prose_is_its_result_files(expected):
    assert " ".join(expected.split()) in " ".join(SPEED.split())


def test_every_cited_result_file_exists():
    cited = set(re.findall(r"`(?:benchmarks/results/)?([\w-]+\.json)`", SPEED))
    assert cited and all((RESULTS / name).is_file() for name in cited), cited
