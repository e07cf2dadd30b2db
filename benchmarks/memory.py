"""Peak memory of one big cutout (benchmarks/README.md, item 6), built in memory and streamed.

    python benchmarks/memory.py [--runs 3] [--size 100]
    python benchmarks/memory.py --section streamed [--runs 2] [--size 100]

``in-memory`` (the default section): each run is a fresh interpreter that loads the cubecut
engine and the cube's index, then calls ``cutout_files`` twice for one ``--size`` x
``--size`` box of the 1,000-frame benchmark cube (``data.FULL['s0001']``), dropping the
first TPF before the second call. It reports the process's VmHWM (peak resident set, MB)
before the first call, after it and after the second, once with the cube on local disk and
once through s3rver (the cube hard-linked into its store).

``streamed`` (issue 27): a cube of a 200-second sector's depth, 11,700 frames x 128 x 128
pixels (:data:`STREAMED_CUBE`, 1.5 GB; ``cubecut.synth.sparse``'s pixels), in s3rver behind
the byte-counting proxy (no shaping); each run is a fresh interpreter that builds the API's
cutout service (``CutoutService`` on the cube prefix, default budgets) and cuts one
``--size`` x ``--size`` box through the service path of ``POST /v1/cutouts``
(``tesscut.v1.make_cutout``: the TPF streamed to S3, a presigned URL) or of ``astrocut``
(``CutoutService.static_zip``: the zip with the TPF stored, streamed to S3), and, for
reference, as many bytes written through the same object stream with nothing cut. Reported:
VmHWM before and after (MB), wall (s), the object's bytes, the service's memory charge,
and the S3 requests by method and bytes read. Results: benchmarks/results/memory.json and
memory.md, one section each (a run replaces its own section).
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import data  # noqa: E402 - after the path insert
import servers  # noqa: E402
import stamp  # noqa: E402

#: One run: prints a JSON object of VmHWM in MB at each step.
CHILD = """
import json, sys
from cubecut.cutout import cutout_files, ffi_wcs, load_index

def hwm():
    return next(int(line.split()[1]) for line in open('/proc/self/status') if line.startswith('VmHWM')) / 1024

cube, size = sys.argv[1], int(sys.argv[2])
index = load_index(cube)
ra, dec = ffi_wcs(index).pixel_to_world_values(index.ncols / 2, index.nrows / 2)
out = {"before_mb": hwm()}
files = cutout_files(cube, f"{ra} {dec}", size)
out.update(after_first_mb=hwm(), tpf_mb=len(files[0].data) / 1e6)
del files
cutout_files(cube, f"{ra} {dec}", size)
out["after_second_mb"] = hwm()
print(json.dumps(out))
"""


#: A 200-second sector's depth, small in space: 11,700 frames x 128 x 128 pixels (1.5 GB).
STREAMED_CUBE = data.CubeSpec("s0056-box", 56, 11_700, 128, cols=128, sparse=True)
BUCKET = "cubecut-bench"

#: One streamed run: prints a JSON object (VmHWM in MB, wall, bytes, charge).
STREAMED_CHILD = """
import json, sys, time
from astropy.coordinates import SkyCoord
from cubecut.cube.catalog import CubeCatalog
from cubecut.cutout import ffi_wcs
from cubecut.tesscut import v1
from cubecut.tesscut.protocol import CutoutRequest
from cubecut.tesscut.service import CutoutService, pixels

def hwm():
    return next(int(line.split()[1]) for line in open('/proc/self/status') if line.startswith('VmHWM')) / 1024

from cubecut.cutout import engine

bucket, size, route, run = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
cut_s = []
real_stream = engine.cutout_stream

def timed_stream(*args, **kwargs):  # the cut (index, box read) apart from writing the object
    t0 = time.perf_counter()
    try:
        return real_stream(*args, **kwargs)
    finally:
        cut_s.append(time.perf_counter() - t0)

engine.cutout_stream = timed_stream
service = CutoutService(CubeCatalog(f"s3://{bucket}/cubes/", ttl=3600), f"s3://{bucket}/results/{route}/{run}/")
(entry,) = service.catalog.entries()
index = entry.index
ra, dec = (float(v) for v in ffi_wcs(index).pixel_to_world_values(index.ncols / 2, index.nrows / 2))
out = {"before_mb": hwm(), "frames": index.nt, "charge_bytes": service.check_budget([size * size * index.nt])}
started = time.perf_counter()
if route == "upload":  # the reference: the same bytes through the object stream, nothing cut
    from cubecut.storage import ObjectStreamWriter
    from cubecut.tesscut.service import TPF_BYTES_PER_PIXEL_FRAME

    total, piece = size * size * index.nt * TPF_BYTES_PER_PIXEL_FRAME, memoryview(bytes(2**20))
    with ObjectStreamWriter(f"s3://{bucket}/results/upload/x", "application/fits") as stream:
        for start in range(0, total, len(piece)):
            stream.write(piece[:total - start])
    out.update(object_bytes=stream.size)
elif route == "v1":
    answer = v1.make_cutout(service, {"cube": entry.sector_name}, ra, dec, (size, size), 3600)
    out.update(object_bytes=answer["bytes"], shape=answer["shape"])
else:
    request = CutoutRequest(SkyCoord(ra, dec, unit="deg"), (size, size), None, index.product)
    delivery = service.static_zip(request, [entry])
    out.update(object_bytes=delivery.size, inline=delivery.body is not None)
out.update(wall_s=time.perf_counter() - started, cut_s=sum(cut_s), after_mb=hwm())
print(json.dumps(out))
"""
#: The service paths measured: ``POST /v1/cutouts`` and ``astrocut``.
ROUTES = {"v1": "POST /v1/cutouts (TPF streamed)", "astrocut": "astrocut (zip, TPF stored, streamed)",
          "upload": "reference: as many bytes through the object stream, nothing cut"}


def _run(cube: str, size: int, env: dict | None = None) -> dict:
    done = subprocess.run([sys.executable, "-c", CHILD, cube, str(size)], env=env, capture_output=True,
                          text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def _cell(runs: list[dict], field: str) -> str:
    values = [r[field] for r in runs]
    return f"{statistics.median(values):.0f} ({min(values):.0f}-{max(values):.0f})"


def _in_memory_report(section: dict) -> list[str]:
    size = section["size"]
    lines = [f"## Built in memory: a {size}x{size} x {section['frames']}-frame cutout", "",
             stamp.markdown({"memory.py": section["stamp"]}),
             "VmHWM in MB, median of the runs (min-max); TPF size in MB.", "",
             "| cube | before | first call | second call | TPF |", "|---|---|---|---|---|"]
    for name, runs in section["runs"].items():
        lines.append(f"| {name} | {_cell(runs, 'before_mb')} | {_cell(runs, 'after_first_mb')} | "
                     f"{_cell(runs, 'after_second_mb')} | {runs[0]['tpf_mb']:.0f} |")
    return lines


def _streamed_report(section: dict) -> list[str]:
    size, frames = section["size"], section["frames"]
    lines = [f"## Streamed: a {size}x{size} x {frames:,}-frame cutout through the service", "",
             stamp.markdown({"memory.py --section streamed": section["stamp"]}),
             f"Cube: {frames:,} frames x {section['cube_shape'][0]} x {section['cube_shape'][1]} pixels, "
             f"{section['cube_bytes'] / 1e9:.2f} GB, in s3rver behind the counting proxy. VmHWM in MB and wall "
             "in s, median of the runs (min-max), and of it the cut (index, box read into memory; the rest "
             "is laying out and writing the object); the object's size and the service's memory charge in MB; S3 "
             "requests of one run by method (GET: cube and sidecar reads; PUT: parts; POST: start and "
             "complete of the multipart upload) and MB the proxy carried back.", "",
             "| route | S3 | before | peak | wall | of it, the cut | object | charge | requests | MB read |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, runs in section["runs"].items():
        route, via = name.split()
        first, s3 = runs[0], runs[0]["s3"]
        requests = ", ".join(f"{method} {count}" for method, count in sorted(s3["by_method"].items())) if s3 else "-"
        read_mb = f"{s3['body_bytes'] / 1e6:.0f}" if s3 else "-"
        lines.append(f"| {ROUTES[route]} | {'through the proxy' if via == 'proxy' else 's3rver direct'} | "
                     f"{_cell(runs, 'before_mb')} | {_cell(runs, 'after_mb')} | {_seconds(runs, 'wall_s')} | "
                     f"{_seconds(runs, 'cut_s')} | {first['object_bytes'] / 1e6:.0f} | "
                     f"{first['charge_bytes'] / 1e6:.0f} | {requests} | {read_mb} |")
    return lines


def _seconds(runs: list[dict], field: str) -> str:
    values = [r[field] for r in runs]
    return f"{statistics.median(values):.1f} ({min(values):.1f}-{max(values):.1f})"


def report(results: dict) -> str:
    sections = results["sections"]
    lines = ["# Peak memory of big cutouts", ""]
    if "in-memory" in sections:
        lines += _in_memory_report(sections["in-memory"]) + [""]
    if "streamed" in sections:
        lines += _streamed_report(sections["streamed"]) + [""]
    return "\n".join(lines)


def _in_memory(args: argparse.Namespace) -> dict:
    run = stamp.begin()
    spec = data.FULL["s0001"]
    local = data.cube(spec)
    server = servers.S3rver()
    try:
        key = f"tess/public/mast/{local.name}"
        server.place("stpubdata", key, local)
        server.put_bytes("stpubdata", f"{key}.index.json", Path(f"{local}.index.json").read_bytes())
        cases = {"local disk": (str(local), None), "s3rver": (f"s3://stpubdata/{key}", servers.s3_env(server.endpoint))}
        rows = {name: [_run(cube, args.size, env) for _ in range(args.runs)] for name, (cube, env) in cases.items()}
    finally:
        server.stop()
    return {"stamp": stamp.end(run), "size": args.size, "frames": spec.frames, "runs": rows}


def _streamed(args: argparse.Namespace) -> dict:
    run = stamp.begin()
    local = data.cube(STREAMED_CUBE)
    server = servers.S3rver()
    proxy = servers.Shaper(server.port)
    try:
        key = f"cubes/{local.name}"
        server.place(BUCKET, key, local)
        server.put_bytes(BUCKET, f"{key}.index.json", Path(f"{local}.index.json").read_bytes())
        rows: dict[str, list[dict]] = {}
        for via, endpoint in (("proxy", proxy.endpoint), ("direct", server.endpoint)):
            for route in ROUTES:
                for number in range(args.runs):  # each run its own result prefix: never a cache hit
                    proxy.reset()
                    done = subprocess.run([sys.executable, "-c", STREAMED_CHILD, BUCKET, str(args.size), route,
                                           f"{via}-{number}"],
                                          env=servers.s3_env(endpoint), capture_output=True, text=True, check=True)
                    result = json.loads(done.stdout.strip().splitlines()[-1])
                    result["s3"] = proxy.stats() if via == "proxy" else None
                    rows.setdefault(f"{route} {via}", []).append(result)
                    _drop_results(server, route)
    finally:
        proxy.stop()
        server.stop()
    return {"stamp": stamp.end(run), "size": args.size, "frames": STREAMED_CUBE.frames,
            "cube_shape": [STREAMED_CUBE.rows, STREAMED_CUBE.cols], "cube_bytes": local.stat().st_size, "runs": rows}


def _drop_results(server: servers.S3rver, route: str) -> None:
    """Delete what a run stored (disk space; each run has its own result prefix)."""
    import shutil

    shutil.rmtree(server.store / BUCKET / "results" / route, ignore_errors=True)


def _previous() -> dict:
    """The sections of the current result (a result from before sections: the in-memory one)."""
    path = stamp.RESULTS / "memory.json"
    if not path.exists():
        return {}
    previous = json.loads(path.read_text())
    return previous.get("sections", {"in-memory": previous})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--section", choices=["in-memory", "streamed"], default="in-memory")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--size", type=int, default=100, help="box side in pixels")
    args = parser.parse_args()
    sections = _previous()
    sections[args.section] = _in_memory(args) if args.section == "in-memory" else _streamed(args)
    print(stamp.save("memory", {"sections": sections}, report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
