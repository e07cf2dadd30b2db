"""benchmarks/README.md's figures are the result files' figures.

Every row of its tables is rebuilt here from the result file it cites
(``benchmarks/results/*.json``, each the one current result of its benchmark), and every
figure its prose states is recomputed the same way, with the run it cites (start, commit)
taken from the file's stamp: a new run that changes a figure fails this test until the
README says what the file says. Rounding is the README's; medians are the files' own.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from cubecut.ingest import sizing
from cubecut.storage.s3_config import MAX_POOL_CONNECTIONS

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"
DOC = (ROOT / "benchmarks" / "README.md").read_text()
MIB = 2**20


def result(name: str) -> dict:
    return json.loads((RESULTS / f"{name}.json").read_text())


def span(values: list[float], fmt: str) -> str:
    """``min-max`` of ``values``, each written with ``fmt``."""
    return f"{min(values):{fmt}}–{max(values):{fmt}}"


def met(condition: bool) -> str:
    return "met" if condition else "missed"


def setup_figures() -> list[str]:
    """The S3 server, the data, the noise (results.json, bulk.json, ingest-scale.json)."""
    r = result("results")
    moto = {row["object_mb"]: row["median_ms"] for row in r["scaling"]["rows"] if row["server"] == "moto"}
    s3rver = {row["object_mb"]: row["median_ms"] for row in r["scaling"]["rows"] if row["server"] == "s3rver"}
    s0001 = r["cubes"]["s0001"]
    cube_mb = s0001["nt"] * s0001["nrows"] * s0001["ncols"] * 8 / 1e6
    per_request = r["model"]["measured"]["check_vs_shaped_block"]["s3rver_s_per_request_0ms"]
    stamp = r["stamps"]["cutout"]
    ingest = r["ingest"]
    return [
        f"takes a median {moto[8]:.1f} ms from an 8 MB object and {moto[512]:.1f} ms from a 512 MB one "
        f"on moto, {s3rver[8]:.1f} and {s3rver[512]:.1f} ms on s3rver",
        f"a {cube_mb / 1e3:.1f} GB cube on moto would cost ~{moto[512] / 512 * cube_mb / 1e3:.1f} s per range GET",
        f"{per_request * 1e3:.1f} ms of single-threaded work per request",
        f"caps it at ~{round(1 / per_request, -1):.0f} requests/s",
        f"`--cadence 200-s`: {result('bulk')['sections']['s0056']['cube']['nt']:,} frames",
        f"`sidecar.py` (the index sidecar at {result('sidecar')['frames']:,} frames)",
        "row stride (what a cutout's range reads hop over) is the real one ("
        + " / ".join(f"{c['nt'] * c['ncols'] * 8 / 1e6:.0f} MB" for c in r["cubes"].values()) + " per row)",
        f"Ingest uses **{ingest['ffis']} full-size {ingest['ffi_shape'][0]} x {ingest['ffi_shape'][1]} FFIs** "
        f"({ingest['input_bytes'] / 1e9:.1f} GB; a 30-min sector has {result('ingest-scale')['cadences'][0]['frames']:,})",
        f"`cubes`, `cutout`, `headline` and `multi` sections are the run of {stamp['started']} (commit {stamp['commit']})",
    ]


def test_the_realistic_setting_is_the_runs_and_the_models():
    """'30 ms first byte, 100 MB/s per connection', as results.json ran it and sizing assumes."""
    setting = f"{sizing.FIRST_BYTE_S * 1e3:.0f} ms first byte, {sizing.NETWORK_BYTES_S / 1e6:.0f} MB/s per connection"
    assert f"**{setting}**" in " ".join(DOC.split())
    ran = {c["latency"] for c in result("results")["cutout"] if c["latency_ms"]}
    assert ran == {f"{sizing.FIRST_BYTE_S * 1e3:.0f} ms, {sizing.NETWORK_BYTES_S / 1e6:.0f} MB/s/conn"}, ran


def test_the_versions_are_the_pinned_ones():
    """astrocut 1.3.0, tesscube 1.2.1 and s3rver 3.7.1, as the README's first lines say."""
    pins = {"astrocut": (ROOT / "constraints.txt", "astrocut=="), "tesscube": (ROOT / "benchmarks" / "requirements.txt", "tesscube=="),
            "s3rver": (ROOT / "benchmarks" / "package.json", '"s3rver": "')}
    flat = " ".join(DOC.split())
    for name, (path, prefix) in pins.items():
        version = re.search(re.escape(prefix) + r"([\d.]+\d)", path.read_text()).group(1)
        assert f"{name} {version}" in flat or f"**{name} {version}**" in flat, (name, version)


def test_the_cutout_positions_are_the_runs():
    """'Cutouts are at column 700, ... (headline repeat also at column 1500)'."""
    assert {h["position"] for h in result("results")["headline"]} == {700, 1500}
    assert "Cutouts are at column 700, row nrows/2 (headline repeat also at column 1500)" in " ".join(DOC.split())


def cube_rows() -> list[str]:
    """The table of the two cubes (results.json's ``cubes``)."""
    return [f"| {name} | {c['sector']} | {'30 min' if c['sector'] < 27 else '10 min'} | {c['nt']:,} | "
            f"**{c['nrows']}** x {c['ncols']} | {c['nt'] * c['nrows'] * c['ncols'] * 8 / 1e9:.1f} GB |"
            for name, c in result("results")["cubes"].items()]


def cpu_rows() -> list[str]:
    """The CPU-per-TPF table (limit.json's ``cpu``)."""
    cpu = result("limit")["cpu"]
    labels = {"cubecut": "cubecut (`cutout_files`: template + big-endian table in place + numpy checksums)",
              "reference": "astropy HDUList + `writeto(checksum=True)` (`reference_tpf`, cubecut's writer before)",
              "astrocut": "astrocut 1.3.0 (`cube_cut(memory_only=True)` + `writeto(checksum=True)`)"}
    return [f"| {label} | {'**' if w == 'cubecut' else ''}{cpu[w]['cpu_ms_median']:.1f} ms"
            f"{'**' if w == 'cubecut' else ''} | {cpu[w]['cpu_ms_min']:.1f} ms |" for w, label in labels.items()]


def headline_rows() -> list[str]:
    """The 30x30 at 30 ms table on both servers (limit.json's ``headline``, ``headline_concurrent``)."""
    limit = result("limit")
    slow, fast = limit["headline"]["median_s"], limit["headline_concurrent"]["median_s"]
    floor = limit["headline_concurrent"]["floor"]
    return [
        f"| cubecut cold | {slow['cubecut cold']:.3f} s | **{fast['cubecut cold']:.3f} s** | {floor['cold_s']:.3f} s "
        f"(2 round trips + sidecar + a {floor['row_bytes'] / 1e3:.0f} KB row at 100 MB/s + "
        f"{floor['cpu_floor_s'] * 1e3:.1f} ms CPU) |",
        f"| cubecut warm | {slow['cubecut warm']:.3f} s | **{fast['cubecut warm']:.3f} s** | {floor['warm_s']:.3f} s "
        "(1 round trip + the row + CPU) |",
        f"| the 30 row reads alone, nothing built | {slow['rows only']:.3f} s | {fast['rows only']:.3f} s | |",
        f"| astrocut cold | {slow['astrocut cold']:.3f} s | {fast['astrocut cold']:.3f} s | |",
    ]


def limit_figures() -> list[str]:
    """The prose of the limit.py section (limit.json, results.json)."""
    limit = result("limit")
    cpu, fast, multi = limit["cpu"], limit["headline_concurrent"], limit["multi_concurrent"]
    floor, median = fast["floor"], fast["median_s"]
    cubecut_rounds = [run["cpu_s_median"] * 1e3 for run in cpu["runs"] if run["writer"] == "cubecut"]
    ours = cpu["cubecut"]["cpu_ms_median"]
    headline = next(c for c in result("results")["cutout"] if c["latency_ms"] == 30 and c["cube"] == "s0001"
                    and c["size"] == 30 and c["tool"] == "cubecut auto")
    return [
        f"CPU and route are the run of {cpu['stamp']['started']} (commit {cpu['stamp']['commit']}), "
        f"headline and 100 targets the run of {fast['stamp']['started']} (commit {fast['stamp']['commit']})",
        f"{cpu['reference']['cpu_ms_median'] / ours:.0f}x less CPU than astropy's writer, "
        f"{cpu['astrocut']['cpu_ms_median'] / ours:.0f}x less than astrocut",
        f"(target ≤ 20 ms: {met(ours <= 20)}, medians per round {span(cubecut_rounds, '.1f')} ms)",
        f"(medians of {len(fast['runs']['cubecut cold'])} cold (3 processes x 3) and {len(fast['runs']['cubecut warm'])} "
        "warm cutouts",
        f"up to {MAX_POOL_CONNECTIONS}, the connection pool): {headline['cold']['max_in_flight']} of "
        f"{headline['warm']['proxy_requests']}",
        f"cubecut cold is **{fast['x_vs_astrocut_cold']:.1f}x faster than astrocut** and warm "
        f"{fast['x_vs_astrocut_warm']:.1f}x",
        f"warm is **{fast['warm_vs_floor']:.2f}x the physical floor** (target ≤ 1.5x: {met(fast['warm_vs_floor'] <= 1.5)}",
        f"{fast['warm_vs_server_floor']:.2f}x the floor of this server, whose 30 row reads alone take "
        f"{median['rows only']:.3f} s, not the {floor['warm_s'] - floor['cpu_floor_s']:.3f} s of physics",
        f"even at its physical floor ({floor['cold_s']:.3f} s) it would be "
        f"{median['astrocut cold'] / floor['cold_s']:.1f}x astrocut's {median['astrocut cold']:.3f} s; "
        f"cubecut cold is {median['cubecut cold'] / floor['cold_s']:.2f}x that floor",
        f"cubecut {multi['cubecut_cold_s']:.2f} s cold (runs "
        + ", ".join(f"{s:.2f}" for s in multi["cubecut_cold_runs_s"])
        + f" s), {multi['cubecut_warm_s']:.2f} s warm, {multi['cubecut_requests']} requests (its row reads alone "
        f"{multi['rows_only_s']:.2f} s); astrocut's loop {multi['astrocut_loop_s']:.1f} s "
        f"({multi['astrocut_timed_targets']} timed, scaled), ~{multi['astrocut_requests']:,} requests: "
        f"**{multi['x']:.1f}x** cold, {multi['astrocut_loop_s'] / multi['cubecut_warm_s']:.1f}x warm",
        f"(target ≥ 30x: {met(multi['x'] >= 30)})",
        f"On s3rver, whose serial answers dominate, {limit['multi']['x']:.1f}x cold",
    ]


def phase_rows() -> list[str]:
    """The TESScut route's phases (limit.json's ``route``)."""
    def cell(case: dict, level: str) -> str:
        z = case["zip"][level]
        size = f", {z['zip_bytes'] / 1e6:.1f} MB" if case["engine"] == "cubecut" else ""  # the same for astrocut
        return f"{z['compress_s']:.3f} + {z['deliver_s']:.3f} s{size}"

    names = {"cubecut": "cubecut", "astrocut": "astrocut + same zip"}
    return [f"| {c['size']}x{c['size']} | {names[c['engine']]} | {c['read_s']:.3f} | {c['build_s']:.3f} | "
            f"{cell(c, 'None')} | {cell(c, '1')} | {cell(c, '6')} |" for c in result("limit")["route"]["cases"]]


def phase_figures() -> list[str]:
    """The prose under the phase table (limit.json's ``route``)."""
    cases = result("limit")["route"]["cases"]
    by = {(c["size"], c["engine"]): c for c in cases}

    def store(case: dict, level: str) -> float:
        return case["zip"][level]["compress_s"] + case["zip"][level]["deliver_s"]

    ours = [by[30, "cubecut"], by[100, "cubecut"]]
    six_over_one = [c["zip"]["6"]["compress_s"] / c["zip"]["1"]["compress_s"] for c in cases]
    ratio = [c["zip"][level]["zip_bytes"] / c["tpf_bytes"] for c in cases for level in ("1", "6")]
    more = [c["zip"]["None"]["zip_bytes"] / c["zip"]["1"]["zip_bytes"] for c in ours]
    break_even = [(c["zip"]["None"]["zip_bytes"] - c["zip"]["1"]["zip_bytes"]) / 1e6 / (store(c, "1") - store(c, "None"))
                  for c in ours]
    return [
        "End to end (read + build + stored zip + PUT): cubecut "
        f"{by[30, 'cubecut']['total_s']:.2f} s vs astrocut {by[30, 'astrocut']['total_s']:.2f} s (30x30), "
        f"{by[100, 'cubecut']['total_s']:.2f} s vs {by[100, 'astrocut']['total_s']:.2f} s (100x100)",
        f"deflate 6 costs {span(six_over_one, '.1f')}x level 1's CPU",
        f"{span(ratio, '.2f')} of the size either way",
        f"stored is faster (30x30: {store(ours[0], 'None'):.2f} vs {store(ours[0], '1'):.2f} s; "
        f"100x100: {store(ours[1], 'None'):.1f} vs {store(ours[1], '1'):.1f} s)",
        f"the user then downloads {span(more, '.1f')}x the bytes",
        f"below ~{span([round(x, -1) for x in break_even], '.0f')} MB/s",
    ]


def test_deflate_6_makes_larger_files():
    """'deflate 6 costs ... for a slightly larger file' (limit.json's ``route``)."""
    cases = result("limit")["route"]["cases"]
    assert all(c["zip"]["6"]["zip_bytes"] > c["zip"]["1"]["zip_bytes"] for c in cases)


def streamed_route_rows() -> list[str]:
    """The before/after table of the streamed delivery (route.json)."""
    route = result("route")
    m = route["medians"]

    def peak(key: str) -> str:
        return f"{m[key]['peak_rss_mb'] - m[key]['rss_before_mb']:.0f} MiB"

    return [f"| {n}x{n} | {m[f'{n}_before']['wall_s']:.2f} s, {peak(f'{n}_before')} | {m[f'{n}_after']['wall_s']:.2f} s, "
            f"{peak(f'{n}_after')} | {peak(f'{n}_cut')} | {m[f'{n}_cut']['tpf_bytes'] / 1e6:.1f} MB, "
            f"{m[f'{n}_after']['zip_bytes'] / 1e6:.1f} MB |" for n in (30, 100)]


def streamed_route_figures() -> list[str]:
    """The prose under the streamed-delivery table (route.json)."""
    route = result("route")
    runs, m, stamp = route["runs"], route["medians"], route["stamp"]

    def peaks(key: str) -> list[float]:
        return [r["peak_rss_mb"] - r["rss_before_mb"] for r in runs[key]]

    def peak(key: str) -> float:
        return m[key]["peak_rss_mb"] - m[key]["rss_before_mb"]

    slower = [a["wall_s"] - b["wall_s"] for a, b in zip(runs["100_after"], runs["100_before"], strict=True)]
    return [
        f"`results/route.md`, the run of {stamp['started']} at load average {stamp['load']['start'][0]:.1f} → "
        f"{stamp['load']['end'][0]:.1f}; one `astrocut` request",
        f"{route['rounds']} interleaved rounds; before = {route['before']}",
        f"the 100x100 request's peak fell by {peak('100_before') - peak('100_after'):.0f} MiB",
        f"the three rounds: {span(peaks('100_after'), '.0f')} MiB vs {span(peaks('100_before'), '.0f')} before, "
        f"the cut alone {span(peaks('100_cut'), '.0f')}",
        f"({m['100_before']['cpu_s']:.1f} s CPU for 100x100 before, {m['100_after']['cpu_s']:.1f} s after)",
        f"per round the streamed 100x100 took {span(slower, '.1f')} s longer",
        f"one round took {max(r['wall_s'] for r in runs['30_after']):.1f} s",
    ]


#: How the import rows name what a handler loaded at import (imports.json's ``loaded``).
LOADED = {"cubecut.cutout.engine": "the engine"}


def loaded(modules: list[str]) -> str:
    astropy = [name.removeprefix("astropy.") for name in modules if name.startswith("astropy.")]
    names = {"io.fits": "FITS", "wcs": "WCS"}
    words = [f"astropy ({', '.join(names.get(a, a) for a in astropy)})"] if astropy else []
    return ", ".join(words + [LOADED.get(name, name) for name in modules if not name.startswith("astropy.")])


def import_rows() -> list[str]:
    """The every-handler table (imports.json)."""
    r = result("imports")
    labels = {"cutouts": "`cutouts` (bulk cutouts, zip)", "bulk": "`bulk` (plan, batch, finish)",
              "ingest": "`ingest` (plan, block, finalize, abort)", "on_upload": "`on_upload` (S3 event)",
              "api": "`api` (unchanged but for the shared Tracer helper)"}
    rows = []
    for name, label in labels.items():
        before, after = r[f"{name}_before_import_only"], r[f"{name}_import_only"]
        bold = "" if name == "api" else "**"
        rows.append(f"| {label} | {before['import_s']:.3f} / {before['import_cpu_s']:.3f} s, "
                    f"{before['init_rss_mb']:.0f} MB | {bold}{after['import_s']:.3f}{bold} / {after['import_cpu_s']:.3f} s, "
                    f"{after['init_rss_mb']:.0f} MB | {loaded(before['loaded'])} |")
    return rows


def import_figures() -> list[str]:
    """The prose of the cold-start paragraphs (imports.json)."""
    r = result("imports")
    api, cut = r["api"], r["cutouts"]
    return [
        f"`benchmarks/imports.py --before {r['before']}`, `results/imports.md`, the run of {r['stamp']['started']}; "
        f"medians of {r['runs']} fresh interpreters",
        f"{r['tracer_disabled']['tracer_s']:.2f} s disabled, {r['tracer_enabled']['tracer_s']:.2f} s enabled as in Lambda",
        f"a cold `astrocut` 3x3 request to the API takes {api['first_request_s']:.2f} s wall, a warm repeat "
        f"{api['second_request_s']:.2f} s",
        f"a cold `cutout_handler` cutting one 3x3 TPF takes {cut['first_cutout_s']:.2f} s wall "
        f"({cut['first_cutout_cpu_s']:.2f} s CPU), import included {cut['import_s'] + cut['first_cutout_s']:.2f} s",
        f"The API's import takes {r['api_import_only']['import_s']:.3f} s wall (target ≤ 0.6 s: "
        f"{met(r['api_import_only']['import_s'] <= 0.6)})",
    ]


def ingest_scale_rows() -> list[str]:
    """The table of the three cadences (ingest-scale.json)."""
    rows = []
    for c in result("ingest-scale")["cadences"]:
        plan = c["plan_only"]
        cpu = ", ".join(f"{b['cpu_s']:.1f}" for b in c["blocks"])
        rows.append(f"| {c['cadence']}, {c['frames']:,} | {plan['parts']} x {plan['rows_per_part']} | "
                    f"{plan['part_bytes_max'] / MIB:,.0f} MiB | {plan['get_requests'] / 1e6:.2f} M | "
                    f"{c['lambda']['s3_get_usd']:.2f} | {c['lambda']['peak_rss'] / MIB:,.0f} MiB | {cpu} s | "
                    f"{c['plan']['cpu_s_per_ffi'] * 1e3:.1f} ms |")
    return rows


def ingest_scale_figures() -> list[str]:
    """The prose of the issue-27 section (ingest-scale.json, ingest-two-stage.json, the sizing model)."""
    scale = result("ingest-scale")
    stamp, cadences = scale["stamp"], scale["cadences"]
    plan = cadences[-1]["plan_only"]
    one_row_gets = plan["rows"] * plan["frames"] * plan["planes"]

    return [
        f"full-size ({plan['rows']} x {plan['columns']}, flux + error)",
        f"in {plan['prefixes']} day folders",
        "Per cadence (" + " / ".join(f"{c['frames']:,}" for c in cadences) + " frames)",
        f"the run of {stamp['started']} (commit {stamp['commit']}; load average {stamp['load_before'][0]:.1f} before, "
        f"{scale['load_after'][0]:.1f} after",
        "cube " + " / ".join(f"{c['lambda']['cube_wall_s'] / 60:.1f}" for c in cadences) + " min and "
        + " / ".join(f"${c['lambda']['cube_usd']:.2f}" for c in cadences),
        "sector of 16 cubes " + " / ".join(f"{c['lambda']['sector_wall_s'] / 60:.1f}" for c in cadences) + " min and "
        + " / ".join(f"${c['lambda']['sector_usd']:.2f}" for c in cadences),
        f"(MaxConcurrency {sizing.DEPLOYED_CONCURRENCY}, {sizing.BLOCK_MEMORY_MB} MB workers",
        f"the PlanFunction at {sizing.PLAN_MEMORY_MB} MB / {sizing.PLAN_TIMEOUT_S} s: the 200-s plan step is "
        f"{cadences[-1]['lambda']['plan_s']:.0f} s",
        f"one-row blocks at 200-s: {plan['rows']:,} parts, ~{one_row_gets / 1e6:.1f} million pixel GETs "
        f"(~${one_row_gets * cadences[-1]['lambda']['s3_get_usd'] / plan['get_requests']:.0f})",
        f"on {result('ingest-two-stage')['sample']['frames']:,} full-size FFIs",
    ]


def memory_figures() -> list[str]:
    """The peak-memory section (memory.json, results.json)."""
    sections = result("memory")["sections"]
    built, streamed = sections["in-memory"], sections["streamed"]

    def median(values: list[float]) -> float:
        return sorted(values)[len(values) // 2]

    local, s3 = built["runs"]["local disk"], built["runs"]["s3rver"]
    cut = [r for key in ("v1 proxy", "astrocut proxy", "v1 direct", "astrocut direct") for r in streamed["runs"][key]]
    upload = streamed["runs"]["upload proxy"] + streamed["runs"]["upload direct"]
    before = [r["before_mb"] for r in cut]
    whole = next(c for c in result("results")["cutout"] if c["latency_ms"] == 30 and c["cube"] == "s0001"
                 and c["size"] == 100 and c["tool"] == "cubecut auto")
    n = built["size"]
    box_mb = streamed["frames"] * streamed["size"] ** 2 * 8 / 1e6  # flux and its error, float32
    return [
        f"`results/memory.md`'s first section; VmHWM of a fresh process calling `cutout_files` twice for a {n}x{n} cutout of the "
        f"{built['frames']:,}-frame cube, medians of {len(local)} runs",
        f"the process holds {span([r['before_mb'] for r in local + s3], '.0f')} MB before the call; the TPF is "
        f"{local[0]['tpf_mb']:.0f} MB and the rows read {n * built['frames'] * n * 8 / 1e6:.0f} MB",
        f"Through s3rver the first call peaks at {median([r['after_first_mb'] for r in s3]):.0f} MB",
        f"the peak stays {median([r['after_first_mb'] for r in local]):.0f} MB",
        f"A second call in the same process peaks at {median([r['after_second_mb'] for r in s3]):.0f} MB",
        f"results.md's peak RSS of the {n}x{n} cutout at 30 ms ({whole['peak_rss_mb']:.0f} MB)",
        f"a {streamed['size']}x{streamed['size']} cutout of an {streamed['frames']:,}-frame cube through the service "
        f"peaks at {span([r['after_mb'] for r in cut], ',.0f')} MB for a "
        f"{cut[0]['object_bytes'] / 1e6:,.0f} MB TPF ({median(before):.0f} MB before; the box is {box_mb:.0f} MB) in "
        f"{span([r['wall_s'] for r in cut], '.1f')} s, of which {span([r['cut_s'] for r in cut], '.1f')} s cutting: "
        f"the rest is the {upload[0]['object_bytes'] / 1e9:.1f} GB upload ({span([r['wall_s'] for r in upload], '.1f')} s "
        "with nothing cut)",
    ]


def sector_model_figures() -> list[str]:
    """Issue 7's sector model's inputs (results.json's ``model``)."""
    model = result("results")["model"]
    a = model["assumptions"]
    return [
        f"a sector is the plan + ⌈blocks/{model['sectors'][0]['concurrency']}⌉ × t",
        f"`t = 2·nffi/{a['gets_in_flight_per_worker']} × {a['ttfb_s'] * 1e3:.0f} ms + 2·block/({a['lambda_MB_s']:.0f} MB/s) "
        "+ block/(CPU rate)`",
        f"total GETs / ({a['s3_get_per_prefix_s']:,} GET/s × prefixes) + finalize {a['finalize_s']} s",
    ]


ROWS = (cube_rows() + cpu_rows() + headline_rows() + phase_rows() + streamed_route_rows() + import_rows()
        + ingest_scale_rows())
FIGURES = (setup_figures() + limit_figures() + phase_figures() + streamed_route_figures() + import_figures()
           + ingest_scale_figures() + memory_figures() + sector_model_figures())


@pytest.mark.parametrize("expected", ROWS)
def test_every_table_row_is_its_result_files(expected):
    assert expected + "\n" in DOC


def test_every_table_row_is_checked():
    """No row of the README's tables escapes the rebuild above (headers, rules and the table
    of benchmarks and their result files aside)."""
    rows = [line for line in DOC.splitlines() if line.startswith("| ") and not line.startswith("|---")]
    unchecked = [line for line in rows if line not in set(ROWS) and not re.match(r"\| `\w+\.py`", line)]
    assert len(unchecked) == 8, unchecked  # one header per table


@pytest.mark.parametrize("expected", FIGURES)
def test_every_figure_in_the_prose_is_its_result_files(expected):
    assert " ".join(expected.split()) in " ".join(DOC.split())


def test_the_unstamped_sections_are_as_the_readme_says():
    """The README says results.json's scaling, ingest and model sections carry no stamp."""
    assert {"scaling", "ingest", "model"}.isdisjoint(result("results")["stamps"])


def test_every_sampled_part_was_checked():
    """'Every sampled part was byte-identical' and the changed part was refused, at every cadence."""
    cadences = result("ingest-scale")["cadences"]
    assert all(c["all_parts_identical"] and c["corrupted_part_refused"] for c in cadences)


def test_no_handler_loads_the_heavy_modules_at_import():
    """'No handler loads astropy, matplotlib, the X-Ray SDK or boto3 at import' (imports.json)."""
    r = result("imports")
    after = [value for key, value in r.items() if key.endswith("_import_only") and "_before" not in key]
    assert after and all(set(value.get("loaded", [])) <= {"pydantic"} for value in after)


def test_every_cited_result_file_exists():
    cited = set(re.findall(r"`(?:benchmarks/)?results/([\w-]+)\.(?:json|md|\*)`", DOC))
    assert cited and all((RESULTS / f"{name}.json").is_file() for name in cited - {"results-quick"}), cited
