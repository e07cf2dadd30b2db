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
    import importlib

    import cubecut
    from cubecut.cutout import clear_cache
    from cubecut.storage import Location, ReadStats, s3_client
    from cubecut.storage.s3_obstore import store_for

    # Imports before timing, as for the other tools: cubecut loads its cutout engine (and
    # astropy's WCS, coordinates, FITS) on first use, a cold process's cost, which
    # benchmarks/imports.py measures.
    importlib.import_module("cubecut.cutout.engine")
    cubes, coords, size, threads = job["cubes"], job["coords"], job["size"], job["threads"]
    # The clients exist before timing (a long-lived service's state): botocore's, and
    # obstore's store of each bucket, through which the cutout engine reads.
    s3_client()
    for bucket in {Location.parse(cube).bucket for cube in cubes if cube.startswith("s3://")}:
        store_for(bucket)

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
    if any(cube.startswith("s3://") for cube in cubes):
        import fsspec

        # Its client set up before timing, as cubecut's: the s3fs filesystem astrocut 1.3.0
        # opens cubes with (fsspec caches it by these arguments), connected.
        fsspec.filesystem("s3", default_block_size=10_000, anon=True).connect()

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


# ------------------------------------------------------------------------------ CPU per TPF

def run_cpu(job: dict) -> dict:
    """CPU seconds (process_time) per TPF written as FITS bytes with checksums, local cube.

    ``writer``: ``cubecut`` (cutout_files: the fast writer), ``reference`` (cubecut's
    astropy-built HDUList + writeto(checksum=True): the writer before issue 17) or
    ``astrocut`` (CutoutFactory.cube_cut(memory_only=True) + writeto(checksum=True)).
    Every run reads the cube's rows too (local pread), as a cutout must.
    """
    import io

    from astropy.coordinates import SkyCoord

    cube, coord, size, n = job["cube"], job["coord"], job["size"], job["repeats"]
    if job["writer"] == "astrocut":
        from astrocut import CutoutFactory

        factory = CutoutFactory()

        def once() -> int:
            buffer = io.BytesIO()
            factory.cube_cut(cube, coord, size, memory_only=True).writeto(buffer, checksum=True)
            return len(buffer.getvalue())
    elif job["writer"] == "reference":
        from cubecut.cutout import cutout_box, ffi_wcs, load_index, read_box, reference_tpf
        from cubecut.storage import FileSource, Location

        def once() -> int:
            index = load_index(cube)
            target = SkyCoord(*map(float, coord.split()), unit="deg")
            box = cutout_box(ffi_wcs(index), target, size)
            flux, flux_err = read_box(FileSource(Location.parse(cube)), index, box, threads=1)
            buffer = io.BytesIO()
            reference_tpf(index, box, flux, flux_err, target).writeto(buffer, checksum=True)
            return len(buffer.getvalue())
    else:
        from cubecut.cutout import cutout_files

        def once() -> int:
            return len(cutout_files(cube, coord, size, threads=1)[0].data)

    once()  # warm: imports, the cube index and the header template are cached
    times = []
    for _ in range(n):
        c0 = time.process_time()
        nbytes = once()
        times.append(time.process_time() - c0)
    times.sort()
    return {"cpu_s_median": times[len(times) // 2], "cpu_s_min": times[0], "repeats": n, "bytes": nbytes}


def run_rawget(job: dict) -> dict:
    """The I/O alone: a cutout's row ranges fetched at once through the same client as
    cubecut's pixel reads (obstore), nothing built: what this server allows at best."""
    from concurrent.futures import ThreadPoolExecutor

    from astropy.coordinates import SkyCoord

    from cubecut.cutout import cutout_box, ffi_wcs, load_index
    from cubecut.cutout.reader import merged_spans, open_cube
    from cubecut.storage import Location

    location = Location.parse(job["cube"])
    index = load_index(location)
    boxes = [cutout_box(ffi_wcs(index), SkyCoord(*map(float, c.split()), unit="deg"), job["size"])
             for c in job["coords"]]
    spans = merged_spans(index, boxes)
    per_column = index.nt * index.nplanes * 4
    ranges = [(index.row_offset(s.y) + s.x0 * per_column, index.row_offset(s.y) + s.x1 * per_column) for s in spans]
    source = open_cube(location, index, None)
    runs = []
    with ThreadPoolExecutor(min(len(ranges), 128)) as pool:
        list(pool.map(lambda r: source.read(*r), ranges))
        for _ in range(job.get("repeats", 5)):
            runs.append(timed(lambda: {"n": len(list(pool.map(lambda r: source.read(*r), ranges)))},
                              job.get("control")))
    return {"warm": runs}


# ------------------------------------------------------------------------------ TESScut route

def _zip(members: list[tuple[str, bytes]], level: int | None) -> bytes:
    import io
    import zipfile

    buffer = io.BytesIO()
    method = zipfile.ZIP_STORED if level is None else zipfile.ZIP_DEFLATED
    with zipfile.ZipFile(buffer, "w", compression=method, compresslevel=level) as archive:
        for name, data in members:
            archive.writestr(name, data)
    return buffer.getvalue()


def run_route(job: dict) -> dict:
    """The TESScut route's work for one request, timed by phase: read (index + rows),
    build (TPF bytes), compress (zip, per level), deliver (PUT of the zip to S3).

    ``tool``: cubecut (what cubecut.tesscut.service does) or astrocut (cube_cut, writeto,
    then the same zip and PUT).
    """
    import io

    from astropy.coordinates import SkyCoord

    from cubecut.storage import ReadStats, put_bytes, s3_client

    s3_client()
    cube, coord, size = job["cube"], job["coord"], job["size"]
    levels = job.get("levels", [None, 1, 6])
    runs = []
    for rnd in range(job.get("repeats", 2)):
        phase = {}
        stats = ReadStats()
        if job["engine"] == "cubecut":
            from cubecut.cutout import clear_cache, cutout_box, ffi_wcs, fill_box, load_index, read_chunks, tpf_bytes
            from cubecut.cutout.reader import open_cube
            from cubecut.storage import Location

            clear_cache()
            t0 = time.perf_counter()
            location = Location.parse(cube)
            index = load_index(location, stats)
            target = SkyCoord(*map(float, coord.split()), unit="deg")
            box = cutout_box(ffi_wcs(index), target, size)
            chunks = read_chunks(open_cube(location, index, stats), index, [box])
            t1 = time.perf_counter()
            data = tpf_bytes(index, box, lambda f, e: fill_box(index, box, chunks, f, e), target)
            t2 = time.perf_counter()
        else:
            from astrocut import CutoutFactory

            t0 = time.perf_counter()
            hdul = CutoutFactory().cube_cut(cube, coord, size, memory_only=True)
            t1 = time.perf_counter()
            buffer = io.BytesIO()
            hdul.writeto(buffer, checksum=True)
            data = buffer.getvalue()
            t2 = time.perf_counter()
        phase.update(read_s=t1 - t0, build_s=t2 - t1, tpf_bytes=len(data), requests=stats.requests)
        for level in levels:
            c0 = time.perf_counter()
            body = _zip([("tpf.fits", data)], level)
            c1 = time.perf_counter()
            put_bytes(f"{job['results']}/r{rnd}-{level}.zip", body, "application/zip")
            c2 = time.perf_counter()
            phase[f"zip_{level}"] = {"compress_s": c1 - c0, "deliver_s": c2 - c1, "zip_bytes": len(body)}
        runs.append(phase)
    return {"runs": runs}


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
    from cubecut.ingest.transpose import write_block
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
              "block_worker": run_block_worker, "cpu": run_cpu, "route": run_route, "rawget": run_rawget}[job["tool"]]
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
