"""Cold start of the handlers (issue 17): import time, init memory, and the first request.

    python benchmarks/imports.py [--runs 5] [--before REV]

Each figure is the median of ``--runs`` fresh interpreters (what a new Lambda container
pays), run one after another:

* ``import``: ``import cubecut_functions.<handler>`` for every handler module of
  template.yaml (api, bulk, ingest, on_upload): wall and CPU seconds, and the
  process's resident memory right after (init RSS), with which of the heavy modules
  (astropy coordinates/WCS/time, matplotlib, the X-Ray SDK, boto3 ...) got loaded.
* ``first request``: in the same fresh process, the API handler answering a TESScut
  ``astrocut`` request (3x3 px, one 20-frame cube on a local moto S3) - everything the
  import deferred (astropy's WCS and coordinates, the engine, the Tracer) is paid here -
  then the same request again (warm; served from the result cache, so only the routing,
  the catalog and the cache look-up).
* ``tracer``: building powertools' ``Tracer()`` after boto3 is loaded, disabled
  (``POWERTOOLS_TRACE_DISABLED``) and enabled as in Lambda (``LAMBDA_TASK_ROOT`` and a trace
  header set; auto-patching boto3/botocore and the rest): what the API handler defers to
  its first invocation.

With ``--before REV`` (a git revision of this repository) the handlers of that revision
are measured the same way in the same run (every handler's import; the API's first
request), interleaved, for ratios unaffected by the load.

Results: benchmarks/results/imports.json and imports.md. On a shared machine the seconds are
inflated by the load; compare the rows of one run.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import stamp  # noqa: E402 - after the path insert

ROOT = HERE.parent
HEAVY = ("astropy.io.fits", "astropy.coordinates", "astropy.wcs", "astropy.time", "astropy.table",
         "astropy.visualization", "matplotlib", "aws_xray_sdk", "cubecut.cutout.engine", "pydantic", "boto3")
#: The handler modules of template.yaml (functions/*.py), in the order they are reported.
HANDLERS = ("api", "bulk", "ingest", "on_upload")

#: Runs in the fresh interpreter: import the handler, then (optionally) answer requests.
PROBE = r"""
import json, os, sys, time
def rss_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
wall, cpu = time.perf_counter(), time.process_time()
import importlib
module = importlib.import_module("cubecut_functions." + sys.argv[1])
out = {"import_s": time.perf_counter() - wall, "import_cpu_s": time.process_time() - cpu, "init_rss_mb": rss_mb(),
       "loaded": [m for m in json.loads(sys.argv[2]) if m in sys.modules]}
requests = json.loads(sys.argv[3])
if requests:
    from cubecut_infra.local.lambda_context import LambdaContext
    context = LambdaContext.for_arn("arn:aws:lambda:us-east-1:123456789012:function:bench", memory_mb=3008,
                                    timeout_seconds=29)
    for name, handler, event in requests:
        wall, cpu = time.perf_counter(), time.process_time()
        answer = getattr(module, handler)(event, context)
        out[name + "_s"] = time.perf_counter() - wall
        out[name + "_cpu_s"] = time.process_time() - cpu
        out[name + "_status"] = answer.get("statusCode", 200) if isinstance(answer, dict) else None
    out["after_requests_rss_mb"] = rss_mb()
print(json.dumps(out))
"""

TRACER = r"""
import json, time
import boto3, botocore  # already loaded by the handler when it builds the Tracer
wall, cpu = time.perf_counter(), time.process_time()
from aws_lambda_powertools import Tracer
tracer = Tracer()
print(json.dumps({"tracer_s": time.perf_counter() - wall, "tracer_cpu_s": time.process_time() - cpu,
                  "disabled": tracer.disabled}))
"""


def _run(code: str, args: list[str], env: dict[str, str]) -> dict:
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def _medians(rows: list[dict]) -> dict:
    out: dict = {}
    for key, value in rows[0].items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out[key] = round(statistics.median(r[key] for r in rows), 4)
        else:
            out[key] = value
    return out


def _api_event(path: str, query: str) -> dict:
    from cubecut_infra.local.apigw import build_event

    return build_event(method="GET", target=f"{path}?{query}", protocol="HTTP/1.1", headers=[("host", "bench")],
                       body=b"", source_ip="127.0.0.1")


def _cube(workdir: Path, bucket: str) -> tuple[str, float, float]:
    from cubecut.ingest.run import ingest
    from cubecut.synth import make_sector, star_catalog

    ffis = make_sector(workdir / "s1", sector=1, camera=1, ccd=1, frames=20, shape=(64, 64), seed=3)
    ingest([str(p) for p in ffis], f"s3://{bucket}/cubes/", workers=1)
    star = star_catalog(sector=1, camera=1, ccd=1, shape=(64, 64), seed=3)[0]
    return f"s3://{bucket}/cubes/tess-s0001-1-1-cube.fits", float(star["ra"]), float(star["dec"])


def checkout(revision: str, folder: Path) -> Path:
    """The tree of ``revision`` under ``folder`` and a folder of its packages for PYTHONPATH."""
    folder.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", revision], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    shim = folder / ".shim"
    shim.mkdir()
    for package, tree in (("cubecut", "layers/cubecut"), ("cubecut_app", "layers/cubecut_app"),
                          ("cubecut_functions", "functions"), ("cubecut_infra", "infra")):
        if (folder / tree).is_dir():
            (shim / package).symlink_to(folder / tree)
    return shim


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--before", help="git revision whose API handler to measure beside this tree's")
    args = parser.parse_args()
    from cubecut_infra.local.s3server import LocalS3

    run = stamp.begin()
    base = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": os.environ.get("PYTHONPATH", ""),
            "AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
            "POWERTOOLS_SERVICE_NAME": "cubecut", "POWERTOOLS_METRICS_DISABLED": "true",
            "POWERTOOLS_LOG_LEVEL": "WARNING"}
    results: dict = {"stamp": run, "runs": args.runs}
    with LocalS3() as s3, tempfile.TemporaryDirectory() as work:
        bucket = "cubecut-imports"
        s3.create_bucket(bucket)
        os.environ.update(AWS_ENDPOINT_URL=s3.endpoint, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
                          AWS_DEFAULT_REGION="us-east-1")
        cube, ra, dec = _cube(Path(work), bucket)
        env = {**base, "AWS_ENDPOINT_URL": s3.endpoint, "CUBECUT_BUCKET": bucket, "POWERTOOLS_TRACE_DISABLED": "true"}
        heavy = json.dumps(HEAVY)
        astrocut = _api_event("/tesscut/api/v0.1/astrocut", f"ra={ra}&dec={dec}&x=3&y=3")
        api_requests = [("first_request", "handler", astrocut), ("second_request", "handler", astrocut)]
        cut = {"cube": cube, "ra": ra, "dec": dec, "size": [3, 3], "job": f"s3://{bucket}/results/jobs/bench",
               "index": 0}
        runs: dict[str, list[dict]] = {"api": [], "cutouts": [], **{f"{h}_import_only": [] for h in HANDLERS}}
        before_env = None
        if args.before:
            results["before"] = args.before
            before_env = {**env, "PYTHONPATH": str(checkout(args.before, Path(work) / "before"))}
            runs.update(api_before=[], **{f"{h}_before_import_only": [] for h in HANDLERS})
        for _ in range(args.runs):  # interleaved, so load changes hit every row alike
            for handler in HANDLERS:
                if before_env:
                    runs[f"{handler}_before_import_only"].append(_run(PROBE, [handler, heavy, "[]"], before_env))
                runs[f"{handler}_import_only"].append(_run(PROBE, [handler, heavy, "[]"], env))
            if before_env:
                runs["api_before"].append(_run(PROBE, ["api", heavy, json.dumps(api_requests)], before_env))
            runs["api"].append(_run(PROBE, ["api", heavy, json.dumps(api_requests)], env))
        results.update({name: _medians(rows) for name, rows in runs.items()})
        lambda_env = {**base, "LAMBDA_TASK_ROOT": "/var/task", "AWS_LAMBDA_FUNCTION_NAME": "bench",
                      "_X_AMZN_TRACE_ID": "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"}
        results["tracer_disabled"] = _medians([_run(TRACER, [], {**base, "POWERTOOLS_TRACE_DISABLED": "true"})
                                               for _ in range(args.runs)])
        results["tracer_enabled"] = _medians([_run(TRACER, [], lambda_env) for _ in range(args.runs)])
    stamp.end(run)
    print(stamp.save("imports", results, report))
    return 0


def report(r: dict) -> str:
    def row(name: str, d: dict) -> str:
        return (f"| {name} | {d['import_s']:.3f} | {d['import_cpu_s']:.3f} | {d['init_rss_mb']:.0f} | "
                f"{', '.join(d['loaded']) or '-'} |")

    api, cut = r["api"], r["cutouts"]
    lines = [
        "# Handler cold start (issue 17)", "",
        stamp.markdown({"imports.py": r["stamp"]}),
        f"Medians of {r['runs']} fresh interpreters each (seconds are inflated by the machine's load: compare rows).", "",
        "## Import", "",
        "| handler | import s (wall) | import s (CPU) | init RSS MB | heavy modules loaded |",
        "|---|---|---|---|---|",
        *[line for h in HANDLERS for line in
          [row(f"{h} (`cubecut_functions.{h}`)", r[f"{h}_import_only"]),
           *([row(f"{h} before ({r['before']})", r[f"{h}_before_import_only"])] if "before" in r else [])]
          if f"{h}_import_only" in r], "",
        *([f"Import wall after / before ({r['before']}): " + ", ".join(
            f"{h} {r[f'{h}_import_only']['import_s']:.3f} / {r[f'{h}_before_import_only']['import_s']:.3f} s "
            f"(RSS {r[f'{h}_import_only']['init_rss_mb']:.0f} / {r[f'{h}_before_import_only']['init_rss_mb']:.0f} MB)"
            for h in HANDLERS if f"{h}_before_import_only" in r) + ".", ""] if "before" in r else []),
        "## First requests (same fresh process, after the import)", "",
        "| | wall s | CPU s | status |", "|---|---|---|---|",
        f"| api: first `astrocut` request (cold: loads WCS, coordinates, engine, Tracer) | {api['first_request_s']:.3f} | "
        f"{api['first_request_cpu_s']:.3f} | {api['first_request_status']} |",
        f"| api: the same request again (warm, result cache) | {api['second_request_s']:.3f} | "
        f"{api['second_request_cpu_s']:.3f} | {api['second_request_status']} |",
        f"| cutouts: first TPF (cold) | {cut['first_cutout_s']:.3f} | {cut['first_cutout_cpu_s']:.3f} | |",
        *([f"| api before ({r['before']}): first `astrocut` request | {r['api_before']['first_request_s']:.3f} | "
           f"{r['api_before']['first_request_cpu_s']:.3f} | {r['api_before']['first_request_status']} |"]
          if "before" in r else []), "",
        f"api: import + first request = **{api['import_s'] + api['first_request_s']:.3f} s** wall; RSS after the "
        f"requests {api['after_requests_rss_mb']:.0f} MB (cutouts: {cut['after_requests_rss_mb']:.0f} MB)."
        + (f" Before ({r['before']}): import + first request "
           f"{r['api_before']['import_s'] + r['api_before']['first_request_s']:.3f} s. API import after / before: "
           f"**{r['api_import_only']['import_s'] / r['api_before_import_only']['import_s']:.2f}** wall, "
           f"**{r['api_import_only']['import_cpu_s'] / r['api_before_import_only']['import_cpu_s']:.2f}** CPU."
           if "before" in r else ""), "",
        "## powertools Tracer (built after boto3 is loaded)", "",
        "| | wall s | CPU s |", "|---|---|---|",
        f"| disabled (POWERTOOLS_TRACE_DISABLED) | {r['tracer_disabled']['tracer_s']:.3f} | "
        f"{r['tracer_disabled']['tracer_cpu_s']:.3f} |",
        f"| enabled, as in Lambda (auto-patch) | {r['tracer_enabled']['tracer_s']:.3f} | "
        f"{r['tracer_enabled']['tracer_cpu_s']:.3f} |", "",
        "Either way the Tracer imports aws_xray_sdk, whose global recorder builds an X-Ray client; the API "
        "handler builds its Tracer at the first invocation instead of at import.",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
