"""Run one contender's job in this (fresh) process and print one JSON line of results.

    python contenders.py '{"tool": "cubecut", ...}'

Each process: imports and client set-up happen before timing; then ``cold`` timed runs
(cubecut: index cache cleared before each; tesscube: a new TESSCube with its header
caches cleared; astrocut always re-reads headers, it has no cache) and ``warm`` timed
runs (metadata cached where the tool can cache it). Requests and bytes are counted at the
shaping proxy (all tools) and by cubecut's ReadStats (cubecut). Peak RSS is this
process's ru_maxrss.
"""
from __future__ import annotations

import json
import os
import resource
import sys
import time
import urllib.request
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
warnings.filterwarnings("ignore")


def proxy(control: int | None, what: str) -> dict:
    if not control:
        return {}
    with urllib.request.urlopen(f"http://127.0.0.1:{control}/{what}", timeout=10) as r:
        return json.loads(r.read())


def rss_mb() -> float:
    """Peak resident set of this process (VmHWM, MiB).

    Not ru_maxrss: on Linux that is carried over from the parent across fork+exec, so a
    child of a big parent would report the parent's peak.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def timed(fn, control) -> dict:
    proxy(control, "reset")
    t0 = time.perf_counter()
    extra = fn() or {}
    wall = time.perf_counter() - t0
    counted = proxy(control, "stats")
    return {"wall_s": wall, "proxy_requests": counted.get("requests"),
            "proxy_bytes": counted.get("body_bytes"), "max_in_flight": counted.get("max_in_flight"),
            **extra}


# ------------------------------------------------------------------------------ cubecut

def run_cubecut(job: dict) -> dict:
    import cubecut
    from cubecut.cutout import clear_cache
    from cubecut.storage import ReadStats, s3_client

    s3_client()  # the pooled client exists before timing (a long-lived service's state)
    if job.get("patch") == "wcs_cache":
        # experiment (not a library change): build the FFI WCS once per cube index instead of
        # once per TPF (cubecut.cutout.tpf.build_tpf calls geometry.ffi_wcs every time)
        from cubecut.cutout import tpf as tpf_module
        from cubecut.cutout import geometry
        cache = {}

        def cached_ffi_wcs(index):
            key = id(index)
            if key not in cache:
                cache[key] = (index, geometry.ffi_wcs(index))
            return cache[key][1]

        tpf_module.ffi_wcs = cached_ffi_wcs
    cubes, coords, size, threads = job["cubes"], job["coords"], job["size"], job["threads"]

    def once():
        stats = ReadStats()

        def one(cube):
            return cubecut.cutout(cube, coords, size, threads=threads, stats=stats)

        if len(cubes) == 1:
            out = [one(cubes[0])]
        else:  # a multi-sector request: cubes concurrently, as cubecut's service does
            with ThreadPoolExecutor(max_workers=min(8, len(cubes))) as pool:
                out = list(pool.map(one, cubes))
        n = sum(len(o) for o in out)
        return {"tpfs": n, "requests": stats.requests, "bytes": stats.bytes}

    runs = {"cold": [], "warm": []}
    for _ in range(job.get("cold", 2)):
        clear_cache()
        runs["cold"].append(timed(once, job.get("control")))
    for _ in range(job.get("warm", 2)):
        runs["warm"].append(timed(once, job.get("control")))
    return runs


# ------------------------------------------------------------------------------ astrocut

def run_astrocut(job: dict) -> dict:
    from astrocut import CutoutFactory

    cubes, coords, size = job["cubes"], job["coords"], job["size"]
    factory = CutoutFactory()

    def once():
        n = 0
        for cube in cubes:  # astrocut: one cube and one target per call, sequentially
            for c in coords:
                hdul = factory.cube_cut(cube, c, size, memory_only=True, threads=job.get("threads", "auto"))
                n += 1
                del hdul
        return {"tpfs": n}

    runs = {"cold": [], "warm": []}
    for _ in range(job.get("cold", 1)):
        runs["cold"].append(timed(once, job.get("control")))
    for _ in range(job.get("warm", 1)):
        runs["warm"].append(timed(once, job.get("control")))
    return runs


# ------------------------------------------------------------------------------ tesscube

def run_tesscube(job: dict) -> dict:
    # lkspacecraft downloads SPICE kernels from the internet on import; there is none here,
    # so a stub stands in (barycentric correction = 0; it is CPU work, not I/O).
    sys.path[:0] = [str(HERE / "stubs"), str(HERE / "work" / "tesscube-deps")]  # isolated deps (requirements.txt)
    import tesscube
    from tesscube import query
    from astropy.coordinates import SkyCoord

    sector, size = job["sector"], job["size"]
    coords = [SkyCoord(*map(float, c.split()), unit="deg") for c in job["coords"]]
    state = {}

    def new_cube():
        query.get_primary_hdu.cache_clear()
        query.get_last_hdu.cache_clear()
        state["cube"] = tesscube.TESSCube(sector=sector, camera=1, ccd=1)

    def cutouts():
        query.QueryMixin.get_flux.cache_clear()  # its pixel cache would make repeats free
        for c in coords:
            state["cube"].get_tpf(c, shape=(size, size))
        return {"tpfs": len(coords)}

    def cold():
        new_cube()
        return cutouts()

    runs = {"cold": [], "warm": []}
    for _ in range(job.get("cold", 2)):
        runs["cold"].append(timed(cold, job.get("control")))
    for _ in range(job.get("warm", 2)):
        runs["warm"].append(timed(cutouts, job.get("control")))
    return runs


# ------------------------------------------------------------------------------ ingest

def run_ingest_cubecut(job: dict) -> dict:
    from cubecut.ingest.run import ingest
    from cubecut.storage import ReadStats, s3_client

    s3_client()
    stats = ReadStats()
    t0 = time.perf_counter()
    result = ingest(job["ffis"], job["cube"], workers=job["workers"], block_bytes=job.get("block_bytes", 64 << 20),
                    stats=stats)
    return {"wall_s": time.perf_counter() - t0, "cube_bytes": result.size if hasattr(result, "size") else None,
            "requests": stats.requests, "bytes": stats.bytes}


def run_ingest_astrocut(job: dict) -> dict:
    from astrocut import CubeFactory

    t0 = time.perf_counter()
    CubeFactory().make_cube(job["ffis"], job["cube"], max_memory=job["max_memory_gb"], verbose=False)
    return {"wall_s": time.perf_counter() - t0, "cube_bytes": os.path.getsize(job["cube"])}


def run_block_worker(job: dict) -> dict:
    """One block worker as a Lambda runs it: plan (headers only), then one block."""
    from cubecut.ingest.block import write_block
    from cubecut.ingest.finalize import abort_ingest
    from cubecut.ingest.plan import make_plan
    from cubecut.storage import ReadStats, s3_client

    s3_client()
    t0 = time.perf_counter()
    plan = make_plan(job["ffis"], job["cube"], block_bytes=job.get("block_bytes", 64 << 20))
    plan_s = time.perf_counter() - t0
    before = rss_mb()
    block = plan.blocks[min(1, len(plan.blocks) - 1)]
    stats = ReadStats()
    t0 = time.perf_counter()
    write_block(plan, block.index, stats=stats)
    wall = time.perf_counter() - t0
    after = rss_mb()
    try:
        abort_ingest(plan)
    except Exception:  # s3rver has no AbortMultipartUpload; its upload folder is left behind
        pass
    return {"wall_s": wall, "plan_s": plan_s, "block_bytes": block.size, "block_rows": block.row1 - block.row0,
            "rss_before_block_mb": before, "rss_after_block_mb": after, "requests": stats.requests,
            "bytes": stats.bytes, "nblocks": len(plan.blocks)}


def main() -> None:
    job = json.loads(sys.argv[1])
    t0 = time.perf_counter()
    runner = {"cubecut": run_cubecut, "astrocut": run_astrocut, "tesscube": run_tesscube,
              "ingest_cubecut": run_ingest_cubecut, "ingest_astrocut": run_ingest_astrocut,
              "block_worker": run_block_worker}[job["tool"]]
    try:
        out = {"ok": True, **runner(job)}
    except Exception as exc:  # report, never hide
        import traceback
        out = {"ok": False, "error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()[-2000:]}
    out["peak_rss_mb"] = rss_mb()
    out["process_s"] = time.perf_counter() - t0
    print("RESULT " + json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
