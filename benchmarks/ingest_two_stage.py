"""The two-stage transpose, prototyped and measured beside the one-stage block (issue 27).

    nice .venv/bin/python benchmarks/ingest_two_stage.py [--frames 1170] [--slab-frames 128]

``synthserver.py`` serves ``--frames`` full-size (2078 x 2136, flux + error) SPOC FFIs of
sector 56 (the 200-s cadence's) over 27 day prefixes: a sample of a 200-s sector's FFIs
(a tenth by default, so the run takes minutes). The cube of those frames is planned from
their headers and staged as the PlanFunction stages it, then, each in a fresh worker
process, on the same rows (the plan's middle block, 20 rows):

1. **one-stage**: ``write_block`` as the BlockFunction runs it (one range GET of the
   block's rows per FFI image, the transposition, the UploadPart);
2. **stage 1**: one slab: ``--slab-frames`` FFIs read whole (one GET per image HDU),
   transposed into cube order ``(rows, columns, frames, planes)`` and uploaded as one
   object, one UploadPart per block's rows (all the cube's rows);
3. **stage 2**: the block from the slabs: one ranged GET of its rows per slab object,
   placed on the time axis, its UploadPart.

4. **astrocut**: ``CubeFactory().make_cube`` on the same FFIs cut down to the same rows
   (local files written first, not timed: full-size files would make it read every row),
   its pixels compared with the block's.

The server checks every part as it streams in (the cube's parts against the cube's bytes,
the slab's parts against the slab's) and keeps nothing; stage 2 reads slabs the server
synthesizes with the bytes stage 1 was checked to write. Per worker: CPU (process time),
wall, peak memory (VmHWM over the process's before the work), requests, bytes. The
measured CPU per byte of each then goes into :func:`compare`, which models both plans per
cube on Lambda for the three cadences (1,300 / 3,900 / 11,700 frames) with
:mod:`cubecut.ingest.sizing`'s deployment, prices and network assumptions (the two-stage
transpose is not built: this model lives here, beside its only measurement). Results:
``results/ingest-two-stage.json`` and ``.md``, stamped with commit, command, machine and load.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ingest_scale import server_stats, stamp, unsigned_environment, vm
from stamp import save

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
SECTOR = 56
CUBE = f"s3://stpubdata/cubes/tess-s{SECTOR:04d}-1-1-cube.fits"
#: GETs in flight in one stage-1 worker (whole images) and in one stage-2 worker (slab
#: ranges), measured and modelled alike.
THREADS = 4
#: FFIs per slab object: 128 frames of 2078 x 2136 x 2 float32 images are 4.5 GB, what a
#: stage-1 worker holds besides its reads in flight and the runtime in BlockFunction's 5120 MB.
SLAB_FRAMES = 128
#: S3 Standard storage, for the slabs while they exist (stage 1 to the end of stage 2).
S3_STORAGE_GB_MONTH_USD = 0.023
SECONDS_PER_MONTH = 30 * 86_400


def slab_url(plan, f0: int, f1: int) -> str:
    """The slab object of frames ``[f0, f1)`` (0-based) beside the plan's staging objects."""
    return f"{plan.staging}slabs/{f0:05d}-{f1:05d}.bin"


def slab_ranges(nt: int, slab_frames: int) -> list[tuple[int, int]]:
    """Frames ``[f0, f1)`` of each slab object."""
    return [(f0, min(f0 + slab_frames, nt)) for f0 in range(0, nt, slab_frames)]


def stage1(plan, f0: int, f1: int, stats) -> dict:
    """Stage 1 for frames ``[f0, f1)``: every image HDU read whole, then per block its rows of
    all those frames in cube order, uploaded as the slab's part ``block + 1``."""
    from cubecut.ffi_rows import read_pixels
    from cubecut.reads import concurrently
    from cubecut.storage import open_source, open_upload

    layout = plan.layout
    frames, planes = f1 - f0, layout.nplanes
    images: list[list[np.ndarray]] = [[np.empty(0)] * planes for _ in range(frames)]

    def read(job: tuple[int, int]) -> None:
        t, k = job
        ffi = plan.ffis[t]
        source = open_source(ffi.url, stats, size=ffi.size, etag=ffi.etag)
        images[t - f0][k] = read_pixels(source, ffi.flux if k == 0 else ffi.error, layout.ncols, (0, layout.nrows))

    concurrently(read, [(t, k) for t in range(f0, f1) for k in range(planes)], THREADS)
    target = open_upload(slab_url(plan, f0, f1))
    upload = target.begin("application/octet-stream")
    receipts = []
    for block in plan.blocks:
        data = bytearray((block.row1 - block.row0) * layout.ncols * frames * planes * 4)
        piece = np.frombuffer(data, dtype=">f4").reshape(block.row1 - block.row0, layout.ncols, frames, planes)
        for t in range(frames):
            for k in range(planes):
                piece[:, :, t, k] = images[t][k][block.row0:block.row1]
        receipts.append(target.write_part(upload, block.part, 0, data))
    target.complete(upload, receipts)
    return {"slab_bytes": sum(r.size for r in receipts), "parts": len(receipts)}


def stage2(plan, index: int, slab_frames: int, stats) -> dict:
    """Stage 2 for block ``index`` (a middle one: no head, no tail): its rows of every slab."""
    from cubecut.reads import concurrently, read_range
    from cubecut.storage import open_source, open_upload

    layout, block = plan.layout, plan.blocks[index]
    assert not (block.head or block.tail), "the prototype builds middle blocks only"
    rows = block.row1 - block.row0
    part = bytearray(block.size)
    cube = np.frombuffer(part, dtype=">f4").reshape(rows, layout.ncols, layout.nt, layout.nplanes)

    def fill(frames: tuple[int, int]) -> None:
        f0, f1 = frames
        stride = layout.ncols * (f1 - f0) * layout.nplanes * 4
        source = open_source(slab_url(plan, f0, f1), stats, size=stride * layout.nrows)  # known: no HEAD
        data = read_range(source, block.row0 * stride, block.row1 * stride, OSError, "slab rows")
        cube[:, :, f0:f1] = np.frombuffer(data, dtype=">f4").reshape(rows, layout.ncols, f1 - f0, layout.nplanes)

    concurrently(fill, slab_ranges(layout.nt, slab_frames), THREADS)
    open_upload(plan.cube).write_part(plan.upload_id, block.part, block.offset, part)
    return {"part_bytes": len(part)}


def worker(kind: str, plan_url: str, argument: int, slab_frames: int) -> None:
    """One measured run of ``kind`` in this fresh process; prints its measurements as JSON."""
    from cubecut.ingest.plan import IngestPlan
    from cubecut.ingest.transpose import write_block
    from cubecut.storage import ReadStats

    plan = IngestPlan.load(plan_url)
    base = vm("VmHWM")
    stats = ReadStats()
    wall, cpu = time.perf_counter(), time.process_time()
    if kind == "one-stage":
        out = {"part_bytes": write_block(plan, argument, stats=stats).size}
    elif kind == "stage-1":
        out = stage1(plan, *slab_ranges(plan.layout.nt, slab_frames)[argument], stats)
    else:
        out = stage2(plan, argument, slab_frames, stats)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(json.dumps({"kind": kind, **out, "cpu_s": cpu, "wall_s": wall, "base_rss": base,
                      "peak_rss": vm("VmHWM"), "get_requests": stats.requests, "get_bytes": stats.bytes}))


def astrocut_worker(folder: str, cube: str) -> None:
    """astrocut's CubeFactory on the FITS files in ``folder`` (time order = name order) into
    ``cube``, in this fresh process; prints its CPU, wall and peak memory as JSON."""
    from astrocut import CubeFactory

    files = sorted(str(p) for p in Path(folder).iterdir())
    base = vm("VmHWM")
    wall, cpu = time.perf_counter(), time.process_time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        CubeFactory().make_cube(files, cube, verbose=False)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(json.dumps({"kind": "astrocut", "ffis": len(files), "cpu_s": cpu, "wall_s": wall, "base_rss": base,
                      "peak_rss": vm("VmHWM"), "cube_bytes": Path(cube).stat().st_size}))


def astrocut_on_sample(frames: int, rows: tuple[int, int]) -> dict:
    """astrocut's CubeFactory on the sample's FFIs cut down to ``rows`` [row0, row1) (written
    to a temporary folder first, not timed), and whether its cube holds the block's pixels."""
    from astropy.io import fits
    from cubecut.synth.sparse import pattern_cube_rows, sparse_sector, write_cut_down

    folder = Path(tempfile.mkdtemp(prefix="astrocut-sample-"))
    try:
        ffis = sparse_sector(sector=SECTOR, camera=1, ccd=1, frames=frames)
        ncols = ffis[0].shape[1]
        write_cut_down(ffis, rows, folder / "ffis")
        cube = folder / "cube.fits"
        done = subprocess.run([sys.executable, __file__, "--astrocut", str(folder / "ffis"), str(cube)],
                              capture_output=True, text=True, check=True)
        result = json.loads(done.stdout.strip().splitlines()[-1])
        with fits.open(cube) as hdus:
            offset, shape = hdus[1]._data_offset, hdus[1].shape
        same = shape == (rows[1] - rows[0], ncols, frames, 2)
        with open(cube, "rb") as handle:
            handle.seek(offset)
            for row in range(*rows):
                expected = pattern_cube_rows((row, row + 1), ncols, frames, 2).tobytes()
                same = same and handle.read(len(expected)) == expected
        return {**result, "rows": list(rows), "same_pixels_as_block": same}
    finally:
        shutil.rmtree(folder)


def measure(frames: int, slab_frames: int) -> dict:
    """Plan ``frames`` FFIs on a fresh server and run the three workers; the server's checks."""
    from cubecut.ingest.plan import draft_plan, stage_plan
    from cubecut.storage import Location, ReadStats

    server = subprocess.Popen([sys.executable, str(HERE / "synthserver.py"), "--sector", str(SECTOR), "--frames",
                               str(frames)], stdout=subprocess.PIPE, text=True)
    try:
        info = json.loads(server.stdout.readline())  # type: ignore[union-attr]
        port = info["port"]
        os.environ["AWS_ENDPOINT_URL"] = f"http://127.0.0.1:{port}"
        headers = ReadStats()
        draft = draft_plan(info["ffis"], stats=headers)
        plan = stage_plan(Location.parse(CUBE), draft, None)
        del draft
        middle = len(plan.blocks) // 2
        runs = []
        for kind, argument in (("one-stage", middle), ("stage-1", 0), ("stage-2", middle)):
            server_stats(port, "/_reset", "POST")
            done = subprocess.run([sys.executable, __file__, "--worker", kind, plan.plan_url, str(argument),
                                   str(slab_frames)], capture_output=True, text=True, env=os.environ)
            if done.returncode:
                raise RuntimeError(f"{kind} worker failed:\n{done.stderr[-3000:]}")
            run = json.loads(done.stdout.strip().splitlines()[-1])
            served = server_stats(port)
            run["server"] = {"requests": served["requests"], "bytes_out": served["bytes_out"],
                             "parts_checked": len(served["parts"]),
                             "all_parts_identical": bool(served["parts"]) and all(p["ok"] for p in served["parts"])}
            runs.append(run)
            print(json.dumps(run), flush=True)
    finally:
        server.terminate()
        server.wait()
    block, layout = plan.blocks[middle], plan.layout
    astrocut = astrocut_on_sample(frames, (block.row0, block.row1))
    print(json.dumps(astrocut), flush=True)
    runs.append(astrocut)
    return {"frames": frames, "slab_frames": slab_frames, "block": middle, "rows": [block.row0, block.row1],
            "layout": {"nrows": layout.nrows, "ncols": layout.ncols, "nt": layout.nt, "nplanes": layout.nplanes,
                       "head_bytes": layout.head_bytes, "table_bytes": layout.table_bytes},
            "header_requests_per_ffi": headers.requests / frames, "header_bytes_per_ffi": headers.bytes / frames,
            "plan_json_bytes_per_ffi": len(plan.to_json()) / frames, "runs": runs}


@dataclass(frozen=True)
class CpuRates:
    """Bytes of output one worker builds per CPU second, as measured: a one-stage block's
    part, a stage-1 slab, a stage-2 part."""

    block: float
    stage1: float
    stage2: float


def one_stage(layout, blocks, headers, plan_json_bytes: int, rates: CpuRates) -> dict:
    """The plan as built (:func:`cubecut.ingest.sizing.ingest_model`, 27 day prefixes, the
    measured CPU), in :func:`two_stage`'s terms."""
    from cubecut.ingest import sizing

    figures = sizing.ingest_model(layout, blocks, headers, 27, plan_json_bytes, cpu_bytes_s=rates.block)
    run = figures["model"]
    return {"workers": len(blocks), "get_requests": figures["get_requests"], "put_requests": len(blocks) + 7,
            "bytes_read": layout.nrows * layout.ncols * layout.nt * layout.nplanes * 4,
            "bytes_written": layout.total_bytes, "worker_memory_bytes": figures["worker_memory_bytes"],
            "stage_seconds": [run["block_seconds"]], "lambda_wall_seconds": run["lambda_wall_seconds"],
            "cost_usd": dict(run["cost_usd"])}


def two_stage(layout, blocks, headers, plan_json_bytes: int, rates: CpuRates, slab_frames: int = SLAB_FRAMES) -> dict:
    """The same cube built by the two-stage transpose, with
    :mod:`cubecut.ingest.sizing`'s deployment, prices and network assumptions; sizes in
    bytes, times in seconds, US dollars.

    Stage 1: ``ceil(frames / slab_frames)`` workers, each: a GET of the staged plan, one GET
    per image HDU of its FFIs, CreateMultipartUpload + one UploadPart per block + Complete.
    Stage 2: one worker per block, each: the plan (and head/tail), one ranged GET per slab
    object, its UploadPart. The slabs are written and read once more than the one-stage
    plan's pixels and stored for the run's wall time.
    """
    from cubecut.ingest import sizing

    nblocks, nt, planes = len(blocks), layout.nt, layout.nplanes
    image = layout.nrows * layout.ncols * 4
    slabs = math.ceil(nt / slab_frames)
    slab_bytes = image * planes * min(slab_frames, nt)  # the largest slab object
    piece = max(b.row1 - b.row0 for b in blocks) * layout.ncols * min(slab_frames, nt) * planes * 4
    part = max(b.size for b in blocks)
    memory1 = sizing.RUNTIME_BYTES + slab_bytes + 2 * THREADS * image + piece
    memory2 = sizing.RUNTIME_BYTES + part + 2 * THREADS * piece
    t1 = (math.ceil(min(slab_frames, nt) * planes / THREADS) * sizing.FIRST_BYTE_S
          + 2 * slab_bytes / sizing.NETWORK_BYTES_S + slab_bytes / rates.stage1)
    t2 = (math.ceil(slabs / THREADS) * sizing.FIRST_BYTE_S + 2 * part / sizing.NETWORK_BYTES_S
          + part / rates.stage2)
    t_plan = sizing.plan_seconds(headers)
    running1, running2 = min(slabs, sizing.DEPLOYED_CONCURRENCY), min(nblocks, sizing.DEPLOYED_CONCURRENCY)
    wall = t_plan + math.ceil(slabs / running1) * t1 + math.ceil(nblocks / running2) * t2 + sizing.FINALIZE_S
    staged = 1 + sum(b.head for b in blocks) + sum(b.tail for b in blocks)
    gets = headers.requests + slabs + nt * planes + nblocks * (staged + slabs)
    puts = slabs * (nblocks + 2) + nblocks + 7
    pixel_bytes = image * nt * planes
    gb_seconds = ((slabs * t1 + nblocks * t2) * sizing.BLOCK_MEMORY_MB
                  + (t_plan + sizing.FINALIZE_S) * sizing.PLAN_MEMORY_MB) / 1024
    cost = {"lambda": gb_seconds * sizing.LAMBDA_GB_SECOND_USD + (slabs + nblocks + 2) * sizing.LAMBDA_REQUEST_USD,
            "s3_get": gets * sizing.S3_GET_USD, "s3_put": puts * sizing.S3_PUT_USD,
            "s3_storage": pixel_bytes / 1e9 * S3_STORAGE_GB_MONTH_USD * wall / SECONDS_PER_MONTH,
            "step_functions": ((slabs + nblocks) * sizing.TRANSITIONS_PER_BLOCK + sizing.TRANSITIONS_PER_INGEST + 2)
            * sizing.STEP_TRANSITION_USD}
    cost["total"] = sum(cost.values())
    return {"workers": slabs + nblocks, "slab_objects": slabs, "slab_frames": slab_frames,
            "get_requests": gets, "put_requests": puts, "bytes_read": 2 * pixel_bytes,
            "bytes_written": pixel_bytes + layout.total_bytes, "worker_memory_bytes": max(memory1, memory2),
            "stage_memory_bytes": [memory1, memory2], "stage_seconds": [round(t1, 1), round(t2, 1)],
            "lambda_wall_seconds": round(wall, 1), "cost_usd": {k: round(v, 4) for k, v in cost.items()}}


def modelled(sample: dict) -> dict:
    """Both plans for 1,300 / 3,900 / 11,700 frames with the measured CPU per byte: stage 1's
    and stage 2's as measured on the sample; the one-stage block's as ingest_scale.py
    measured it at each cadence's full frame count (results/ingest-scale.json: the
    transposition slows as frames grow, so the sample's own figure would flatter it)."""
    from cubecut.cube.layout import CubeLayout
    from cubecut.fitsio import padded
    from cubecut.ingest import sizing
    from cubecut.ingest.partition import plan_blocks

    runs = {r["kind"]: r for r in sample["runs"]}
    stage1 = runs["stage-1"]["slab_bytes"] / runs["stage-1"]["cpu_s"]
    stage2 = runs["stage-2"]["part_bytes"] / runs["stage-2"]["cpu_s"]
    scale = json.loads((RESULTS / "ingest-scale.json").read_text())
    block = {c["frames"]: c["lambda"]["cpu_bytes_per_s"] for c in scale["cadences"]}
    out: dict = {"cpu_bytes_per_s": {"sample_block": runs["one-stage"]["part_bytes"] / runs["one-stage"]["cpu_s"],
                                     "block": {str(frames): rate for frames, rate in block.items()},
                                     "block_from": f"results/ingest-scale.json, commit {scale['stamp']['commit']}",
                                     "stage1": stage1, "stage2": stage2},
                 "cadences": {}}
    sampled = sample["layout"]
    for cadence, frames in (("30-min", 1_300), ("10-min", 3_900), ("200-s", 11_700)):
        rates = CpuRates(block[frames], stage1, stage2)
        table = padded(sampled["table_bytes"] * frames // sampled["nt"])  # the table has a row per frame
        layout = CubeLayout(sampled["nrows"], sampled["ncols"], frames, sampled["nplanes"], sampled["head_bytes"],
                            table)
        headers = sizing.Headers(frames, round(sample["header_requests_per_ffi"] * frames),
                                 round(sample["header_bytes_per_ffi"] * frames))
        blocks, plan_json = plan_blocks(layout), round(sample["plan_json_bytes_per_ffi"] * frames)
        out["cadences"][cadence] = {"one_stage": one_stage(layout, blocks, headers, plan_json, rates),
                                    "two_stage": two_stage(layout, blocks, headers, plan_json, rates,
                                                           sample["slab_frames"])}
    return out


def markdown(report: dict) -> str:
    s, sample = report["stamp"], report["sample"]
    runs = {r["kind"]: r for r in sample["runs"]}
    lines = [f"# The two-stage transpose against the one-stage block ({s['started']}, commit {s['commit']})", "",
             f"`{s['command']}` on {s['machine']['cpu']} x {s['machine']['cpus']}, "
             f"{s['machine']['memory_gb']:.0f} GB; load average {s['load_before'][0]:.1f} before, "
             f"{report['load_after'][0]:.1f} after. Sample: {sample['frames']:,} full-size 2078 x 2136 SPOC FFIs "
             f"(flux + error) of sector {SECTOR} made up by `synthserver.py`; rows {sample['rows'][0]}-"
             f"{sample['rows'][1] - 1} (block {sample['block']}); slabs of {sample['slab_frames']} frames. Each run "
             "in a fresh process; every part checked byte for byte by the server as it arrived.", "",
             "| run | output MiB | CPU s | wall s (here) | CPU MB/s of output | peak MiB over base | GETs | GET MiB "
             "| parts checked, identical |", "|" + "---|" * 9]
    for kind in ("one-stage", "stage-1", "stage-2"):
        r = runs[kind]
        out = r.get("part_bytes", r.get("slab_bytes"))
        lines.append(f"| {kind} | {out / 2**20:,.0f} | {r['cpu_s']:.1f} | {r['wall_s']:.1f} | "
                     f"{out / r['cpu_s'] / 1e6:.1f} | {(r['peak_rss'] - r['base_rss']) / 2**20:,.0f} | "
                     f"{r['get_requests']:,} | {r['get_bytes'] / 2**20:,.0f} | {r['server']['parts_checked']}, "
                     f"{'yes' if r['server']['all_parts_identical'] else 'NO'} |")
    a = runs["astrocut"]
    lines.append(f"| astrocut CubeFactory (the same FFIs cut down to these rows, local files) | "
                 f"{a['cube_bytes'] / 2**20:,.0f} (its cube) | {a['cpu_s']:.1f} | {a['wall_s']:.1f} | "
                 f"{a['cube_bytes'] / a['cpu_s'] / 1e6:.1f} | {(a['peak_rss'] - a['base_rss']) / 2**20:,.0f} | – | – | "
                 f"pixels = the block's: {'yes' if a['same_pixels_as_block'] else 'NO'} |")
    rates = report["model"]["cpu_bytes_per_s"]
    lines += ["", "Modelled per cube on Lambda (`benchmarks/ingest_two_stage.py`'s `one_stage` and `two_stage`, "
              "cubecut.ingest.sizing's assumptions, 200 workers of 5120 MB, 27 day prefixes; stage s = one worker "
              f"of each stage). CPU per byte: stage 1 {rates['stage1'] / 1e6:.1f} MB/s and stage 2 "
              f"{rates['stage2'] / 1e6:.1f} MB/s as measured above; the one-stage block's as measured at each "
              "cadence's full frame count ("
              + ", ".join(f"{int(f):,} frames {r / 1e6:.1f} MB/s" for f, r in rates["block"].items())
              + f"; {rates['block_from']}), not the sample's {rates['sample_block'] / 1e6:.1f} MB/s:", "",
              "| cadence | plan | workers | GETs | PUTs | GB read + written | worker MiB | stage s | wall min "
              "| $ Lambda | $ GET | $ PUT | $ total |", "|" + "---|" * 13]
    for cadence, both in report["model"]["cadences"].items():
        for name, m in both.items():
            c = m["cost_usd"]
            lines.append(
                f"| {cadence} | {name} | {m['workers']} | {m['get_requests'] / 1e6:.3f} M | {m['put_requests']:,} | "
                f"{(m['bytes_read'] + m['bytes_written']) / 1e9:,.0f} | {m['worker_memory_bytes'] / 2**20:,.0f} | "
                f"{' + '.join(f'{x:.0f}' for x in m['stage_seconds'])} | {m['lambda_wall_seconds'] / 60:.1f} | "
                f"{c['lambda']:.2f} | {c['s3_get']:.2f} | {c['s3_put']:.2f} | {c['total']:.2f} |")
    lines.append("")
    for cadence, both in report["model"]["cadences"].items():
        one, two = both["one_stage"], both["two_stage"]
        cheaper = "two-stage" if two["cost_usd"]["total"] < one["cost_usd"]["total"] else "one-stage"
        faster = "two-stage" if two["lambda_wall_seconds"] < one["lambda_wall_seconds"] else "one-stage"
        lines.append(f"- {cadence}: cheaper {cheaper} (${one['cost_usd']['total']:.2f} one-stage, "
                     f"${two['cost_usd']['total']:.2f} two-stage), faster {faster} "
                     f"({one['lambda_wall_seconds'] / 60:.1f} / {two['lambda_wall_seconds'] / 60:.1f} min).")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=1_170, help="FFIs in the sample (a 200-s sector has 11,700)")
    parser.add_argument("--slab-frames", type=int, default=SLAB_FRAMES, help="FFIs per slab object (stage 1)")
    parser.add_argument("--worker", nargs=4, metavar=("KIND", "PLAN", "ARG", "SLAB"), help=argparse.SUPPRESS)
    parser.add_argument("--astrocut", nargs=2, metavar=("FOLDER", "CUBE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    unsigned_environment()
    if args.worker:
        kind, plan_url, argument, slab = args.worker
        worker(kind, plan_url, int(argument), int(slab))
        return 0
    if args.astrocut:
        astrocut_worker(*args.astrocut)
        return 0
    report: dict = {"stamp": stamp(sys.argv), "sample": measure(args.frames, args.slab_frames)}
    report["load_after"] = os.getloadavg()
    report["model"] = modelled(report["sample"])
    print(save("ingest-two-stage", report, markdown))
    return 0


if __name__ == "__main__":
    sys.exit(main())
