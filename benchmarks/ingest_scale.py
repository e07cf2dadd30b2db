"""Ingest at real size without the disk: 30-min, 10-min and 200-s sectors of full FFIs.

    .venv/bin/python benchmarks/ingest_scale.py [--cadences 30-min 10-min 200-s]

Per cadence, ``synthserver.py`` serves 1,300 / 3,900 / 11,700 full-size (2078 x 2136, flux +
error) SPOC FFIs that it makes up on request, spread over 27 day prefixes as MAST lays a
sector out. This process plans the cube from their headers (timed; the plan is staged on
the server as the PlanFunction stages it), then runs a sample of real blocks (first,
middle, last), each in a fresh worker process running ``write_block`` exactly as the
BlockFunction does: range GETs of every FFI, the transposition, the UploadPart. The server
compares every part with the bytes the cube must hold as it streams in and keeps nothing.
Per block: worker CPU (process time), wall, peak memory (VmHWM) over the process's before
the block, requests and bytes. Then the sector is extrapolated on Lambda
(:mod:`cubecut.ingest.sizing`'s assumptions, with the measured CPU in place of its assumed
transposition rate). Results: ``results/ingest-scale.json`` and ``.md``, stamped with
commit, command, machine and load.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from stamp import save

HERE = Path(__file__).resolve().parent
CADENCES = {"30-min": (20, 1_300), "10-min": (30, 3_900), "200-s": (56, 11_700)}  # sector, frames
CUBE = "s3://stpubdata/cubes/"
CUBES_PER_SECTOR = 16


def vm(field: str) -> int:
    """A /proc/self/status field in bytes (VmHWM, VmRSS)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


def worker(plan_url: str, block: int) -> None:
    """One block as the BlockFunction runs it; prints its measurements as JSON."""
    from cubecut.ingest.transpose import write_block
    from cubecut.ingest.plan import IngestPlan
    from cubecut.storage import ReadStats

    plan = IngestPlan.load(plan_url)
    base = vm("VmHWM")
    stats = ReadStats()
    wall, cpu = time.perf_counter(), time.process_time()
    receipt = write_block(plan, block, stats=stats)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(json.dumps({"block": block, "part_bytes": receipt.size, "rows": plan.blocks[block].row1
                      - plan.blocks[block].row0, "cpu_s": cpu, "wall_s": wall, "base_rss": base,
                      "peak_rss": vm("VmHWM"), "requests": stats.requests, "bytes": stats.bytes}))


def server_stats(port: int, path: str = "/_stats", method: str = "GET") -> dict:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method)
    with urllib.request.urlopen(request) as response:
        body = response.read()
    return json.loads(body) if body else {}


def corrupted_part_is_refused(port: int, plan_url: str) -> bool:
    """The sink's own check: a part with one byte changed is answered BadDigest."""
    from cubecut.ingest.transpose import build_part
    from cubecut.ingest.plan import IngestPlan
    from cubecut.storage import Location, s3_client

    plan = IngestPlan.load(plan_url)
    block = plan.blocks[-1]
    part = build_part(plan, block)
    part[len(part) // 2] ^= 1
    cube = Location.parse(plan.cube)
    try:
        s3_client().upload_part(Bucket=cube.bucket, Key=cube.key, UploadId=plan.upload_id, PartNumber=block.part,
                                Body=part)
    except Exception as exc:  # noqa: BLE001 - any refusal counts; what matters is that it is one
        return "BadDigest" in str(exc)
    return False


def run_cadence(name: str, sector: int, frames: int) -> dict:
    from cubecut.ingest import sizing
    from cubecut.ingest.plan import draft_plan, stage_plan
    from cubecut.storage import Location, ReadStats

    started = time.perf_counter()
    server = subprocess.Popen([sys.executable, str(HERE / "synthserver.py"), "--sector", str(sector), "--frames",
                               str(frames)], stdout=subprocess.PIPE, text=True)
    try:
        info = json.loads(server.stdout.readline())  # type: ignore[union-attr]
        serve_s = time.perf_counter() - started
        port = info["port"]
        os.environ["AWS_ENDPOINT_URL"] = f"http://127.0.0.1:{port}"

        stats = ReadStats()
        wall, cpu = time.perf_counter(), time.process_time()
        draft = draft_plan(info["ffis"], stats=stats)
        plan_wall, plan_cpu = time.perf_counter() - wall, time.process_time() - cpu
        model = sizing.draft_model(draft, stats, CUBE + f"tess-s{sector:04d}-1-1-cube.fits")
        plan = stage_plan(Location.parse(CUBE + f"tess-s{sector:04d}-1-1-cube.fits"), draft, None)
        del draft
        server_stats(port, "/_reset", "POST")

        samples = sorted({0, len(plan.blocks) // 2, len(plan.blocks) - 1})
        blocks = []
        for index in samples:
            done = subprocess.run([sys.executable, __file__, "--worker", plan.plan_url, str(index)],
                                  capture_output=True, text=True, env=os.environ, check=True)
            blocks.append(json.loads(done.stdout.strip().splitlines()[-1]))
        served = server_stats(port)
        refused = corrupted_part_is_refused(port, plan.plan_url)
    finally:
        server.terminate()
        server.wait()
    return {"cadence": name, "sector": sector, "frames": frames, "server_start_s": round(serve_s, 1),
            "plan": {"wall_s": plan_wall, "cpu_s": plan_cpu, "cpu_s_per_ffi": plan_cpu / frames,
                     "requests": stats.requests, "bytes": stats.bytes, "plan_json_bytes": len(plan.to_json())},
            "plan_only": model, "blocks": blocks,
            "server": {"requests": served["requests"], "bytes_out": served["bytes_out"],
                       "parts": served["parts"], "prefixes_read": len(served["prefix_gets"]),
                       "gets_per_prefix_max": max(served["prefix_gets"].values())},
            "all_parts_identical": all(p["ok"] for p in served["parts"]) and len(served["parts"]) == len(samples),
            "corrupted_part_refused": refused}


def extrapolate(result: dict) -> dict:
    """The cube and the sector (16 cubes) on Lambda, with the measured CPU per block."""
    from cubecut.ingest import sizing

    figures, run = result["plan_only"], result["plan_only"]["model"]
    middle = result["blocks"][len(result["blocks"]) // 2]
    cpu_per_byte = middle["cpu_s"] / middle["part_bytes"]
    gets = figures["frames"] * figures["planes"]
    waves_of_reads = math.ceil(gets / figures["reads_in_flight"])
    part = figures["part_bytes_max"]
    t_block = waves_of_reads * sizing.FIRST_BYTE_S + 2 * part / sizing.NETWORK_BYTES_S + part * cpu_per_byte
    plan_s = (result["plan"]["cpu_s_per_ffi"] * figures["frames"] * max(1.0, 1769 / sizing.PLAN_MEMORY_MB)
              + math.ceil(figures["header_requests"] / sizing.PLAN_THREADS) * sizing.FIRST_BYTE_S)
    parts = figures["parts"]
    gb_s_block = t_block * sizing.BLOCK_MEMORY_MB / 1024
    lambda_usd = ((parts * gb_s_block + (plan_s + sizing.FINALIZE_S) * sizing.PLAN_MEMORY_MB / 1024)
                  * sizing.LAMBDA_GB_SECOND_USD + (parts + 2) * sizing.LAMBDA_REQUEST_USD)
    cube_usd = lambda_usd + run["cost_usd"]["s3_get"] + run["cost_usd"]["s3_put"] + run["cost_usd"]["step_functions"]
    waves = math.ceil(parts / min(parts, run["concurrency"]))
    sector_waves = math.ceil(CUBES_PER_SECTOR * parts / run["concurrency"])
    peak = max(b["peak_rss"] for b in result["blocks"])
    return {"cpu_bytes_per_s": 1 / cpu_per_byte, "block_s": t_block, "plan_s": plan_s,
            "cube_wall_s": plan_s + waves * t_block + sizing.FINALIZE_S,
            "sector_wall_s": plan_s + sector_waves * t_block + sizing.FINALIZE_S,
            "cube_usd": cube_usd, "lambda_usd": lambda_usd, "s3_get_usd": run["cost_usd"]["s3_get"],
            "sector_usd": CUBES_PER_SECTOR * cube_usd, "peak_rss": peak,
            "model_worker_memory_bytes": figures["worker_memory_bytes"]}


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith(("model name", "Model"))), platform.processor())
    memory = next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                  if line.startswith("MemTotal"))
    return {"platform": platform.platform(), "cpu": cpu, "cpus": os.cpu_count(), "memory_gb": int(memory) / 2**20,
            "python": platform.python_version()}


def stamp(argv: list[str]) -> dict:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=HERE).stdout
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True,
                           cwd=HERE).stdout.strip()
    return {"commit": commit.strip() + ("+uncommitted" if dirty else ""), "command": " ".join(argv),
            "started": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"), "machine": machine(),
            "load_before": os.getloadavg()}


def markdown(report: dict) -> str:
    from cubecut.ingest import sizing

    s = report["stamp"]
    lines = [f"# Ingest at real size ({s['started']}, commit {s['commit']})", "",
             f"`{s['command']}` on {s['machine']['cpu']} x {s['machine']['cpus']}, "
             f"{s['machine']['memory_gb']:.0f} GB; load average {s['load_before'][0]:.1f} before, "
             f"{report['load_after'][0]:.1f} after. Full-size 2078 x 2136 SPOC FFIs (flux + error) made up by "
             "`synthserver.py` over 27 day prefixes; sampled blocks run by `write_block` in fresh worker "
             "processes; every part checked byte for byte by the server as it arrived.", "",
             "| cadence | frames | cube GB | parts x rows | part MiB (max) | GETs per cube | GET bytes | "
             "GET $ | worker peak MiB (model) | block CPU s | block wall s (here) | requests / block | "
             "plan CPU ms/FFI |", "|" + "---|" * 13]
    for r in report["cadences"]:
        f, x = r["plan_only"], r["lambda"]
        middle = r["blocks"][len(r["blocks"]) // 2]
        lines.append(
            f"| {r['cadence']} | {r['frames']:,} | {f['cube_bytes'] / 1e9:.0f} | {f['parts']} x {f['rows_per_part']} "
            f"| {f['part_bytes_max'] / 2**20:,.0f} | {f['get_requests'] / 1e6:.2f} M | {f['get_bytes'] / 1e9:.0f} GB | "
            f"{f['model']['cost_usd']['s3_get']:.2f} | {(x['peak_rss'] - middle['base_rss']) / 2**20:,.0f} "
            f"({f['worker_memory_bytes'] / 2**20:,.0f}) | {middle['cpu_s']:.1f} | {middle['wall_s']:.1f} | "
            f"{middle['requests']:,} | {1000 * r['plan']['cpu_s_per_ffi']:.1f} |")
    lines += ["", "Extrapolated on Lambda (MaxConcurrency "
              f"{sizing.DEPLOYED_CONCURRENCY}, {sizing.BLOCK_MEMORY_MB} MB block workers; a sector = "
              f"{CUBES_PER_SECTOR} cubes sharing the {sizing.DEPLOYED_CONCURRENCY} workers):", "",
              "| cadence | block s | plan s | cube wall | cube $ (Lambda + S3 GET) | sector wall | sector $ | "
              "GETs per prefix per s | `--plan-only` wall / $ |", "|" + "---|" * 9]
    for r in report["cadences"]:
        x, m = r["lambda"], r["plan_only"]["model"]
        lines.append(
            f"| {r['cadence']} | {x['block_s']:.0f} | {x['plan_s']:.0f} | {x['cube_wall_s'] / 60:.1f} min | "
            f"{x['cube_usd']:.2f} ({x['lambda_usd']:.2f} + {x['s3_get_usd']:.2f}) | {x['sector_wall_s'] / 60:.1f} min | "
            f"{x['sector_usd']:.2f} | {m['get_rate_per_prefix']:,} | {m['lambda_wall_seconds'] / 60:.1f} min / "
            f"{m['cost_usd']['total']:.2f} |")
    lines += ["", "Checks: every sampled part byte-identical "
              + ", ".join(f"{r['cadence']} {'yes' if r['all_parts_identical'] else 'NO'}" for r in report["cadences"])
              + "; a part with one byte changed refused "
              + ", ".join(f"{r['cadence']} {'yes' if r['corrupted_part_refused'] else 'NO'}"
                          for r in report["cadences"]) + ".", "",
              "Assumptions (cubecut.ingest.sizing, docs/ingest-at-scale.md): S3 first byte "
              f"{sizing.FIRST_BYTE_S * 1000:.0f} ms, {sizing.NETWORK_BYTES_S / 1e6:.0f} MB/s per worker for reads "
              "and again for the upload, not overlapped with each other or the CPU; block CPU as measured here "
              "(one core of this machine = one Lambda vCPU); plan CPU as measured here, scaled by "
              f"1769 / {sizing.PLAN_MEMORY_MB} MB (the PlanFunction's vCPU share); finalize {sizing.FINALIZE_S:.0f} s; "
              "S3 5,500 GET/s per prefix, 27 day prefixes; prices us-east-1 arm64 (Lambda "
              f"${sizing.LAMBDA_GB_SECOND_USD} per GB-s, S3 $0.0004 per 1,000 GETs, $0.005 per 1,000 PUTs)."]
    return "\n".join(lines) + "\n"


def unsigned_environment() -> None:
    """Drop AWS credentials from the environment: requests go unsigned, as over https no
    payload is hashed."""
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        os.environ.pop(key, None)
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cadences", nargs="+", choices=CADENCES, default=list(CADENCES))
    parser.add_argument("--worker", nargs=2, metavar=("PLAN", "BLOCK"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    unsigned_environment()
    if args.worker:
        worker(args.worker[0], int(args.worker[1]))
        return 0
    report: dict = {"stamp": stamp(sys.argv), "cadences": []}
    for name in args.cadences:
        result = run_cadence(name, *CADENCES[name])
        result["lambda"] = extrapolate(result)
        report["cadences"].append(result)
        print(json.dumps({k: result[k] for k in ("cadence", "lambda", "all_parts_identical")}), flush=True)
    report["load_after"] = os.getloadavg()
    print(save("ingest-scale", report, markdown))
    return 0


if __name__ == "__main__":
    sys.exit(main())
