"""cubecut benchmark suite: cutouts, multi-target, multi-sector and ingest, vs astrocut and tesscube.

    python3 dev.py bench [--quick] [--only SECTION ...]

Sections: scaling (moto vs s3rver range GETs), cutout, multi, ingest, model. Results go
to benchmarks/results/ (results.json, results.md, *.png); data is cached in
benchmarks/work/. Every contender runs in its own subprocess (peak RSS = ru_maxrss).
See benchmarks/README.md.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import data  # noqa: E402
import servers  # noqa: E402
import stamp  # noqa: E402
from data import log  # noqa: E402

RESULTS = HERE / "results"
SIZES = (10, 30, 100)
REALISTIC = (30.0, 100.0)  # first-byte latency ms, MB/s per connection
MAST_KEY = "tess/public/mast/tess-s{sector:04d}-1-1-cube.fits"  # tesscube's layout in stpubdata


def contender(job: dict, env: dict, timeout: float = 1800) -> dict:
    try:
        proc = subprocess.run([sys.executable, str(HERE / "contenders.py"), json.dumps(job)], env=env,
                              capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"ok": False, "error": f"timeout after {timeout} s"}
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    return {"ok": False, "error": f"no result (rc={proc.returncode})", "stderr": proc.stderr[-2000:]}


def median(values):
    values = sorted(v for v in values if v is not None)
    return values[len(values) // 2] if values else None


def summarize(res: dict, phase: str) -> dict | None:
    runs = res.get(phase) or []
    if not res.get("ok") or not runs:
        return None
    keys = ("wall_s", "proxy_requests", "proxy_bytes", "requests", "bytes", "max_in_flight")
    return {k: median([r.get(k) for r in runs]) for k in keys}


class Results:
    """``results.json`` (``results-quick.json`` with ``--quick``: other cubes): the sections of
    this run replace those of the last, which are kept; ``stamps`` holds each section's run
    (stamp.py)."""

    def __init__(self, quick: bool) -> None:
        RESULTS.mkdir(exist_ok=True)
        self.name = "results-quick" if quick else "results"
        self.stamp = stamp.begin()
        self.data: dict = {"quick": quick, "stamps": {}}
        if (RESULTS / f"{self.name}.json").exists():  # keep sections not re-run
            for k, v in stamp.load(self.name).items():
                self.data.setdefault(k, v)

    def save(self, section: str, value) -> None:
        self.data[section] = value
        self.data["stamps"][section] = stamp.end(self.stamp)
        (RESULTS / f"{self.name}.json").write_text(json.dumps(self.data, indent=1, default=str) + "\n")


# ------------------------------------------------------------------------------ cubes on S3

def publish_cubes(s3: servers.S3rver, cubes: dict[str, Path]) -> dict[str, dict]:
    """Put each cube (and its sidecar) at tesscube's key in bucket stpubdata."""
    from cubecut.cutout import ffi_wcs, load_index

    out = {}
    for name, path in cubes.items():
        index = load_index(str(path))
        sector = index.sector
        key = MAST_KEY.format(sector=sector)
        etag = s3.place("stpubdata", key, path)
        side = json.loads(Path(f"{path}.index.json").read_text())
        side["cube_etag"] = etag
        s3.put_bytes("stpubdata", key + ".index.json", json.dumps(side).encode())
        out[name] = {"url": f"s3://stpubdata/{key}", "sector": sector, "nt": index.nt, "nrows": index.nrows,
                     "ncols": index.ncols, "wcs": ffi_wcs(index), "path": path, "side": side}
    return out


def radec(cube: dict, col: float, row: float) -> str:
    ra, dec = cube["wcs"].pixel_to_world_values(col, row)
    return f"{float(ra):.6f} {float(dec):.6f}"


def min_bytes(cube: dict, size: int, row: float) -> int:
    y0 = round(row - size / 2)
    rows = max(0, min(cube["nrows"], y0 + size) - max(0, y0))
    return rows * size * cube["nt"] * 8


# ------------------------------------------------------------------------------ sections

def section_scaling(quick: bool) -> dict:
    log("moto vs s3rver: range GET latency vs object size")
    import logging
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    sizes = (8, 64) if quick else (8, 64, 256, 512)
    return servers.range_get_scaling(sizes_mb=sizes, repeats=5)


def section_cutout(quick: bool, s3, shapers, cubes) -> list[dict]:
    rows = []
    plan = [("s0001", SIZES), ("s0030", (10, 30))]
    for shaper in shapers:
        env = servers.s3_env(shaper.endpoint)
        for cname, sizes in plan:
            cube = cubes[cname]
            col, row = 700.0, cube["nrows"] / 2
            coord = radec(cube, col, row)
            for size in sizes:
                jobs = [
                    ("cubecut auto", {"tool": "cubecut", "cubes": [cube["url"]], "coords": [coord], "size": size,
                                      "threads": "auto", "cold": 3, "warm": 3}),
                    ("cubecut 1", {"tool": "cubecut", "cubes": [cube["url"]], "coords": [coord], "size": size,
                                   "threads": 1, "cold": 2, "warm": 2}),
                    ("astrocut auto", {"tool": "astrocut", "cubes": [cube["url"]], "coords": [coord], "size": size,
                                       "threads": "auto", "cold": 1, "warm": 1 if size < 100 else 0}),
                    ("tesscube", {"tool": "tesscube", "sector": cube["sector"], "coords": [coord], "size": size,
                                  "cold": 1, "warm": 2}),
                ]
                for label, job in jobs:
                    job["control"] = shaper.control
                    t0 = time.perf_counter()
                    res = contender(job, env)
                    entry = {"latency": shaper.label, "latency_ms": shaper.latency_ms, "cube": cname,
                             "nt": cube["nt"], "size": size, "tool": label, "ok": res.get("ok"),
                             "error": res.get("error"), "peak_rss_mb": res.get("peak_rss_mb"),
                             "cold": summarize(res, "cold"), "warm": summarize(res, "warm"),
                             "min_bytes": min_bytes(cube, size, row), "raw": res}
                    rows.append(entry)
                    c, w = entry["cold"] or {}, entry["warm"] or {}
                    log(f"  [{shaper.label}] {cname} {size}x{size} {label:14s} cold {c.get('wall_s') or 0:.3f} s "
                        f"warm {w.get('wall_s') or 0:.3f} s req {c.get('proxy_requests')}/{w.get('proxy_requests')} "
                        f"bytes {c.get('proxy_bytes')} rss {res.get('peak_rss_mb') or 0:.0f} MB "
                        f"({time.perf_counter() - t0:.0f} s){'' if res.get('ok') else ' ERROR ' + str(res.get('error'))}")
    return rows


def section_headline(quick: bool, s3, shaper, cubes) -> list[dict]:
    """The target case again: 2 positions x 3 interleaved rounds of every tool (the machine
    is noisy; interleaving spreads the noise over all tools)."""
    env = servers.s3_env(shaper.endpoint)
    cube = cubes["s0001"]
    row = cube["nrows"] / 2
    rows = []
    tools = (("cubecut auto", {"tool": "cubecut", "threads": "auto", "cold": 3, "warm": 3}),
             ("astrocut auto", {"tool": "astrocut", "threads": "auto", "cold": 2, "warm": 2}),
             ("tesscube", {"tool": "tesscube", "sector": cube["sector"], "cold": 2, "warm": 2}))
    for rnd in range(1 if quick else 3):
        for col in (700.0, 1500.0):
            coord = radec(cube, col, row)
            for label, base in tools:
                job = dict(base, cubes=[cube["url"]], coords=[coord], size=30, control=shaper.control)
                res = contender(job, env)
                entry = {"round": rnd, "position": col, "tool": label, "latency": shaper.label,
                         "cold": summarize(res, "cold"), "warm": summarize(res, "warm"),
                         "peak_rss_mb": res.get("peak_rss_mb"), "ok": res.get("ok"), "error": res.get("error"),
                         "min_bytes": min_bytes(cube, 30, row)}
                rows.append(entry)
                c, w = entry["cold"] or {}, entry["warm"] or {}
                log(f"  headline r{rnd} col {col:.0f} {label:44s} cold {c.get('wall_s') or 0:.3f} s "
                    f"warm {w.get('wall_s') or 0:.3f} s")
    return rows


def section_multi(quick: bool, s3, shaper, cubes) -> dict:
    """100 targets on one cube; a 3-sector request."""
    env = servers.s3_env(shaper.endpoint)
    cube = cubes["s0001"]
    rng = random.Random(3)
    ntargets = 100
    size = 10
    margin = size
    coords = [radec(cube, rng.uniform(44 + margin, 2091 - margin), rng.uniform(margin, cube["nrows"] - margin))
              for _ in range(ntargets)]
    n_astro = 10 if quick else 20  # astrocut's loop is timed on a subset and scaled (it is linear)
    out = {"latency": shaper.label, "size": size, "ntargets": ntargets, "astrocut_timed_targets": n_astro}
    res = contender({"tool": "cubecut", "cubes": [cube["url"]], "coords": coords, "size": size, "threads": "auto",
                     "cold": 1, "warm": 1, "control": shaper.control}, env)
    out["cubecut"] = {"cold": summarize(res, "cold"), "warm": summarize(res, "warm"), "peak_rss_mb": res.get("peak_rss_mb"),
                      "error": res.get("error")}
    res = contender({"tool": "astrocut", "cubes": [cube["url"]], "coords": coords[:n_astro], "size": size,
                     "threads": "auto", "cold": 1, "warm": 0, "control": shaper.control}, env)
    s = summarize(res, "cold")
    if s:
        s = {k: (v * ntargets / n_astro if v is not None and k != "max_in_flight" else v) for k, v in s.items()}
    out["astrocut"] = {"cold": s, "peak_rss_mb": res.get("peak_rss_mb"), "error": res.get("error")}
    log(f"  100 targets: cubecut {out['cubecut']['cold'] and out['cubecut']['cold']['wall_s']:.2f} s cold, "
        f"astrocut loop {s and s['wall_s']:.1f} s (scaled from {n_astro})")

    # 3 sectors: the sector-1 cube served under three sector keys (same bytes, three objects)
    urls = [cube["url"]]
    for sector in (2, 3):
        key = MAST_KEY.format(sector=sector)
        etag = s3.place("stpubdata", key, cube["path"])
        side = dict(cube["side"], cube_etag=etag)
        s3.put_bytes("stpubdata", key + ".index.json", json.dumps(side).encode())
        urls.append(f"s3://stpubdata/{key}")
    coord = radec(cube, 700.0, cube["nrows"] / 2)
    three = {"size": 30, "sectors": 3}
    res = contender({"tool": "cubecut", "cubes": urls, "coords": [coord], "size": 30, "threads": "auto",
                     "cold": 2, "warm": 2, "control": shaper.control}, env)
    three["cubecut"] = {"cold": summarize(res, "cold"), "warm": summarize(res, "warm"),
                        "peak_rss_mb": res.get("peak_rss_mb"), "error": res.get("error")}
    res = contender({"tool": "astrocut", "cubes": urls, "coords": [coord], "size": 30, "threads": "auto",
                     "cold": 1, "warm": 0, "control": shaper.control}, env)
    three["astrocut"] = {"cold": summarize(res, "cold"), "peak_rss_mb": res.get("peak_rss_mb"), "error": res.get("error")}
    log(f"  3 sectors 30x30: cubecut {three['cubecut']['cold'] and three['cubecut']['cold']['wall_s']:.2f} s, "
        f"astrocut {three['astrocut']['cold'] and three['astrocut']['cold']['wall_s']:.2f} s")
    out["three_sectors"] = three
    return out


def _rss_of(res):
    return res.get("peak_rss_mb")


def section_ingest(quick: bool, s3) -> dict:
    spec = data.INGEST_QUICK if quick else data.INGEST_FULL
    files = [str(p) for p in data.ffis(spec)]
    in_bytes = sum(os.path.getsize(f) for f in files)
    cube_bytes = spec.frames * 2078 * 2136 * 8
    outdir = data.WORK / "ingest-out"
    out = {"ffis": len(files), "ffi_shape": [2078, 2136], "input_bytes": in_bytes, "cube_bytes": cube_bytes, "runs": []}
    env = servers.s3_env(s3.endpoint)

    def record(label, res, **extra):
        wall = res.get("wall_s")
        row = {"label": label, "ok": res.get("ok"), "error": res.get("error"), "wall_s": wall,
               "cube_mb_s": cube_bytes / wall / 1e6 if wall else None, "peak_rss_mb": res.get("peak_rss_mb"),
               **{k: res.get(k) for k in ("requests", "bytes")}, **extra}
        out["runs"].append(row)
        log(f"  ingest {label:28s} {wall or 0:7.1f} s  {row['cube_mb_s'] or 0:6.0f} MB/s  "
            f"peak RSS {row['peak_rss_mb'] or 0:.0f} MB {'' if res.get('ok') else res.get('error')}")

    for workers in (1, 2):
        shutil.rmtree(outdir, ignore_errors=True)
        outdir.mkdir(parents=True)
        res = contender({"tool": "ingest_cubecut", "ffis": files, "cube": str(outdir / "cube.fits"),
                         "workers": workers}, env)
        record(f"cubecut local W={workers}", res, workers=workers, source="local")
    shutil.rmtree(outdir, ignore_errors=True)

    cubecut_rss = max((r["peak_rss_mb"] or 0) for r in out["runs"])
    astro_mem = [round(cubecut_rss / 1000 + 0.05, 1)] + ([] if quick else [50])  # GB, equal memory first
    for gb in astro_mem:
        outdir.mkdir(parents=True, exist_ok=True)
        res = contender({"tool": "ingest_astrocut", "ffis": files, "cube": str(outdir / "astro-cube.fits"),
                         "max_memory_gb": gb}, env, timeout=3600)
        record(f"astrocut make_cube max_memory={gb} GB", res, max_memory_gb=gb, source="local")
        shutil.rmtree(outdir, ignore_errors=True)

    # cubecut reading FFIs from the S3 server and writing the cube there (multipart)
    urls = []
    for f in files:
        key = f"ffi/s{spec.sector:04d}/{Path(f).name}"
        s3.place("cubecut-bench", key, Path(f))
        urls.append(f"s3://cubecut-bench/{key}")
    # cubecut reading the FFIs from the S3 server (s3rver lacks ListParts/AbortMultipartUpload,
    # which finalize/abort need, so the cube itself goes to local disk here)
    outdir.mkdir(parents=True, exist_ok=True)
    res = contender({"tool": "ingest_cubecut", "ffis": urls, "cube": str(outdir / "cube.fits"), "workers": 2}, env)
    record("cubecut FFIs on S3 W=2", res, workers=2, source="s3")
    shutil.rmtree(outdir, ignore_errors=True)

    # one block worker, as one Lambda invocation runs it: plan (headers) + one block, FFIs on S3,
    # direct and behind the S3-like shaper
    shaper = servers.Shaper(s3.port, *REALISTIC)
    try:
        for block_mb, sh in ((64, None), (128, None), (64, shaper)):
            benv = servers.s3_env(sh.endpoint) if sh else env
            res = contender({"tool": "block_worker", "ffis": urls, "cube": "s3://cubecut-bench/cubes/block-cube.fits",
                             "block_bytes": block_mb << 20}, benv)
            row = {"block_mb": block_mb, "latency": sh.label if sh else "0 ms",
                   **{k: res.get(k) for k in ("ok", "error", "wall_s", "plan_s", "block_bytes", "block_rows",
                                              "rss_before_block_mb", "rss_after_block_mb", "peak_rss_mb",
                                              "requests", "bytes", "nblocks")}}
            out.setdefault("block_worker", []).append(row)
            log(f"  block worker {block_mb} MiB [{row['latency']}]: plan {row['plan_s'] or 0:.2f} s, block "
                f"{row['wall_s'] or 0:.2f} s, RSS {row['rss_before_block_mb'] or 0:.0f} -> {row['peak_rss_mb'] or 0:.0f} MB, "
                f"{row['requests']} requests {'' if res.get('ok') else res.get('error')}")
    finally:
        shaper.stop()
    return out


def section_model(ingest: dict) -> dict:
    """Full-sector ingest wall time on Lambda, from the measured ingest.

    A block of ``k`` cube rows is built by one worker: 2 range GETs per FFI (flux, error
    planes: ``k`` rows each), 32 in flight, then one UploadPart. Per block:

        t_block = 2 * nffi / 32 * ttfb  +  2 * block_bytes / lambda_bw  +  block_bytes / cpu_rate

    ``cpu_rate`` is the measured single-worker local ingest rate (cube bytes / wall, FFIs in
    the page cache: read + transpose + write, i.e. everything but network waits).
    The formula is checked against the block worker measured behind the shaper.
    Sector wall = plan + start + max(waves x t_block, GETs / (5,500 x prefixes)) + finalize:
    S3 serves at most 5,500 GET/s per prefix, so the GET count (blocks x 2 x nffi) bounds
    the wall time whatever the concurrency. Bigger blocks (more rows) mean fewer GETs.
    """
    runs = {r["label"]: r for r in ingest.get("runs", []) if r.get("ok")}
    w1 = next((r for k, r in runs.items() if k.startswith("cubecut local W=1")), None)
    bws = [b for b in ingest.get("block_worker", []) if b.get("ok")]
    shaped = next((b for b in bws if b["block_mb"] == 64 and b["latency"] != "0 ms"), None)
    if not w1:
        return {"error": "no cubecut ingest measurement"}
    ttfb, lambda_bw, threads = REALISTIC[0] / 1000, REALISTIC[1] * 1e6, 32
    cpu_rate = ingest["cube_bytes"] / w1["wall_s"]
    nffi_meas = ingest["ffis"]
    row_bytes = lambda nffi: 2136 * nffi * 8

    def t_block(nffi: int, block_bytes: float, bw: float = lambda_bw) -> float:
        return 2 * nffi / threads * ttfb + 2 * block_bytes / bw + block_bytes / cpu_rate

    check = None
    if shaped:
        # behind the shaper each of the 32 connections gets 100 MB/s, so the bandwidth term is
        # 32 x 100 MB/s there; s3rver (one node thread, ~4 ms of work per request) adds a
        # serial per-request cost that real S3 does not have
        predicted = t_block(nffi_meas, shaped["block_bytes"], bw=lambda_bw * threads)
        zero = next((b for b in bws if b["block_mb"] == 64 and b["latency"] == "0 ms"), None)
        check = {"measured_s": shaped["wall_s"], "predicted_s": predicted, "ffis": nffi_meas,
                 "measured_0ms_s": zero and zero["wall_s"], "requests": shaped["requests"],
                 "s3rver_s_per_request_0ms": zero and zero["wall_s"] / zero["requests"]}
    plan_per_ffi = (shaped or {}).get("plan_s", 0) / nffi_meas
    model = {"measured": {"ffis": nffi_meas, "cpu_MB_s_per_worker": cpu_rate / 1e6,
                          "plan_s_per_ffi_at_30ms": plan_per_ffi, "check_vs_shaped_block": check},
             "assumptions": {"ttfb_s": ttfb, "lambda_MB_s": lambda_bw / 1e6, "gets_in_flight_per_worker": threads,
                             "s3_get_per_prefix_s": 5500, "s3_put_per_prefix_s": 3500, "finalize_s": 10,
                             "lambda_start_s": 2, "prefixes": "1 (all FFIs under one prefix) or 27 (MAST's "
                             "per-day FFI folders, once S3 has partitioned them)"},
             "sectors": []}
    for name, nffi, cube_gb in (("30-min sector", 1300, 45.0), ("10-min sector", 3500, 124.0),
                                ("200-s sector", 12000, 420.0)):
        nrows = 2078
        seen = set()
        for target_mib in (64, 256, 1024):
            k = max(1, int(target_mib * 2**20 // row_bytes(nffi)))
            if k in seen:
                continue
            seen.add(k)
            block_bytes = k * row_bytes(nffi)
            nblocks = -(-nrows // k)
            tb = t_block(nffi, block_bytes)
            gets = nblocks * 2 * nffi
            for conc in (200,):
                for prefixes in (1, 27):
                    waves = -(-nblocks // conc)
                    compute = waves * tb
                    get_bound = gets / (5500 * prefixes)
                    plan_s = plan_per_ffi * nffi
                    wall = plan_s + 2 + max(compute, get_bound) + 10
                    model["sectors"].append({
                        "sector": name, "ffis": nffi, "cube_gb": cube_gb, "concurrency": conc,
                        "prefixes": prefixes, "block_rows": k, "block_mib": block_bytes / 2**20,
                        "worker_mem_gb": 1.1 * block_bytes / 1e9 + 0.15, "blocks": nblocks, "block_s": tb,
                        "waves": waves, "gets": gets, "get_bound_s": get_bound, "compute_s": compute,
                        "plan_s": plan_s, "wall_s": wall, "wall_min": wall / 60})
    model["astrocut_seed"] = {"single_pass_min": 15, "single_pass_ram_gb": 50, "three_pass_min": 45}
    return model


# ------------------------------------------------------------------------------ main

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small data, fewer cases (minutes)")
    parser.add_argument("--only", nargs="*", default=None,
                        choices=["scaling", "cutout", "headline", "multi", "ingest", "model", "report"])
    args = parser.parse_args()
    import signal
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))  # run the finally: stop the servers
    only = set(args.only or ["scaling", "cutout", "headline", "multi", "ingest", "model", "report"])
    deps = data.WORK / "tesscube-deps"
    if not (deps / "tesscube").exists():
        log(f"installing tesscube and its pinned dependencies into {deps} (isolated, see requirements.txt)")
        done = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(deps),
                               "-r", str(HERE / "requirements.txt")])
        if done.returncode:
            log("tesscube could not be installed: its cases will be reported as errors")
    if shutil.which("node") is None:
        sys.exit("node (>= 18) and npm are needed for the local S3 server (s3rver)")
    results = Results(args.quick)
    t_start = time.perf_counter()

    if "scaling" in only:
        results.save("scaling", section_scaling(args.quick))

    s3 = shapers = None
    try:
        if only & {"cutout", "headline", "multi", "ingest"}:
            s3 = servers.S3rver()
            log(f"s3rver on {s3.endpoint}")
        if only & {"cutout", "headline", "multi"}:
            cubes = publish_cubes(s3, data.prepare(args.quick))
            results.save("cubes", {k: {kk: v[kk] for kk in ("url", "sector", "nt", "nrows", "ncols")}
                                   for k, v in cubes.items()})
            shapers = [servers.Shaper(s3.port, 0, 0), servers.Shaper(s3.port, *REALISTIC)]
            if "cutout" in only:
                results.save("cutout", section_cutout(args.quick, s3, shapers, cubes))
            if "headline" in only:
                results.save("headline", section_headline(args.quick, s3, shapers[1], cubes))
            if "multi" in only:
                results.save("multi", section_multi(args.quick, s3, shapers[1], cubes))
        if "ingest" in only:
            results.save("ingest", section_ingest(args.quick, s3))
    finally:
        for sh in shapers or []:
            sh.stop()
        if s3:
            s3.stop()
    if "model" in only and "ingest" in results.data:
        results.save("model", section_model(results.data["ingest"]))
    results.save("elapsed_s", time.perf_counter() - t_start)
    if "report" in only:
        import report
        report.write(results.data, RESULTS, quick=args.quick)
    log(f"done in {time.perf_counter() - t_start:.0f} s; results in {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
