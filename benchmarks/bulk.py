"""Bulk cutouts benchmark: 10,000 targets of 11x11 on one 1,000-frame cube, on this machine.

    .venv/bin/python benchmarks/bulk.py [--quick] [--targets N]

The cube is the suite's ``s0001`` (1,000 frames x 256 rows x 2,136 columns, 4.4 GB; see
data.py), served by s3rver (servers.py) through the shaper with no added latency, which
counts every request and byte. TPFs go to local disk (benchmarks/work/bulk-out/, removed
after each run). Contenders, each in its own subprocess (CPU = user + system time of the
process and its children):

* ``cubecut bulk``: ``cubecut.bulk.run_job`` on all targets, 2 worker processes;
* ``cubecut bulk, 1 worker``: the same on a sample, one process (the per-core figure);
* ``cubecut per target``: ``cubecut.cutout(cube, target, 11, output_dir=...)`` per target, a sample;
* ``astrocut loop``: astrocut 1.3.0 ``CutoutFactory().cube_cut`` per target (s3fs), a sample.

Samples are scaled up to all targets (time per target x targets). Bytes: the cube bytes
each contender read, against the union of the row spans all targets' boxes need (the
floor; ``bulk`` aims at <= 1.1 of it). Then a Lambda model of a full sector.
Results: benchmarks/results/bulk.json and bulk.md. Nothing is asserted.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import data  # noqa: E402
import servers  # noqa: E402
from data import log  # noqa: E402

RESULTS = HERE / "results"
OUT = data.WORK / "bulk-out"
BUCKET, KEY = "stpubdata", "tess/public/mast/tess-s0001-1-1-cube.fits"
SIZE = 11
SCIENCE_COLS = (44, 2092)  # 0-based science columns of a SPOC FFI


# ------------------------------------------------------------------------------ contenders

def child(job: dict) -> dict:
    """Run one contender in this (fresh) process; CPU and wall of the timed part."""
    out = Path(job["out"])
    import astrocut  # noqa: F401 - imports are not what is timed
    import cubecut.bulk  # noqa: F401
    from astropy.coordinates import SkyCoord  # noqa: F401

    start_wall = time.perf_counter()
    start_cpu = _cpu()
    if job["tool"] == "bulk":
        from cubecut.bulk import run_job

        summary = run_job(job["catalog"], str(out), cubes=[job["cube"]], size=(SIZE, SIZE),
                          workers=job["workers"])
        done = summary.counts.get("written", 0)
        extra = {"counts": summary.counts}
    elif job["tool"] == "cubecut":
        import cubecut
        from astropy.coordinates import SkyCoord

        for ra, dec in job["targets"]:
            cubecut.cutout(job["cube"], SkyCoord(ra, dec, unit="deg"), SIZE, output_dir=out, threads="auto")
        done, extra = len(job["targets"]), {}
    else:
        from astrocut import CutoutFactory
        from astropy.coordinates import SkyCoord

        factory = CutoutFactory()
        out.mkdir(parents=True, exist_ok=True)
        for ra, dec in job["targets"]:
            factory.cube_cut(job["cube"], SkyCoord(ra, dec, unit="deg"), SIZE, output_path=str(out),
                             threads="auto", verbose=False)
        done, extra = len(job["targets"]), {}
    return {"tpfs": done, "wall_s": time.perf_counter() - start_wall, "cpu_s": _cpu() - start_cpu,
            "out_bytes": sum(p.stat().st_size for p in out.rglob("*.fits")), **extra}


def _cpu() -> float:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def run_child(job: dict, env: dict, shaper: servers.Shaper) -> dict:
    shutil.rmtree(job["out"], ignore_errors=True)
    shaper.reset()
    proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(job)], env=env, capture_output=True,
                          text=True)
    shutil.rmtree(job["out"], ignore_errors=True)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            result = json.loads(line[7:])
            stats = shaper.stats()
            result.update(requests=stats["requests"], bytes_read=stats["body_bytes"])
            return result
    raise RuntimeError(f"{job['label']} failed (rc={proc.returncode}): {proc.stderr[-3000:]}")


# ------------------------------------------------------------------------------ the run

def targets(cube_path: Path, n: int, sample: int, seed: int = 18) -> tuple[list[tuple[float, float]], int, int]:
    """``n`` random positions over the science pixels (edges included), and the bytes of the
    union of the row spans the 11x11 boxes of all of them, and of the first ``sample``, need."""
    import numpy as np
    from astropy.coordinates import SkyCoord

    from cubecut.cutout import cutout_box, ffi_wcs, load_index
    from cubecut.cutout.reader import merged_spans, span_bytes

    index = load_index(str(cube_path))
    wcs = ffi_wcs(index)
    rng = np.random.default_rng(seed)
    x = rng.uniform(SCIENCE_COLS[0], SCIENCE_COLS[1] - 1, n)
    y = rng.uniform(-0.5, index.nrows - 0.5, n)
    ra, dec = wcs.all_pix2world(x, y, 0)
    coords = SkyCoord(ra, dec, unit="deg")
    boxes = [cutout_box(wcs, coords[i], SIZE) for i in range(n)]

    def union(some: list) -> int:
        return sum(stop - start for start, stop in (span_bytes(index, s) for s in merged_spans(index, some)))

    return [(float(r), float(d)) for r, d in zip(ra, dec)], union(boxes), union(boxes[:sample])


def plan_seconds(catalog: Path, cube_path: Path) -> float:
    """CPU seconds to read and plan the catalog on the cube (what the Plan function does)."""
    from cubecut.bulk.job import plan_from_request

    start = time.process_time()
    plan_from_request(str(catalog), str(OUT / "plan-probe"), cubes=[str(cube_path)], size=(SIZE, SIZE))
    return time.process_time() - start


def lambda_model(per_tpf_cpu_s: float, measured_frames: int, plan_s_per_target: float) -> dict:
    """A full sector on Lambda: 16 cubes of 1,300 frames, 20,000 targets of 11x11, MaxConcurrency 200."""
    frames, targets, ccds, concurrency = 1300, 20_000, 16, 200
    tile_targets = -(-targets // (concurrency - ccds))  # one wave: tiles (one partial a cube) <= concurrency
    scale = frames / measured_frames  # TPF bytes and build cost grow with frames
    tiles = -(-targets // tile_targets) + ccds
    tpf_bytes = 11 * 11 * frames * 4 * 5 + frames * 60  # five image columns + the small ones
    union_bytes = targets * 11 * 11 * frames * 8  # sparse: ~1,250 targets a CCD barely overlap
    # Assumptions (stated in bulk.md): 1769 MB Lambda = one vCPU as fast as one core here;
    # S3 GETs for a tile's spans at 300 MB/s per worker (32 concurrent range GETs), PUTs
    # overlapped with building; Step Functions ~0.5 s per child execution start.
    read_mbps, child_overhead_s, memory_gb = 300.0, 0.5, 1769 / 1024
    prices = {"lambda_gb_s": 0.0000133334, "lambda_request": 0.2e-6, "sfn_transition": 0.000025,
              "s3_get": 0.0004e-3, "s3_put": 0.005e-3}
    out = {"assumptions": {"frames": frames, "targets": targets, "cubes": ccds, "max_concurrency": concurrency,
                           "tile_targets": tile_targets, "tiles_per_batch": 1, "lambda_memory_mb": 1769,
                           "read_MBps_per_worker": read_mbps, "child_start_s": child_overhead_s,
                           "prices_usd": prices, "region": "us-east-1, arm64"}}
    for label, cpu in (("measured TPF build", per_tpf_cpu_s * scale), ("target 150 TPF/s/core", frames / 1000 / 150)):
        batches = tiles  # one tile per child, all in one wave of MaxConcurrency
        per_batch_s = child_overhead_s + tile_targets * cpu + tile_targets * 11 * 11 * frames * 8 / (read_mbps * 1e6)
        waves = -(-batches // concurrency)
        plan_s = plan_s_per_target * targets
        wall = plan_s + waves * per_batch_s + 5.0  # + Finish
        gb_s = (batches * per_batch_s + plan_s + 5.0) * memory_gb
        transitions = 6 + batches * 3
        gets = union_bytes / (11 * frames * 8) + batches  # one span GET per box row, sparse
        cost = (gb_s * prices["lambda_gb_s"] + (batches + 2) * prices["lambda_request"]
                + transitions * prices["sfn_transition"] + gets * prices["s3_get"]
                + (targets + batches) * prices["s3_put"])
        out[label] = {"tpf_cpu_s": cpu, "batches": batches, "waves": waves, "batch_s": per_batch_s,
                      "wall_s": wall, "lambda_gb_s": gb_s, "cost_usd": cost,
                      "tpf_output_gb": targets * tpf_bytes / 1e9, "bytes_read_gb": union_bytes / 1e9}
    return out


def report(results: dict) -> str:
    lines = [f"# Bulk cutouts benchmark{' (quick)' if results['quick'] else ''}", "",
             f"{results['targets']:,} targets of {SIZE}x{SIZE} on one cube of {results['cube']['nt']:,} frames x "
             f"{results['cube']['nrows']} rows x {results['cube']['ncols']:,} columns "
             f"({results['cube']['bytes'] / 1e9:.1f} GB) on s3rver through the counting proxy, no added latency; "
             f"TPFs to local disk. {results['machine']}. Union of needed row spans: "
             f"{results['union_bytes'] / 1e9:.2f} GB.", "",
             "| contender | targets run | wall s | CPU s | TPFs/s (wall) | TPFs per CPU-s | projected wall for all "
             "targets | requests | bytes read / union |", "|---|---|---|---|---|---|---|---|---|"]
    for r in results["runs"]:
        projected = r["wall_s"] / r["tpfs"] * results["targets"] if r["tpfs"] else float("nan")
        if r["tool"] == "bulk":  # its own catalog's union
            ratio, how = r["bytes_read"] / (results["sample_union_bytes"] if r["sample"] else results["union_bytes"]), ""
        else:  # a target at a time: its bytes per target x all targets, against the whole union
            ratio, how = r["bytes_read"] / max(1, r["tpfs"]) * results["targets"] / results["union_bytes"], " (x N)"
        lines.append(f"| {r['label']} | {r['tpfs']:,} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} | "
                     f"{r['tpfs'] / r['wall_s']:.1f} | {r['tpfs'] / r['cpu_s']:.1f} | {projected:,.0f} s | "
                     f"{r['requests']:,} | {ratio:.3f}{how} |")
    by = {r["label"]: r for r in results["runs"]}
    if "cubecut bulk, 1 worker" in by:
        bulk = by["cubecut bulk, 1 worker"]
        lines += ["", "Per target and per CPU-second, bulk with one worker against (same run): " + ", ".join(
            f"{r['label']} {(r['cpu_s'] / r['tpfs']) / (bulk['cpu_s'] / bulk['tpfs']):.1f}x the CPU and "
            f"{(r['wall_s'] / r['tpfs']) / (bulk['wall_s'] / bulk['tpfs']):.1f}x the wall time"
            for r in results["runs"] if r["tool"] != "bulk") + ".", ""]
    if "model" not in results:
        return "\n".join(lines) + "\n"
    m = results["model"]
    a = m["assumptions"]
    lines += ["## Lambda model: a full sector", "",
              f"{a['targets']:,} targets of 11x11 over {a['cubes']} cubes of {a['frames']:,} frames, MaxConcurrency "
              f"{a['max_concurrency']}, tiles of {a['tile_targets']} targets, one tile per worker, Lambda "
              f"{a['lambda_memory_mb']} MB arm64 (one vCPU, assumed as fast as one core here), cube reads at "
              f"{a['read_MBps_per_worker']:.0f} MB/s per worker, {a['child_start_s']} s to start a child execution, "
              "per-TPF CPU of the 1-worker run scaled by frames (to 1,300), us-east-1 prices (Lambda arm64 GB-s and requests, "
              "Step Functions standard transitions, S3 GET/PUT; no data transfer).", "",
              "| TPF build | per TPF CPU s | batches | waves | s a batch | wall s | Lambda GB-s | cost USD | "
              "TPF output GB |", "|---|---|---|---|---|---|---|---|---|"]
    for label in ("measured TPF build", "target 150 TPF/s/core"):
        r = m[label]
        lines.append(f"| {label} | {r['tpf_cpu_s']:.4f} | {r['batches']} | {r['waves']} | {r['batch_s']:.1f} | "
                     f"{r['wall_s']:.0f} | {r['lambda_gb_s']:,.0f} | {r['cost_usd']:.2f} | "
                     f"{r['tpf_output_gb']:.0f} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="the small s0001-q cube and 1,000 targets")
    parser.add_argument("--targets", type=int, default=None, help="targets (default 10,000; quick 1,000)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print("RESULT " + json.dumps(child(json.loads(args.child))), flush=True)
        return 0
    spec = (data.QUICK if args.quick else data.FULL)["s0001"]
    cube_path = data.cube(spec)
    ntargets = args.targets or (1000 if args.quick else 10_000)
    samples = {"bulk1": min(500, ntargets // 10), "cubecut": min(200, ntargets // 10),
               "astrocut": min(50, ntargets // 20)}
    from cubecut.cutout import load_index

    index = load_index(str(cube_path))
    log(f"bulk: {ntargets} targets on {cube_path.name} ({index.nt} frames)")
    coords, union, sample_union = targets(cube_path, ntargets, samples["bulk1"])
    OUT.mkdir(parents=True, exist_ok=True)
    catalog = OUT / "catalog.csv"
    catalog.write_text("ra,dec\n" + "".join(f"{ra!r},{dec!r}\n" for ra, dec in coords))
    plan_s_per_target = plan_seconds(catalog, cube_path) / ntargets
    sample = OUT / "sample.csv"
    sample.write_text("ra,dec\n" + "".join(f"{ra!r},{dec!r}\n" for ra, dec in coords[:samples["bulk1"]]))
    s3 = servers.S3rver()
    shaper = servers.Shaper(s3.port)
    try:
        etag = s3.place(BUCKET, KEY, cube_path)
        side = json.loads(Path(f"{cube_path}.index.json").read_text())
        side["cube_etag"] = etag
        s3.put_bytes(BUCKET, KEY + ".index.json", json.dumps(side).encode())
        env = servers.s3_env(shaper.endpoint)
        url = f"s3://{BUCKET}/{KEY}"
        jobs = [  # samples first, then the whole catalog; results are saved after each
            {"label": "cubecut bulk, 1 worker", "tool": "bulk", "catalog": str(sample), "workers": 1, "sample": True},
            {"label": "cubecut per target", "tool": "cubecut", "targets": coords[:samples["cubecut"]],
             "sample": True},
            {"label": "astrocut loop", "tool": "astrocut", "targets": coords[:samples["astrocut"]], "sample": True},
            {"label": "cubecut bulk, 2 workers", "tool": "bulk", "catalog": str(catalog), "workers": 2,
             "sample": False},
        ]
        results = {"quick": args.quick, "targets": ntargets, "union_bytes": union,
                   "machine": f"{os.cpu_count()} CPUs, load average at start {os.getloadavg()[0]:.1f}",
                   "cube": {"nt": index.nt, "nrows": index.nrows, "ncols": index.ncols, "bytes": index.cube_size},
                   "sample_union_bytes": sample_union, "plan_cpu_s_per_target": plan_s_per_target, "runs": []}
        runs = results["runs"]
        for job in jobs:
            job.update(cube=url, out=str(OUT / job["tool"]))
            log(f"  {job['label']} ...")
            result = run_child(job, env, shaper)
            result.update(label=job["label"], sample=job["sample"], tool=job["tool"],
                          load_after=os.getloadavg()[0])
            runs.append(result)
            save(results, args.quick)
            log(f"    {result['tpfs']} TPFs in {result['wall_s']:.1f} s wall, {result['cpu_s']:.1f} s CPU, "
                f"{result['requests']} requests, {result['bytes_read'] / 1e9:.2f} GB")
    finally:
        shaper.stop()
        s3.stop()
    bulk1 = runs[0]
    results["model"] = lambda_model(bulk1["cpu_s"] / bulk1["tpfs"], index.nt, plan_s_per_target)
    print(save(results, args.quick))
    return 0


def save(results: dict, quick: bool) -> str:
    """Write results (json) and the report (md); returns the report."""
    RESULTS.mkdir(exist_ok=True)
    name = "bulk-quick" if quick else "bulk"
    (RESULTS / f"{name}.json").write_text(json.dumps(results, indent=1))
    text = report(results)
    (RESULTS / f"{name}.md").write_text(text)
    return text


if __name__ == "__main__":
    sys.exit(main())
