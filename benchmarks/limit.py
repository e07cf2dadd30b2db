"""Cutouts at the physical limit (issue 17): cubecut beside astrocut in one run, with the floor.

    python benchmarks/limit.py [--only cpu headline multi route] [--rounds N]

Sections (results in benchmarks/results/limit.json and limit.md; a run of some sections
replaces those and keeps the others, each section stamped with the run that made it,
stamp.py):

* ``cpu``: CPU per 30x30x1,000-frame TPF written as FITS bytes with checksums, from a
  local cube (time.process_time, medians of repeated cutouts, interleaved rounds):
  cubecut's fast writer, cubecut's astropy-built reference TPF (the writer before issue
  17), astrocut 1.3.0.
* ``headline``: 30x30 / 1,000 frames behind the shaper at 30 ms first byte, 100 MB/s per
  connection: cubecut cold and warm vs astrocut, with the floor printed beside: one round
  trip per dependent request (cold: sidecar, then rows; warm: rows) + the largest row
  over one connection's bandwidth + the CPU floor (the ``cpu`` section's cubecut
  minimum); and the server floor: the same row reads alone (nothing built) on that
  server. Run on two local servers behind the same shaper: s3rver, which serves requests
  one at a time (~2-5 ms each, a cost S3 does not have), and ``rangeserver.py``, which
  serves them concurrently as S3 does (read-only: GET/HEAD with Range and If-Match).
* ``multi``: 100 targets of 10x10 in one cutout() call vs astrocut's loop (timed on 20
  targets, scaled: it is linear).
* ``route``: the TESScut route's work for 30x30 and 100x100 (read, build, compress per zip
  level, deliver = PUT of the zip), cubecut vs astrocut + the same zip; compression is
  chosen by measurement: the level with the least compress + deliver time at the shaped
  bandwidth.

Data: the benchmark's s0001 cube (1,000 frames x 256 rows x 2136 columns, see data.py),
on s3rver through the shaper, as run.py. Its sidecar carries the TPF header template
(ingest stores it since issue 17); a cube ingested before gets it added here.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import data  # noqa: E402 - after the path insert
import servers  # noqa: E402
import stamp  # noqa: E402
from data import log  # noqa: E402
from run import REALISTIC, contender, median, min_bytes, publish_cubes, radec  # noqa: E402

SECTIONS = ("cpu", "headline", "headline_concurrent", "multi", "multi_concurrent", "route")


def _cold_warm(res: dict, phase: str) -> list[float]:
    return sorted(r["wall_s"] for r in res.get(phase) or [])


def section_cpu(cube: dict, rounds: int) -> dict:
    coord = radec(cube, 700.0, cube["nrows"] / 2)
    out: dict = {"size": 30, "nt": cube["nt"], "runs": []}
    for rnd in range(rounds):
        for writer, repeats in (("cubecut", 30), ("reference", 8), ("astrocut", 8)):
            res = contender({"tool": "cpu", "writer": writer, "cube": str(cube["path"]), "coord": coord, "size": 30,
                             "repeats": repeats}, dict(os.environ))
            if not res.get("ok"):
                log(f"  cpu {writer}: ERROR {res.get('error')}")
                continue
            out["runs"].append({"round": rnd, "writer": writer, **{k: res[k] for k in ("cpu_s_median", "cpu_s_min", "bytes")}})
            log(f"  cpu r{rnd} {writer:10s} {res['cpu_s_median'] * 1e3:6.1f} ms median, {res['cpu_s_min'] * 1e3:6.1f} ms min "
                f"per TPF ({res['bytes'] / 1e6:.1f} MB)")
    for writer in ("cubecut", "reference", "astrocut"):
        rows = [r for r in out["runs"] if r["writer"] == writer]
        out[writer] = {"cpu_ms_median": 1e3 * median([r["cpu_s_median"] for r in rows]),
                       "cpu_ms_min": 1e3 * min(r["cpu_s_min"] for r in rows)} if rows else None
    return out


class RangeServer:
    """rangeserver.py over s3rver's store folder, in its own process."""

    def __init__(self) -> None:
        self.proc, info = servers._start([sys.executable, str(HERE / "rangeserver.py"), "--store", str(servers.STORE)])
        self.port = info["port"]

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def with_template(path: Path) -> None:
    """Add the TPF header template to a benchmark cube's local sidecar if it has none."""
    import dataclasses

    from cubecut.cube.index import CubeIndex
    from cubecut.cutout.tpf_template import template_state

    sidecar = Path(f"{path}.index.json")
    index = CubeIndex.from_json(sidecar.read_bytes())
    if index.tpf_template is None:
        sidecar.write_bytes(dataclasses.replace(index, tpf_template=template_state(index)).to_json())


def section_headline(shaper, cube: dict, cpu_floor_s: float, rounds: int, server: str) -> dict:
    env = servers.s3_env(shaper.endpoint)
    row = cube["nrows"] / 2
    coord = radec(cube, 700.0, row)
    runs: dict[str, list] = {"cubecut cold": [], "cubecut warm": [], "astrocut cold": [], "rows only": []}
    requests = {}
    for rnd in range(rounds):
        res = contender({"tool": "cubecut", "cubes": [cube["url"]], "coords": [coord], "size": 30, "threads": "auto",
                         "cold": 3, "warm": 3, "control": shaper.control}, env)
        runs["cubecut cold"] += _cold_warm(res, "cold")
        runs["cubecut warm"] += _cold_warm(res, "warm")
        requests["cubecut"] = {p: [(r["proxy_requests"], r["max_in_flight"]) for r in res.get(p) or []]
                               for p in ("cold", "warm")}
        res = contender({"tool": "astrocut", "cubes": [cube["url"]], "coords": [coord], "size": 30, "threads": "auto",
                         "cold": 1, "warm": 0, "control": shaper.control}, env)
        runs["astrocut cold"] += _cold_warm(res, "cold")
        res = contender({"tool": "rawget", "cube": cube["url"], "coords": [coord], "size": 30, "repeats": 3,
                         "control": shaper.control}, env)
        runs["rows only"] += _cold_warm(res, "warm")
        log(f"  headline {server} r{rnd}: " + ", ".join(f"{k} {median(v) or 0:.3f} s" for k, v in runs.items())
            + f" (load {stamp.load_average()[0]:.1f})")
    latency, mbps = shaper.latency_ms / 1e3, shaper.mbps * 1e6
    row_bytes = 30 * cube["nt"] * 8
    sidecar = len(json.dumps(cube["side"]).encode())
    floor = {"warm_s": latency + row_bytes / mbps + cpu_floor_s,
             "cold_s": 2 * latency + sidecar / mbps + row_bytes / mbps + cpu_floor_s,
             "cpu_floor_s": cpu_floor_s, "round_trip_s": latency, "row_bytes": row_bytes, "sidecar_bytes": sidecar}
    rows_only = median(runs["rows only"])
    floor["server_warm_s"] = rows_only + cpu_floor_s
    result = {k: median(v) for k, v in runs.items()}
    return {"latency": shaper.label, "server": server, "runs": runs, "median_s": result, "floor": floor,
            "requests": requests,
            "min_bytes": min_bytes(cube, 30, row),
            "x_vs_astrocut_cold": result["astrocut cold"] / result["cubecut cold"] if result["astrocut cold"] else None,
            "x_vs_astrocut_warm": result["astrocut cold"] / result["cubecut warm"] if result["astrocut cold"] else None,
            "warm_vs_floor": result["cubecut warm"] / floor["warm_s"],
            "warm_vs_server_floor": result["cubecut warm"] / floor["server_warm_s"]}


def section_multi(shaper, cube: dict, server: str = "s3rver") -> dict:
    env = servers.s3_env(shaper.endpoint)
    rng = random.Random(3)
    coords = [radec(cube, rng.uniform(54, 2081), rng.uniform(10, cube["nrows"] - 10)) for _ in range(100)]
    res = contender({"tool": "cubecut", "cubes": [cube["url"]], "coords": coords, "size": 10, "threads": "auto",
                     "cold": 2, "warm": 1, "control": shaper.control}, env)
    timed = 20
    theirs = contender({"tool": "astrocut", "cubes": [cube["url"]], "coords": coords[:timed], "size": 10,
                        "threads": "auto", "cold": 1, "warm": 0, "control": shaper.control}, env)
    rows = contender({"tool": "rawget", "cube": cube["url"], "coords": coords, "size": 10, "repeats": 2,
                      "control": shaper.control}, env)
    ours = median(_cold_warm(res, "cold"))
    loop = theirs["cold"][0]["wall_s"] * 100 / timed if theirs.get("ok") else None
    out = {"targets": 100, "size": 10, "cubecut_cold_s": ours, "cubecut_warm_s": median(_cold_warm(res, "warm")),
           "cubecut_requests": res["cold"][0]["proxy_requests"] if res.get("ok") else None,
           "astrocut_loop_s": loop, "astrocut_timed_targets": timed,
           "astrocut_requests": theirs["cold"][0]["proxy_requests"] * 100 // timed if theirs.get("ok") else None,
           "x": loop / ours if loop and ours else None, "rows_only_s": median(_cold_warm(rows, "warm")),
           "errors": [res.get("error"), theirs.get("error"), rows.get("error")], "server": server,
           "cubecut_cold_runs_s": _cold_warm(res, "cold")}
    log(f"  100 targets: cubecut {ours or 0:.2f} s (rows alone {out['rows_only_s'] or 0:.2f} s), astrocut loop "
        f"{loop or 0:.1f} s ({out['x'] or 0:.1f}x)")
    return out


def section_route(shaper, cube: dict, rounds: int) -> dict:
    env = servers.s3_env(shaper.endpoint)
    coord = radec(cube, 700.0, cube["nrows"] / 2)
    out = {"latency": shaper.label, "cases": []}
    for size in (30, 100):
        for engine in ("cubecut", "astrocut"):
            res = contender({"tool": "route", "engine": engine, "cube": cube["url"], "coord": coord, "size": size,
                             "repeats": rounds, "levels": [None, 1, 6],
                             "results": "s3://cubecut-bench/results"}, env)
            if not res.get("ok"):
                log(f"  route {engine} {size}: ERROR {res.get('error')}")
                continue
            runs = res["runs"]
            case = {"size": size, "engine": engine, "read_s": median([r["read_s"] for r in runs]),
                    "build_s": median([r["build_s"] for r in runs]), "tpf_bytes": runs[0]["tpf_bytes"],
                    "requests": runs[0]["requests"], "zip": {}}
            for level in ("None", "1", "6"):
                zs = [r[f"zip_{level}"] for r in runs]
                case["zip"][level] = {k: median([z[k] for z in zs]) for k in ("compress_s", "deliver_s", "zip_bytes")}
            best = min(case["zip"], key=lambda lv: case["zip"][lv]["compress_s"] + case["zip"][lv]["deliver_s"])
            case["best_level"] = best
            z = case["zip"][best]
            case["total_s"] = case["read_s"] + case["build_s"] + z["compress_s"] + z["deliver_s"]
            out["cases"].append(case)
            log(f"  route {size}x{size} {engine:8s} read {case['read_s']:.3f} build {case['build_s']:.3f} "
                + " ".join(f"zip[{lv}] {v['compress_s']:.3f}+{v['deliver_s']:.3f} s {v['zip_bytes'] / 1e6:.1f} MB"
                           for lv, v in case["zip"].items()) + f" -> best {best}, total {case['total_s']:.3f} s")
    return out


def report(results: dict) -> str:
    stamps = {key: results[key]["stamp"] for key in SECTIONS if isinstance(results.get(key), dict)}
    lines = ["# Cutouts at the physical limit (issue 17)", "",
             "2 shared CPUs: compare ratios within one section; each section is one run:", "",
             stamp.markdown(stamps)]
    cpu = results.get("cpu")
    if cpu:
        lines += ["## CPU per 30x30x1,000-frame TPF (FITS bytes with checksums, local cube)", "",
                  "| writer | median ms | min ms |", "|---|---|---|"]
        for writer, label in (("cubecut", "cubecut (fast writer)"), ("reference", "cubecut before (astropy writeto)"),
                              ("astrocut", "astrocut 1.3.0")):
            if cpu.get(writer):
                lines.append(f"| {label} | {cpu[writer]['cpu_ms_median']:.1f} | {cpu[writer]['cpu_ms_min']:.1f} |")
        if cpu.get("cubecut") and cpu.get("astrocut"):
            lines += ["", f"astrocut / cubecut CPU: **{cpu['astrocut']['cpu_ms_median'] / cpu['cubecut']['cpu_ms_median']:.1f}x**"
                      f"; before / after: {cpu['reference']['cpu_ms_median'] / cpu['cubecut']['cpu_ms_median']:.1f}x", ""]
    for key in ("headline", "headline_concurrent"):
        if results.get(key):
            lines += _headline_report(results[key])
    for multi in filter(None, (results.get("multi"), results.get("multi_concurrent"))):
        lines += [f"## 100 targets 10x10, one call, on {multi.get('server', 's3rver')}", "",
                  f"cubecut {multi['cubecut_cold_s']:.2f} s cold (runs: "
                  f"{', '.join(f'{t:.2f}' for t in multi.get('cubecut_cold_runs_s', []))} s; "
                  f"{multi['cubecut_requests']} requests), "
                  f"{multi['cubecut_warm_s']:.2f} s warm (its row reads alone, nothing built: "
                  f"{multi['rows_only_s']:.2f} s on this server); astrocut's loop {multi['astrocut_loop_s']:.1f} s "
                  f"(timed on {multi['astrocut_timed_targets']}, scaled; ~{multi['astrocut_requests']} requests): "
                  f"**{multi['x']:.1f}x** cold, {multi['astrocut_loop_s'] / multi['cubecut_warm_s']:.1f}x warm.", ""]
    route = results.get("route")
    if route:
        lines += [f"## TESScut route, one sector ({route['latency']}): time split", "",
                  "| size | engine | read s | build s | zip stored: compress + deliver s, MB | deflate 1 | deflate 6 | "
                  "best | total s |", "|---|---|---|---|---|---|---|---|---|"]
        for c in route["cases"]:
            cells = [f"{z['compress_s']:.3f} + {z['deliver_s']:.3f}, {z['zip_bytes'] / 1e6:.1f}" for z in c["zip"].values()]
            best = {"None": "stored", "1": "deflate 1", "6": "deflate 6"}[c["best_level"]]
            lines.append(f"| {c['size']}x{c['size']} | {c['engine']} | {c['read_s']:.3f} | {c['build_s']:.3f} | "
                         + " | ".join(cells) + f" | {best} | {c['total_s']:.3f} |")
        lines.append("")
    return "\n".join(lines)


def _headline_report(head: dict) -> list[str]:
    m, f = head["median_s"], head["floor"]
    server = head.get("server", "s3rver")
    how = ("serves one request at a time" if server == "s3rver"
           else "serves requests concurrently, as S3 does (benchmarks/rangeserver.py)")
    return [f"## 30x30 / 1,000 frames / {head['latency']}, on {server}", "",
            "| | seconds | floor (physical) | floor (this server) |", "|---|---|---|---|",
            f"| cubecut cold | {m['cubecut cold']:.3f} | {f['cold_s']:.3f} | |",
            f"| cubecut warm | {m['cubecut warm']:.3f} | {f['warm_s']:.3f} | {f['server_warm_s']:.3f} |",
            f"| rows alone (no TPF) | {m['rows only']:.3f} | | |",
            f"| astrocut cold | {m['astrocut cold']:.3f} | | |" if m.get("astrocut cold") else "| astrocut cold | failed | | |",
            "",
            (f"astrocut / cubecut: **{head['x_vs_astrocut_cold']:.1f}x cold**, {head['x_vs_astrocut_warm']:.1f}x "
             f"vs cubecut warm; " if head.get("x_vs_astrocut_cold") else "")
            + f"cubecut warm = **{head['warm_vs_floor']:.2f}x the physical floor** "
            f"({head['warm_vs_server_floor']:.2f}x this server's). Floor = {f['round_trip_s'] * 1e3:.0f} ms per "
            f"round trip + {f['row_bytes'] / 1e3:.0f} KB per row at 100 MB/s + CPU floor "
            f"{f['cpu_floor_s'] * 1e3:.1f} ms (cold adds the sidecar GET); this server's floor is the same "
            f"row reads fetched alone + the CPU floor ({server} {how}). "
            + (f"A cold cutout needs two dependent round trips (the index, then the rows), so the most "
               f"any cold cutout could be faster than astrocut here is astrocut cold / the cold floor = "
               f"**{m['astrocut cold'] / f['cold_s']:.1f}x**. " if m.get("astrocut cold") else "")
            + "Both tools' S3 clients are set up before timing (benchmarks/contenders.py).", "",
            "| cubecut run | requests (counted by the proxy) | most in flight |", "|---|---|---|",
            *(f"| {phase} {i + 1} | {requests} | {in_flight} |" for phase, runs in head["requests"]["cubecut"].items()
              for i, (requests, in_flight) in enumerate(runs)), ""]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", default=None, choices=["cpu", "headline", "multi", "route"])
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per section")
    args = parser.parse_args()
    only = set(args.only or ["cpu", "headline", "multi", "route"])
    results = stamp.load("limit") if (stamp.RESULTS / "limit.json").exists() else {}
    run = stamp.begin()
    spec = data.FULL["s0001"]
    s3 = servers.S3rver()
    shaper = None
    try:
        with_template(data.cube(spec))
        cube = publish_cubes(s3, {"s0001": data.cube(spec)})["s0001"]
        if "cpu" in only:
            results["cpu"] = section_cpu(cube, args.rounds)
        cpu_floor = results["cpu"]["cubecut"]["cpu_ms_min"] / 1e3 if results.get("cpu") else 0.0
        shaper = servers.Shaper(s3.port, *REALISTIC)
        if "headline" in only:
            results["headline"] = section_headline(shaper, cube, cpu_floor, args.rounds, "s3rver")
            concurrent = RangeServer()
            fast = servers.Shaper(concurrent.port, *REALISTIC)
            try:
                results["headline_concurrent"] = section_headline(fast, cube, cpu_floor, args.rounds, "rangeserver")
            finally:
                fast.stop()
                concurrent.stop()
        if "multi" in only:
            results["multi"] = section_multi(shaper, cube)
            concurrent = RangeServer()
            fast = servers.Shaper(concurrent.port, *REALISTIC)
            try:
                results["multi_concurrent"] = section_multi(fast, cube, "rangeserver")
            finally:
                fast.stop()
                concurrent.stop()
        if "route" in only:
            results["route"] = section_route(shaper, cube, max(2, args.rounds))
    finally:
        if shaper:
            shaper.stop()
        s3.stop()
    stamp.end(run)
    for key in SECTIONS:
        if key.split("_")[0] in only and isinstance(results.get(key), dict):  # sections of this run
            results[key]["stamp"] = run
    stamp.save("limit", results, report)
    log(f"results in {stamp.RESULTS / 'limit.json'} and limit.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
