"""The TESScut route end to end (issue 17): one ``astrocut`` request through the API handler,
peak memory and wall, this tree beside an earlier revision.

    python benchmarks/route.py [--before REV] [--rounds 2] [--sizes 30 100]

Each run is a fresh interpreter (the API handler of this tree, or of ``--before``, default
e10eeff: the zip built in memory and PUT whole) that first answers a 3x3 request (astropy,
the engine and the cube's index load; not timed), then resets its peak RSS
(``/proc/self/clear_refs``) and answers the measured request: a 30x30 or 100x100 cutout of
the benchmark's s0001 cube (1,000 frames), a cache miss (fresh results prefix), delivered as
a 303 to the stored zip. Recorded: wall and CPU seconds of the handler call, RSS before it
and the peak during it (VmHWM), the zip's size, the Server-Timing split (cut = index +
rows + TPF bytes per cube; the rest is zip + deliver). Runs are interleaved (before, after,
per size and round) so load changes hit both alike. A third process per size and round cuts
the same cutout alone with ``cutout_files`` after the same warm-up: the engine's own peak,
the floor under the route's.

Data and servers as limit.py: the cube on s3rver behind the shaper at 30 ms first byte,
100 MB/s per connection. Results: benchmarks/results/route.json and route.md.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
#: This tree's packages (cubecut, cubecut_app, cubecut_functions, cubecut_infra) for PYTHONPATH.
ROOT_SHIM = HERE.parent / ".shim"
sys.path.insert(0, str(HERE))

import data  # noqa: E402 - after the path insert
import servers  # noqa: E402
import stamp  # noqa: E402
from data import log  # noqa: E402
from imports import checkout  # noqa: E402
from limit import with_template  # noqa: E402
from run import MAST_KEY, REALISTIC, publish_cubes, radec  # noqa: E402

#: Runs in the fresh interpreter: a warm-up request, then the measured one.
PROBE = r"""
import json, os, sys, time
from urllib.parse import urlparse

def status(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024

import cubecut_functions.api as api
from cubecut_infra.local.apigw import build_event
from cubecut_infra.local.lambda_context import LambdaContext

context = LambdaContext.for_arn("arn:aws:lambda:us-east-1:123456789012:function:route", memory_mb=3008,
                                timeout_seconds=29)

def request(ra, dec, size):
    event = build_event(method="GET", target=f"/tesscut/api/v0.1/astrocut?ra={ra}&dec={dec}&x={size}&y={size}",
                        protocol="HTTP/1.1", headers=[("host", "bench")], body=b"", source_ip="127.0.0.1")
    return api.handler(event, context)

def reset_peak():
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")  # VmHWM := the current RSS

mode, warm_ra, warm_dec, ra, dec, size = sys.argv[1:7]
assert request(warm_ra, warm_dec, 3)["statusCode"] in (200, 303)
rss_before = status("VmRSS")
if mode == "cut":  # the cut alone (index + rows + TPF bytes, nothing zipped or stored)
    from cubecut.cutout.engine import cutout_files
    reset_peak()
    wall = time.perf_counter()
    (tpf,) = cutout_files(os.environ["CUBE_URL"], f"{ra} {dec}", int(size))
    print(json.dumps({"wall_s": time.perf_counter() - wall, "rss_before_mb": rss_before,
                      "peak_rss_mb": status("VmHWM"), "tpf_bytes": len(tpf.data)}))
    sys.exit(0)
reset_peak()
wall, cpu = time.perf_counter(), time.process_time()
answer = request(ra, dec, int(size))
wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
headers = {k.lower(): v for k, v in answer.get("headers", {}).items()}
out = {"wall_s": wall, "cpu_s": cpu, "rss_before_mb": rss_before, "peak_rss_mb": status("VmHWM"),
       "status": answer["statusCode"], "cache": headers.get("x-cubecut-cache"),
       "server_timing": headers.get("server-timing", "")}
if "location" in headers:
    import boto3
    bucket, key = urlparse(headers["location"]).path.lstrip("/").split("/", 1)
    out["zip_bytes"] = boto3.client("s3").head_object(Bucket=bucket, Key=key)["ContentLength"]
    out["result_key"] = key
print(json.dumps(out))
"""


def _spans(header: str) -> dict[str, float]:
    """``Server-Timing`` durations in seconds by name (cubes and ``total``)."""
    spans = {}
    for item in header.split(","):
        name, _, rest = item.strip().partition(";")
        for param in rest.split(";"):
            key, _, value = param.partition("=")
            if key.strip() == "dur":
                spans[name] = float(value) / 1e3
    return spans


def _run(env: dict[str, str], args: list[str]) -> dict:
    done = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, env=env)
    if done.returncode:
        raise RuntimeError(f"route probe failed: {done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if args[0] == "cut":
        return result
    spans = _spans(result.pop("server_timing"))
    result["total_s"] = spans.pop("total", float("nan"))
    result["cut_s"] = max(spans.values()) if spans else float("nan")  # one cube here
    result["zip_deliver_s"] = result["total_s"] - result["cut_s"]
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", default="e10eeff", help="git revision to measure beside this tree")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--sizes", type=int, nargs="*", default=[30, 100])
    args = parser.parse_args()
    results: dict = {"stamp": stamp.begin(), "before": args.before, "rounds": args.rounds,
                     "network": {"latency_ms": REALISTIC[0], "mbps": REALISTIC[1]}}
    spec = data.FULL["s0001"]
    s3 = servers.S3rver()
    shaper = None
    runs: dict[str, list[dict]] = {}
    try:
        with_template(data.cube(spec))
        cube = publish_cubes(s3, {"s0001": data.cube(spec)})["s0001"]
        shaper = servers.Shaper(s3.port, *REALISTIC)
        center = radec(cube, cube["ncols"] / 2, cube["nrows"] / 2)
        warm = radec(cube, cube["ncols"] / 4, cube["nrows"] / 2)
        with tempfile.TemporaryDirectory() as work:
            trees = {"before": checkout(args.before, Path(work) / "before"), "after": ROOT_SHIM}
            for rnd in range(args.rounds):
                for size in args.sizes:
                    for tree, shim in trees.items():
                        prefix = f"cubecut-route-bench/{uuid.uuid4().hex[:8]}/"  # a cache miss every time
                        env = {**servers.s3_env(shaper.endpoint), "PYTHONPATH": str(shim),
                               "CUBECUT_BUCKET": "stpubdata", "CUBECUT_CUBE_PREFIX": MAST_KEY.rsplit("/", 1)[0] + "/",
                               "CUBECUT_RESULTS_PREFIX": prefix, "CUBE_URL": cube["url"], "POWERTOOLS_TRACE_DISABLED": "true",
                               "POWERTOOLS_METRICS_DISABLED": "true", "POWERTOOLS_LOG_LEVEL": "WARNING"}
                        result = _run(env, ["route", *warm.split(), *center.split(), str(size)])
                        log(f"route {size}x{size} {tree} round {rnd}: {result['wall_s']:.2f} s, peak "
                            f"{result['peak_rss_mb']:.0f} MB (before {result['rss_before_mb']:.0f} MB), "
                            f"zip {result.get('zip_bytes', 0) / 1e6:.1f} MB, status {result['status']}")
                        _delete(s3, result.get("result_key"))
                        runs.setdefault(f"{size}_{tree}", []).append(result)
                    cut = _run(env, ["cut", *warm.split(), *center.split(), str(size)])  # this tree's engine
                    log(f"cut alone {size}x{size}: {cut['wall_s']:.2f} s, peak {cut['peak_rss_mb']:.0f} MB "
                        f"(before {cut['rss_before_mb']:.0f} MB)")
                    runs.setdefault(f"{size}_cut", []).append(cut)
    finally:
        if shaper:
            shaper.stop()
        s3.stop()
    results["runs"] = runs
    results["medians"] = {name: {k: statistics.median(r[k] for r in rows) for k in rows[0]
                                 if isinstance(rows[0][k], (int, float)) and not isinstance(rows[0][k], bool)}
                          for name, rows in runs.items()}
    stamp.end(results["stamp"])
    print(stamp.save("route", results, report))
    return 0


def _delete(s3: servers.S3rver, key: str | None) -> None:
    """Remove a measured result from s3rver's store (100x100 zips are ~60 MB each)."""
    if key:
        target = s3.object_path("stpubdata", key)
        for path in target.parent.glob(target.name.replace("._S3rver_object", "") + "*"):
            path.unlink()


def report(r: dict) -> str:
    m = r["medians"]
    sizes = sorted({int(name.split("_")[0]) for name in m})
    lines = ["# TESScut route end to end (issue 17)", "", stamp.markdown({"route.py": r["stamp"]}),
             f"{r['network']['latency_ms']:g} ms "
             f"first byte, {r['network']['mbps']:g} MB/s per connection (s3rver behind the shaper); medians of "
             f"{r['rounds']} interleaved fresh processes per row. `before` = {r['before']} (zip built in memory, "
             "one PUT); `after` = this tree (zip streamed into a multipart upload).", "",
             "| size | tree | wall s | CPU s | cut s | zip + deliver s | RSS before MB | peak RSS MB | peak - before MB "
             "| the cut alone: peak - before MB | TPF MB | zip MB |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for size in sizes:
        cut = m[f"{size}_cut"]
        for tree in ("before", "after"):
            d = m.get(f"{size}_{tree}")
            if d:
                lines.append(f"| {size}x{size} | {tree} | {d['wall_s']:.3f} | {d['cpu_s']:.3f} | {d['cut_s']:.3f} | "
                             f"{d['zip_deliver_s']:.3f} | {d['rss_before_mb']:.0f} | {d['peak_rss_mb']:.0f} | "
                             f"{d['peak_rss_mb'] - d['rss_before_mb']:.0f} | {cut['peak_rss_mb'] - cut['rss_before_mb']:.0f} | "
                             f"{cut['tpf_bytes'] / 1e6:.1f} | {d.get('zip_bytes', 0) / 1e6:.1f} |")
    lines += ["", "MB = 10^6 bytes except RSS (MiB, from /proc). *The cut alone*: `cutout_files` for the same "
              "cutout in a fresh process of this tree after the same warm-up (nothing zipped or stored): the engine's "
              "own peak (the TPF and the rows it is built from); a route's peak above it is what zipping and delivering "
              "add. Runs of one row vary by ~20-40 MB."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
