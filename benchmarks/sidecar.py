"""The index sidecar at a 200-s sector's depth (11,700 frames): its size and what loading it
costs a cold cutout (GET + parse), version 1 (JSON lists) beside version 2 (the per-frame
table as one compressed binary block, cubecut.cube.index).

    .venv/bin/python benchmarks/sidecar.py [--repeats 15]

The index is the ``s0056`` cube's (data.py: 11,700 frames of sector 56, made and ingested
once; the per-frame columns and FFI names are a real 200-s sector's, only the cube's rows
and columns are few), with its TPF header template as ingest publishes it. Both versions
are put on the local S3 server the tests use (moto, ``cubecut_infra.local.s3server``) and
read as a cold cutout reads them: ``read_sidecar`` through obstore's ``get_object``
(``cubecut.cube.index_cache.load_index``'s path), timed in this process, interleaved,
medians of ``--repeats``; beside them a GET of a 1-byte object (this server's round trip)
and the parse alone (``CubeIndex.from_json`` on the bytes, no network). On S3 the GET would
add one round trip (~20-60 ms first byte, the same for both versions) and the bytes at
~100 MB/s per connection: the model column. Results: results/sidecar.json and .md
(stamp.py). Nothing is asserted; tests/library/test_sidecar_format.py checks the format.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import asdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import data  # noqa: E402 - after the path insert
import stamp  # noqa: E402
from data import log  # noqa: E402

BUCKET = "cubecut-sidecar-bench"
#: S3 per-connection bandwidth assumed by the model (bytes/s), as benchmarks/README.md's shaper.
S3_BYTES_PER_S = 100e6


def timed(work) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def measure(repeats: int) -> dict:
    from cubecut.cube.index import CubeIndex
    from cubecut.cube.sidecar import read_sidecar
    from cubecut.storage import Location
    from cubecut.storage.s3_obstore import get_object
    from cubecut_infra.local.s3server import LocalS3

    cube = data.cube(data.CADENCE_200S)
    index = CubeIndex.from_json(Path(f"{cube}.index.json").read_bytes())
    versions = {"1": json.dumps({**asdict(index), "version": 1}, allow_nan=True, separators=(",", ":")).encode(),
                "2": index.to_json()}
    with LocalS3() as s3:
        os.environ.update(AWS_ENDPOINT_URL=s3.endpoint, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
                          AWS_DEFAULT_REGION="us-east-1")
        s3.create_bucket(BUCKET)
        client = s3.client()
        client.put_object(Bucket=BUCKET, Key="one-byte", Body=b"x")
        for version, body in versions.items():
            client.put_object(Bucket=BUCKET, Key=f"v{version}/cube.fits.index.json", Body=body)
        one = Location("s3", BUCKET, "one-byte")
        cubes = {version: Location("s3", BUCKET, f"v{version}/cube.fits") for version in versions}
        get_object(one, None)  # the client and its connection are set up before timing, as in contenders.py
        runs: dict[str, list[float]] = {"round trip": []}
        for _ in range(repeats):  # interleaved, so load changes hit every row alike
            runs["round trip"].append(timed(lambda: get_object(one, None)))
            for version, body in versions.items():
                start = time.perf_counter()
                loaded, _ = read_sidecar(cubes[version], get=get_object)
                runs.setdefault(f"v{version} GET + parse", []).append(time.perf_counter() - start)
                assert loaded is not None and loaded.nt == index.nt, f"v{version} did not load"
                runs.setdefault(f"v{version} parse", []).append(timed(lambda body=body: CubeIndex.from_json(body)))
    medians = {name: statistics.median(values) for name, values in runs.items()}
    rt = medians["round trip"]
    out = {"frames": index.nt, "repeats": repeats, "template_bytes": len(json.dumps(index.tpf_template)),
           "runs_s": runs, "median_s": medians, "versions": {}}
    for version, body in versions.items():
        load = medians[f"v{version} GET + parse"]
        out["versions"][version] = {
            "bytes": len(body), "get_parse_s": load, "parse_s": medians[f"v{version} parse"],
            "over_round_trip_s": load - rt, "s3_model_extra_s": load - rt + len(body) / S3_BYTES_PER_S}
    return out


def report(r: dict) -> str:
    lines = [f"# The index sidecar at {r['frames']:,} frames (a 200-s sector)", "",
             stamp.markdown({"sidecar.py": r["stamp"]}),
             f"Medians of {r['repeats']} interleaved cold loads (`read_sidecar` through obstore, as a cold cutout) "
             f"on the local moto S3 server; this server's round trip (1-byte GET): "
             f"{r['median_s']['round trip'] * 1e3:.1f} ms. The TPF header template stored in both is "
             f"{r['template_bytes'] / 1e3:.0f} KB. *Cost beyond one round trip on S3* = GET + parse here minus this "
             f"server's round trip, plus the bytes at {S3_BYTES_PER_S / 1e6:.0f} MB/s.", "",
             "| sidecar | bytes | GET + parse ms | parse alone ms | beyond one round trip here ms | "
             "beyond one round trip on S3 (model) ms |", "|---|---|---|---|---|---|"]
    for version, v in r["versions"].items():
        lines.append(f"| version {version} | {v['bytes']:,} | {v['get_parse_s'] * 1e3:.1f} | {v['parse_s'] * 1e3:.1f} | "
                     f"{v['over_round_trip_s'] * 1e3:.1f} | {v['s3_model_extra_s'] * 1e3:.1f} |")
    old, new = r["versions"]["1"], r["versions"]["2"]
    lines += ["", f"Version 2 is {old['bytes'] / new['bytes']:.1f}x smaller and loads "
              f"{old['get_parse_s'] / new['get_parse_s']:.1f}x faster than version 1 here."]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    run = stamp.begin()
    log("sidecar: the s0056 cube's index, versions 1 and 2, on moto ...")
    results = {"stamp": run, **measure(args.repeats)}
    stamp.end(run)
    print(stamp.save("sidecar", results, report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
