"""Bulk cutouts benchmark: 10,000 targets of 11x11 on one 1,000-frame cube, on this machine.

    .venv/bin/python benchmarks/bulk.py [--quick] [--targets N]
    .venv/bin/python benchmarks/bulk.py --cadence 200-s   # 11,700 frames: 300 targets, no astrocut

The cube is the suite's ``s0001`` (1,000 frames x 256 rows x 2,136 columns, 4.4 GB; see
data.py), or with ``--cadence 200-s`` ``s0056`` (a 200-s sector's 11,700 frames x 40 rows x
300 columns, 1.1 GB: the time depth of today's sectors, small in space; the per-target
loops of cubecut and astrocut are left out there), served by s3rver (servers.py) through
the shaper with no added latency, which
counts every request and byte (its own s3rver, store under benchmarks/work/bulk-out/).
TPFs go to local disk (benchmarks/work/bulk-out/, removed after each run). Contenders, each
in its own subprocess (CPU = user + system time of the process and its children; the
servers' CPU, s3rver's and the proxy's, is reported beside it, since on this machine they
run on the same 2 cores):

* ``cubecut bulk, N workers``: ``cubecut.bulk.run_job`` on all targets, N worker processes
  (2, the machine's cores, and 3), TPFs written with O_DIRECT (``cubecut.storage.files``);
  with 2 workers also with buffered writes (``put_bytes``, the page cache: the writer
  before O_DIRECT), without writing, and with the cube read from local disk instead of
  the S3 server (no server CPU on the cores);
* ``cubecut bulk, 1 worker``: the same on a sample, one process, and again with buffered
  writes, without writing (the CPU of reading and building alone), with the TPFs uploaded
  to the S3 server (the client's CPU of a PUT, which the Lambda model uses) and as tar
  shards (one a tile). Runs that replace the writer run ``run_tiles`` over ``run_job``'s
  shares in forked processes (a spawned worker would not see the replacement);
* ``TPF writer``: ``cubecut.cutout.tpf_bytes`` alone (pixels already read, local cube), CPU
  per TPF for 10x10 and 11x11 boxes x 1,000 frames (issue 17's writer cost per TPF);
* ``cubecut per target``: ``cubecut.cutout(cube, target, 11, output_dir=...)`` per target, a sample;
* ``astrocut loop``: astrocut 1.3.0 ``CutoutFactory().cube_cut`` per target (s3fs), a sample.

Samples are scaled up to all targets (time per target x targets). Bytes: the cube bytes
each contender read, against the union of the row spans all targets' boxes need (the
floor; ``bulk`` aims at <= 1.1 of it). TPFs/s per core = TPFs/s by wall / min(workers,
CPUs); TPFs per CPU-s = TPFs / the contender's CPU (not the servers'). Kernel ms per TPF
write = system CPU of a run minus that of the same run without writes, per TPF. Then a
Lambda model of a full sector at the cube's frame count.
Results: benchmarks/results/bulk.json and bulk.md, one section per cube (a run replaces its
cube's section and keeps the others), each stamped with its run (stamp.py). Nothing is
asserted.
"""
from __future__ import annotations

import argparse
import json
import os
import re
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
import stamp  # noqa: E402
from data import log  # noqa: E402

OUT = data.WORK / "bulk-out"
BUCKET = "stpubdata"
SIZE = 11
S3_WRITE = "uploaded to S3 (s3rver, plain HTTP)"
SCIENCE_COLS = (44, 2092)  # 0-based science columns of a SPOC FFI
CADENCES = ("30-min", "200-s")
#: The runs made on the 200-s cube.
LONG_CUBE_RUNS = ("cubecut bulk, 1 worker", "cubecut bulk, 1 worker, TPFs not written",
                  "cubecut bulk, 1 worker, TPFs to S3", "cubecut bulk, 1 worker, shards", "cubecut bulk, 2 workers",
                  "cubecut bulk, 2 workers, TPFs not written")


# ------------------------------------------------------------------------------ contenders

def child(job: dict) -> dict:
    """Run one contender in this (fresh) process; CPU and wall of the timed part."""
    out = Path(job["out"])
    import astrocut  # noqa: F401 - imports are not what is timed
    import cubecut.bulk
    from astropy.coordinates import SkyCoord

    start_wall = time.perf_counter()
    start_user, start_sys = _cpu()
    if job["tool"] == "bulk":
        import cubecut.bulk.worker
        from cubecut.bulk import run_job
        from cubecut.storage import put_bytes

        writer = job.get("writer", "direct")
        if writer != "direct":
            cubecut.bulk.worker.put_output = {  # type: ignore[assignment]
                "none": lambda url, data, content_type: None,
                "buffered": lambda url, data, content_type: put_bytes(url, data, content_type)}[writer]
        if writer != "direct" and job["workers"] > 1:
            done, extra = forked_shares(job, job["out"]), {}
        else:
            summary = run_job(job["catalog"], job["out"], cubes=[job["cube"]], size=(SIZE, SIZE),
                              workers=job["workers"], shards=job.get("shards", False))
            done, extra = summary.counts.get("written", 0), {"counts": summary.counts}
    elif job["tool"] == "cubecut":
        import cubecut
        from astropy.coordinates import SkyCoord

        for ra, dec in job["targets"]:
            cubecut.cutout(job["cube"], SkyCoord(ra, dec, unit="deg"), SIZE, output_dir=out, threads="auto")
        done, extra = len(job["targets"]), {}
    elif job["tool"] == "writer":
        return {"writer_cpu_ms": writer_cpu_ms(job["cube_path"], job["targets"])}
    else:
        from astrocut import CutoutFactory
        from astropy.coordinates import SkyCoord

        factory = CutoutFactory()
        out.mkdir(parents=True, exist_ok=True)
        for ra, dec in job["targets"]:
            factory.cube_cut(job["cube"], SkyCoord(ra, dec, unit="deg"), SIZE, output_path=str(out),
                             threads="auto", verbose=False)
        done, extra = len(job["targets"]), {}
    wall, (user, sys_) = time.perf_counter() - start_wall, _cpu()
    return {"tpfs": done, "wall_s": wall, "cpu_s": user - start_user + sys_ - start_sys,
            "user_s": user - start_user, "sys_s": sys_ - start_sys, "out_bytes": _out_bytes(job["out"]), **extra}


def _out_bytes(out: str) -> int:
    """Bytes of the TPFs and shards under ``out`` (a folder or an s3:// prefix)."""
    from cubecut.storage import list_objects

    if not out.startswith("s3://") and not Path(out).is_dir():
        return 0
    return sum(size for location, size in list_objects(out.rstrip("/") + "/")
               if location.key.endswith((".fits", ".tar")))


def forked_shares(job: dict, out: str) -> int:
    """``run_job``'s shares of the plan in forked worker processes (which keep this process's
    replaced writer; run_job's own workers are spawned, fresh); TPFs cut."""
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    from cubecut.bulk.job import _shares, plan_from_request
    from cubecut.bulk.worker import run_tiles

    with ProcessPoolExecutor(job["workers"], mp_context=get_context("fork")) as pool:
        # Fork the workers before the plan reads the cube's index: that read starts obstore's
        # tokio runtime, whose threads a process forked afterwards would not have (it hangs).
        pool.submit(int).result()
        plan = plan_from_request(job["catalog"], out, cubes=[job["cube"]], size=(SIZE, SIZE))
        shares = _shares(plan.tiles, job["workers"])
        return sum(len(rows) for result in pool.map(run_tiles, shares) for rows in result.values())


def writer_cpu_ms(cube_path: str, coords: list[tuple[float, float]]) -> dict[str, float]:
    """CPU ms per TPF of ``tpf_bytes`` alone, per box size, over ``coords`` (pixels read first)."""
    from astropy.coordinates import SkyCoord

    from cubecut.cutout import cutout_box, ffi_wcs, fill_box, load_index, read_chunks, tpf_bytes
    from cubecut.storage import FileSource, Location

    index = load_index(cube_path)
    wcs = ffi_wcs(index)
    targets = [SkyCoord(ra, dec, unit="deg") for ra, dec in coords]
    out = {}
    work = {}
    for size in (10, 11):
        boxes = [cutout_box(wcs, coord, size) for coord in targets]
        work[size] = boxes, read_chunks(FileSource(Location.parse(cube_path)), index, boxes)
    for _round in ("warm", "timed"):  # the first round fills the per-cube template and the caches
        for size, (boxes, chunks) in work.items():
            start = time.process_time()
            for box, coord in zip(boxes, targets):
                tpf_bytes(index, box, lambda f, e, box=box, chunks=chunks: fill_box(index, box, chunks, f, e), coord)
            out[f"{size}x{size}"] = (time.process_time() - start) / len(boxes) * 1e3
    return out


def _cpu() -> tuple[float, float]:
    """(user, system) CPU seconds of this process and its finished children."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + kids.ru_utime, own.ru_stime + kids.ru_stime


def _servers_cpu(pids: list[int]) -> float:
    """CPU seconds (user + system) the server processes ``pids`` have used so far."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / os.sysconf("SC_CLK_TCK")


def run_child(job: dict, env: dict, shaper: servers.Shaper, servers_pids: list[int], store: Path) -> dict:
    """Run ``job`` in a fresh process; its result with the servers' CPU and the cube reads."""
    folder = store / job["out"][5:] if job["out"].startswith("s3://") else Path(job["out"])  # s3rver's files
    shutil.rmtree(folder, ignore_errors=True)
    shaper.reset()
    before = _servers_cpu(servers_pids)
    proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(job)], env=env, capture_output=True,
                          text=True)
    servers_cpu = _servers_cpu(servers_pids) - before
    shutil.rmtree(folder, ignore_errors=True)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            result = json.loads(line[7:])
            stats = shaper.stats()
            puts = stats["by_method"].get("PUT", 0)  # uploads of the S3-output run; requests are the reads
            result.update(requests=stats["requests"] - puts, puts=puts, bytes_read=stats["body_bytes"],
                          servers_cpu_s=servers_cpu)
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
    x = rng.uniform(SCIENCE_COLS[0], min(SCIENCE_COLS[1], index.ncols) - 1, n)
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


def batch_memory_mb(template: Path = HERE.parent / "template.yaml") -> int:
    """The bulk worker's Lambda memory size, as template.yaml sets it."""
    text = template.read_text()
    block = text[text.index("  BulkBatchFunction:"):]
    return int(re.search(r"^      MemorySize: (\d+)", block, re.M).group(1))


def lambda_model(build_cpu_s: float, write_cpu_s: float, measured_frames: int, plan_s_per_target: float,
                 frames: int = 1300) -> dict:
    """A full sector on Lambda: 16 cubes of ``frames`` frames, 20,000 targets of 11x11, MaxConcurrency 200.

    ``build_cpu_s``: CPU per TPF of reading and building (the 1-worker run without writes),
    ``write_cpu_s``: CPU per TPF of uploading it (the 1-worker run with TPFs to S3, minus that),
    both at ``measured_frames`` frames and scaled by frames (both grow with the TPF's bytes).
    """
    from cubecut.bulk.plan import TILE_PIXEL_FRAMES

    targets, ccds, concurrency = 20_000, 16, 200
    # Job settings an operator would pick for one wave: CUBECUT_BULK_TILE_TARGETS so that the
    # tiles (one partial tile a cube) fit MaxConcurrency, and BulkTilesPerBatch = 1; a tile
    # also holds at most TILE_PIXEL_FRAMES (more waves on long cubes).
    tile_targets = min(-(-targets // (concurrency - ccds)), TILE_PIXEL_FRAMES // (11 * 11 * frames))
    tiles = -(-targets // tile_targets) + ccds
    scale = frames / measured_frames
    tpf_bytes = 11 * 11 * frames * 4 * 5 + frames * 100  # five image columns + the small ones, ~
    box_bytes = 11 * 11 * frames * 8  # flux + error of one box: ~1,250 targets a CCD barely overlap
    memory_mb = batch_memory_mb()
    a = {"frames": frames, "targets": targets, "cubes": ccds, "max_concurrency": concurrency,
         "tile_targets": tile_targets, "tiles_per_batch": 1, "lambda_memory_mb": memory_mb,
         "lambda_arch": "arm64, one vCPU at 1769 MB, assumed as fast as one core of this machine",
         "s3_MBps_per_worker": 100.0, "s3_request_latency_s": 0.030, "reads_in_flight": 32,
         "child_start_s": 0.5, "finish_s": 5.0,
         "prices_usd": {"lambda_gb_s": 0.0000133334, "lambda_request": 0.2e-6, "sfn_transition": 0.000025,
                        "s3_get": 0.0004e-3, "s3_put": 0.005e-3},
         "region": "us-east-1", "data_transfer": "none (same region)"}
    prices = a["prices_usd"]
    out: dict = {"assumptions": a}
    for label, build, write, shards in (("measured", build_cpu_s, write_cpu_s, False),
                                        ("measured, shards", build_cpu_s, write_cpu_s, True),
                                        ("target 150 TPFs per CPU-s", 1 / 150 * measured_frames / 1000, 0.0,
                                         False)):  # the target is at 1,000 frames
        cpu = (build + write) * scale
        # A worker reads its tile's spans (one GET per box row, reads_in_flight at a time), then
        # builds while it uploads (8 upload threads): the longer of CPU and upload time.
        gets = tile_targets * 11
        read_s = gets / a["reads_in_flight"] * a["s3_request_latency_s"] + tile_targets * box_bytes / (
            a["s3_MBps_per_worker"] * 1e6)
        upload_s = tile_targets * tpf_bytes / (a["s3_MBps_per_worker"] * 1e6)
        batch_s = a["child_start_s"] + read_s + max(tile_targets * cpu, upload_s)
        waves = -(-tiles // concurrency)
        plan_s = plan_s_per_target * targets
        wall = plan_s + waves * batch_s + a["finish_s"]
        gb_s = (tiles * (batch_s - a["child_start_s"]) + plan_s + a["finish_s"]) * memory_mb / 1024
        transitions = 6 + tiles * 3
        puts = (2 * tiles if shards else targets) + tiles  # a shard and its index, or a TPF each; + parts
        cost = {"lambda": gb_s * prices["lambda_gb_s"] + (tiles + 2) * prices["lambda_request"],
                "step_functions": transitions * prices["sfn_transition"],
                "s3_get": targets * 11 * prices["s3_get"], "s3_put": puts * prices["s3_put"]}
        out[label] = {"tpf_cpu_s": cpu, "batches": tiles, "waves": waves, "read_s": read_s, "upload_s": upload_s,
                      "batch_s": batch_s, "wall_s": wall, "lambda_gb_s": gb_s, "cost_usd": sum(cost.values()),
                      "cost_split_usd": cost, "s3_puts": puts, "s3_gets": targets * 11,
                      "tpf_output_gb": targets * tpf_bytes / 1e9, "bytes_read_gb": targets * box_bytes / 1e9}
    return out


def report(sections: dict) -> str:
    """bulk.md: every cube's section, each with its run's stamp."""
    lines = ["# Bulk cutouts benchmark", ""]
    for name, results in sections["sections"].items():
        lines += [f"## {name}: {results['cube']['nt']:,} frames{' (quick)' if results['quick'] else ''}", "",
                  stamp.markdown({f"bulk.py, {name}": results["stamp"]}), report_section(results)]
    return "\n".join(lines)


def report_section(results: dict) -> str:
    """One cube's runs and model."""
    cpus = results["stamp"]["machine"]["cpus"]
    lines = [
             f"{results['targets']:,} targets of {SIZE}x{SIZE} on one cube of {results['cube']['nt']:,} frames x "
             f"{results['cube']['nrows']} rows x {results['cube']['ncols']:,} columns "
             f"({results['cube']['bytes'] / 1e9:.1f} GB) on s3rver through the counting proxy, no added latency; "
             f"TPFs to local disk (ext4) with O_DIRECT unless said otherwise. Union of "
             f"needed row spans: {results['union_bytes'] / 1e9:.2f} GB.", "",
             f"TPFs/s per core = TPFs/s by wall / min(workers, {cpus} CPUs). CPU s = the contender's user + system "
             "time; servers CPU s = s3rver's and the counting proxy's, which run on the same cores (so the "
             "wall figures carry them, and the per-CPU-s figures do not).", "",
             "| contender | targets run | wall s | CPU s (user + sys) | servers CPU s | TPFs/s (wall) | TPFs/s per "
             "core (wall) | TPFs per CPU-s | projected wall for all targets | requests | bytes read / union | "
             "load before, after |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results["runs"]:
        projected = r["wall_s"] / r["tpfs"] * results["targets"] if r["tpfs"] else float("nan")
        if r.get("cube_local"):
            ratio, requests = "(local file)", "(local file)"
        elif r["tool"] == "bulk":  # its own catalog's union
            union = results["sample_union_bytes"] if r["sample"] else results["union_bytes"]
            ratio, requests = f"{r['bytes_read'] / union:.3f}", f"{r['requests']:,}"
        else:  # a target at a time: its bytes per target x all targets, against the whole union
            ratio = f"{r['bytes_read'] / max(1, r['tpfs']) * results['targets'] / results['union_bytes']:.3f} (x N)"
            requests = f"{r['requests']:,}"
        if r.get("puts"):
            requests += f" + {r['puts']:,} PUTs"
        rate = r["tpfs"] / r["wall_s"]
        cpu = (f"{r['cpu_s']:.1f} ({r['user_s']:.1f} + {r['sys_s']:.1f})" if "sys_s" in r else f"{r['cpu_s']:.1f}")
        lines.append(f"| {r['label']} | {r['tpfs']:,} | {r['wall_s']:.1f} | {cpu} | "
                     f"{r.get('servers_cpu_s', float('nan')):.1f} | {rate:.1f} | "
                     f"{rate / min(r.get('workers', 1), cpus):.1f} | {r['tpfs'] / r['cpu_s']:.1f} | "
                     f"{projected:,.0f} s | {requests} | {ratio} | "
                     f"{r.get('load_before', float('nan')):.2f}, {r.get('load_after', float('nan')):.2f} |")
    by = {r["label"]: r for r in results["runs"]}
    others = [r for r in results["runs"] if r["tool"] != "bulk"]
    if "cubecut bulk, 1 worker" in by and others:
        bulk = by["cubecut bulk, 1 worker"]
        lines += ["", "Per target and per CPU-second, bulk with one worker against (same run): " + ", ".join(
            f"{r['label']} {(r['cpu_s'] / r['tpfs']) / (bulk['cpu_s'] / bulk['tpfs']):.1f}x the CPU and "
            f"{(r['wall_s'] / r['tpfs']) / (bulk['wall_s'] / bulk['tpfs']):.1f}x the wall time"
            for r in others) + "."]
    split = cpu_split(results)
    if split:
        lines += ["", f"CPU per TPF of the 1-worker runs (11x11 x {results['cube']['nt']:,} frames, a "
                  f"{split['tpf_mb']:.2f} MB file): {split['build_ms']:.2f} ms reading and building "
                  f"({1e3 / split['build_ms']:.0f} TPFs per CPU-second), plus writing it: "
                  + ", ".join(f"{how} {ms:.2f} ms" for how, ms in split["write_ms"].items())
                  + f". The sample's 1-worker run made {split['gets_per_target']:.1f} range GETs a target; "
                  "the whole catalog's boxes share more rows (see requests above)."]
    kernel = kernel_ms(results)
    if kernel:
        lines += ["", "Kernel (system) CPU per TPF write, ms (system time of a run minus that of the same run "
                  "without writes, per TPF): " + "; ".join(f"{label} {ms:.2f}" for label, ms in kernel.items())
                  + "."]
    if "writer_cpu_ms" in results:
        w = results["writer_cpu_ms"]
        lines += ["", f"TPF writer alone (`tpf_bytes`, pixels already read, {results['cube']['nt']:,} frames): "
                  + ", ".join(f"{size} {ms:.2f} ms CPU per TPF" for size, ms in w.items()) + "."]
    lines.append("")
    if "model" not in results:
        return "\n".join(lines) + "\n"
    m = results["model"]
    a = m["assumptions"]
    lines += ["### Lambda model: a full sector", "",
              f"{a['targets']:,} targets of 11x11 over {a['cubes']} cubes of {a['frames']:,} frames, MaxConcurrency "
              f"{a['max_concurrency']}, tiles of {a['tile_targets']} targets (CUBECUT_BULK_TILE_TARGETS for one wave), "
              f"one tile per worker (BulkTilesPerBatch 1), Lambda {a['lambda_memory_mb']} MB (template.yaml; "
              f"{a['lambda_arch']}). Per worker: {a['child_start_s']} s to start its child execution, one S3 GET per "
              f"box row, {a['reads_in_flight']} in flight, {a['s3_request_latency_s'] * 1e3:.0f} ms each, "
              f"{a['s3_MBps_per_worker']:.0f} MB/s for reads and for uploads, uploads overlapped with building; "
              f"plan CPU as measured here; {a['finish_s']} s to finish. Per-TPF CPU: the 1-worker runs' (reading "
              f"and building + the client's CPU of uploading it to the S3 server, plain HTTP: TLS would add to it) "
              f"scaled by frames to {a['frames']:,}. Prices {a['region']}: Lambda "
              f"${a['prices_usd']['lambda_gb_s']} per GB-s and ${a['prices_usd']['lambda_request'] * 1e6:.2f} per "
              f"million requests, Step Functions standard ${a['prices_usd']['sfn_transition'] * 1e3:.3f} per 1,000 "
              f"transitions, S3 ${a['prices_usd']['s3_get'] * 1e3:.4f} per 1,000 GETs and "
              f"${a['prices_usd']['s3_put'] * 1e3:.3f} per 1,000 PUTs; data transfer {a['data_transfer']}.", "",
              "| case | per TPF CPU s | workers | waves | read s | upload s | s a worker | wall s | Lambda GB-s "
              "| S3 PUTs | cost USD | TPF output GB |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for label in [k for k in m if k != "assumptions"]:
        r = m[label]
        lines.append(f"| {label} | {r['tpf_cpu_s']:.4f} | {r['batches']} | {r['waves']} | {r['read_s']:.1f} | "
                     f"{r['upload_s']:.1f} | {r['batch_s']:.1f} | {r['wall_s']:.0f} | {r['lambda_gb_s']:,.0f} | "
                     f"{r['s3_puts']:,} | {r['cost_usd']:.2f} | {r['tpf_output_gb']:.0f} |")
    return "\n".join(lines) + "\n"


def cpu_split(results: dict) -> dict | None:
    """CPU ms per TPF of the 1-worker runs: reading + building (no writes), and each way of
    writing (the run with it minus that)."""
    by = {r["label"]: r for r in results["runs"]}
    bare = by.get("cubecut bulk, 1 worker, TPFs not written")
    if bare is None or "cubecut bulk, 1 worker" not in by:
        return None
    build = bare["cpu_s"] / bare["tpfs"] * 1e3
    ways = {"O_DIRECT to local disk": "cubecut bulk, 1 worker",
            "buffered to local disk": "cubecut bulk, 1 worker, buffered writes",
            S3_WRITE: "cubecut bulk, 1 worker, TPFs to S3"}
    write = {how: max(0.0, by[label]["cpu_s"] / by[label]["tpfs"] * 1e3 - build)
             for how, label in ways.items() if label in by}
    one = by["cubecut bulk, 1 worker"]
    return {"build_ms": build, "write_ms": write, "tpf_mb": one["out_bytes"] / max(1, one["tpfs"]) / 1e6,
            "gets_per_target": one["requests"] / max(1, one["tpfs"])}


def kernel_ms(results: dict) -> dict[str, float]:
    """System CPU ms per TPF of each way of writing, against the same run without writes."""
    by = {r["label"]: r for r in results["runs"]}
    out = {}
    for workers in ("1 worker", "2 workers"):
        bare = by.get(f"cubecut bulk, {workers}, TPFs not written")
        for label in (f"cubecut bulk, {workers}", f"cubecut bulk, {workers}, buffered writes"):
            if bare and label in by and "sys_s" in by[label] and "sys_s" in bare:
                how = "buffered" if "buffered" in label else "O_DIRECT"
                out[f"{how}, {workers}"] = (by[label]["sys_s"] / by[label]["tpfs"]
                                            - bare["sys_s"] / bare["tpfs"]) * 1e3
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="the small s0001-q cube and 1,000 targets")
    parser.add_argument("--cadence", choices=CADENCES, default="30-min",
                        help="30-min: s0001 (1,000 frames); 200-s: s0056 (11,700 frames)")
    parser.add_argument("--targets", type=int, default=None,
                        help="targets (default 10,000; quick 1,000; 200-s 300)")
    parser.add_argument("--only", nargs="*", help="run only the contenders whose label contains one of these")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print("RESULT " + json.dumps(child(json.loads(args.child))), flush=True)
        return 0
    long_cube = args.cadence == "200-s"
    spec = data.CADENCE_200S if long_cube else (data.QUICK if args.quick else data.FULL)["s0001"]
    cube_path = data.cube(spec)
    key = f"tess/public/mast/{spec.cube_name}"
    ntargets = args.targets or (300 if long_cube else 1000 if args.quick else 10_000)
    samples = {"bulk1": min(500, ntargets // (3 if long_cube else 10)), "cubecut": min(200, ntargets // 10),
               "astrocut": min(50, ntargets // 20),
               "writer": 20 if long_cube else 200}  # the writer holds its boxes' pixels: 11 MB each at 11,700
    run = stamp.begin()
    from cubecut.cube.index import CubeIndex
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
    store = OUT / "s3store"  # this benchmark's own s3rver: its uploads are removed after each run
    s3 = servers.S3rver(store)
    shaper = servers.Shaper(s3.port)
    try:
        etag = s3.place(BUCKET, key, cube_path)
        side = CubeIndex.from_json(Path(f"{cube_path}.index.json").read_bytes())
        side.cube_etag = etag
        s3.put_bytes(BUCKET, key + ".index.json", side.to_json())
        env = servers.s3_env(shaper.endpoint)
        pids = [s3.proc.pid, shaper.proc.pid]
        url = f"s3://{BUCKET}/{key}"
        sample_job = {"tool": "bulk", "catalog": str(sample), "workers": 1, "sample": True}
        all_job = {"tool": "bulk", "catalog": str(catalog), "sample": False}
        jobs = [  # samples first, then the whole catalog; results are saved after each
            {**sample_job, "label": "cubecut bulk, 1 worker"},
            {**sample_job, "label": "cubecut bulk, 1 worker, buffered writes", "writer": "buffered"},
            {**sample_job, "label": "cubecut bulk, 1 worker, TPFs not written", "writer": "none"},
            {**sample_job, "label": "cubecut bulk, 1 worker, TPFs to S3", "out": "s3://cubecut-bench/bulk-out"},
            {**sample_job, "label": "cubecut bulk, 1 worker, shards", "shards": True},
            {"label": "cubecut per target", "tool": "cubecut", "targets": coords[:samples["cubecut"]],
             "sample": True},
            {"label": "astrocut loop", "tool": "astrocut", "targets": coords[:samples["astrocut"]], "sample": True},
            {**all_job, "label": "cubecut bulk, 2 workers", "workers": 2},
            {**all_job, "label": "cubecut bulk, 2 workers, buffered writes", "workers": 2, "writer": "buffered"},
            {**all_job, "label": "cubecut bulk, 2 workers, TPFs not written", "workers": 2, "writer": "none"},
            {**all_job, "label": "cubecut bulk, 3 workers", "workers": 3},
            {**all_job, "label": "cubecut bulk, 2 workers, cube on local disk", "workers": 2,
             "cube": str(cube_path)},
        ]
        if long_cube:  # 28 MB TPFs: what bulk does at this depth, without the per-target loops
            jobs = [job for job in jobs if job["label"] in LONG_CUBE_RUNS]
        jobs = [job for job in jobs if not args.only or any(o in job["label"] for o in args.only)]
        results = {"stamp": run, "quick": args.quick, "targets": ntargets, "union_bytes": union,
                   "cube": {"nt": index.nt, "nrows": index.nrows, "ncols": index.ncols, "bytes": index.cube_size},
                   "sample_union_bytes": sample_union, "plan_cpu_s_per_target": plan_s_per_target, "runs": []}
        runs = results["runs"]
        log("  TPF writer alone ...")
        results["writer_cpu_ms"] = run_child({"label": "TPF writer", "tool": "writer", "cube_path": str(cube_path),
                                              "targets": coords[:samples["writer"]], "out": str(OUT / "writer")},
                                             env, shaper, pids, store)["writer_cpu_ms"]
        log(f"    {results['writer_cpu_ms']}")
        for job in jobs:
            job.setdefault("cube", url)
            job.setdefault("out", str(OUT / job["tool"]))
            load = os.getloadavg()[0]
            log(f"  {job['label']} ... (load {load:.2f})")
            result = run_child(job, env, shaper, pids, store)
            result.update(label=job["label"], sample=job["sample"], tool=job["tool"],
                          workers=job.get("workers", 1), load_before=load, load_after=os.getloadavg()[0],
                          cube_local=not job["cube"].startswith("s3://"))
            runs.append(result)
            save(spec.name, results)
            log(f"    {result['tpfs']} TPFs in {result['wall_s']:.1f} s wall, {result['cpu_s']:.1f} s CPU, "
                f"{result['requests']} requests, {result['bytes_read'] / 1e9:.2f} GB")
    finally:
        shaper.stop()
        s3.stop()
        shutil.rmtree(store, ignore_errors=True)
    split = cpu_split(results)
    results["cpu_split_ms"] = split
    if split and S3_WRITE in split["write_ms"]:
        results["model"] = lambda_model(split["build_ms"] / 1e3, split["write_ms"][S3_WRITE] / 1e3, index.nt,
                                        plan_s_per_target, frames=11_700 if long_cube else 1300)
    print(save(spec.name, results))
    return 0


def save(cube: str, results: dict) -> str:
    """Make ``results`` the section of ``cube`` in bulk.json/md (other cubes' sections kept);
    returns the report."""
    stamp.end(results["stamp"])
    sections = stamp.load("bulk") if (stamp.RESULTS / "bulk.json").exists() else {"sections": {}}
    sections["sections"][cube] = results
    return stamp.save("bulk", sections, report)


if __name__ == "__main__":
    sys.exit(main())
