"""Peak memory of one big cutout (benchmarks/README.md, item 6).

    python benchmarks/memory.py [--runs 3] [--size 100]

Each run is a fresh interpreter that loads the cubecut engine and the cube's index, then
calls ``cutout_files`` twice for one ``--size`` x ``--size`` box of the 1,000-frame
benchmark cube (``data.FULL['s0001']``), dropping the first TPF before the second call. It
reports the process's VmHWM (peak resident set, MB) before the first call, after it and
after the second, once with the cube on local disk and once through s3rver (the cube
hard-linked into its store). Results: benchmarks/results/memory.json and memory.md.
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


def _run(cube: str, size: int, env: dict | None = None) -> dict:
    done = subprocess.run([sys.executable, "-c", CHILD, cube, str(size)], env=env, capture_output=True,
                          text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def report(results: dict) -> str:
    size = results["size"]
    lines = [f"# Peak memory of a {size}x{size} x {results['frames']}-frame cutout", "",
             stamp.markdown({"memory.py": results["stamp"]}),
             "VmHWM in MB, median of the runs (min-max); TPF size in MB.", "",
             "| cube | before | first call | second call | TPF |", "|---|---|---|---|---|"]
    for name, runs in results["runs"].items():
        def cell(field: str, runs: list[dict] = runs) -> str:
            values = [r[field] for r in runs]
            return f"{statistics.median(values):.0f} ({min(values):.0f}-{max(values):.0f})"
        lines.append(f"| {name} | {cell('before_mb')} | {cell('after_first_mb')} | {cell('after_second_mb')} | "
                     f"{runs[0]['tpf_mb']:.0f} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--size", type=int, default=100, help="box side in pixels")
    args = parser.parse_args()
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
    results = {"stamp": stamp.end(run), "size": args.size, "frames": spec.frames, "runs": rows}
    print(stamp.save("memory", results, report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
