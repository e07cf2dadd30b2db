"""``cubecut bulk``: a target catalog cut out of cubes, here or on the bulk state machine."""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from pathlib import PurePosixPath

from tqdm import tqdm

from cubecut.errors import CubecutError, InputError

from .common import add_command, pixels

#: Seconds between two looks at a state machine execution.
POLL_SECONDS = 1.0


def bulk(args: argparse.Namespace) -> int:
    nx, ny = pixels(args.size)
    prefix = None if args.cubes else (args.catalog_prefix or os.environ.get("CUBECUT_CUBES"))
    if not args.cubes and not prefix and args.stack is None:  # the state machine uses its stack's cubes
        raise InputError("give --cubes, or --catalog-prefix (or CUBECUT_CUBES) to use every cube containing "
                         "each target")
    bar = tqdm(total=None, unit="TPF", desc="bulk", disable=args.quiet, file=sys.stderr)
    plans = []

    def planned(plan) -> None:
        plans.append(plan)
        bar.total = plan.todo
        bar.refresh()
    try:
        if args.stack is not None:
            summary = _on_stack(args, (nx, ny), bar)
        else:
            from cubecut.bulk import Limits, run_job

            summary = run_job(args.catalog, args.out, cubes=args.cubes, catalog_prefix=prefix, size=(nx, ny),
                              workers=args.workers, resume=not args.no_resume,
                              limits=Limits.from_settings(os.environ), shards=args.shards,
                              on_plan=planned,
                              on_target=lambda row: bar.update(1)).as_dict()
    except KeyboardInterrupt:
        bar.close()
        if plans:  # what is on disk now, not what the progress bar last heard
            from cubecut.bulk.job import written_and_left

            written, left = written_and_left(plans[0])
            print(f"cubecut: interrupted: {written} written, {left} left; run the same command to resume",
                  file=sys.stderr)
        raise
    finally:
        bar.close()
    counts = ", ".join(f"{n} {status}" for status, n in sorted(summary["counts"].items()))
    print(f"{summary['results']}  ({summary['catalog_rows']} catalog rows: {counts}; TPFs under {summary['tpfs']})")
    return 0


def _on_stack(args: argparse.Namespace, size_xy: tuple[int, int], bar: tqdm) -> dict:
    """Start the bulk state machine and follow it; returns the job's summary."""
    import boto3

    from cubecut.bulk.job import targets_done, tile_sizes
    from cubecut.bulk.submit import failure_reason
    from cubecut.storage import Location, get_bytes, put_bytes

    arn = args.stack or os.environ.get("CUBECUT_BULK_JOBS_STATE_MACHINE_ARN")
    if not arn:
        raise InputError("--stack needs the bulk state machine's ARN (or CUBECUT_BULK_JOBS_STATE_MACHINE_ARN; "
                         "the stack output BulkStateMachineArn)")
    out = Location.parse(args.out)
    if not out.is_s3:
        raise InputError(f"--stack writes to S3: --out must be an s3:// prefix, got {args.out}")
    catalog = Location.parse(args.catalog)
    if not catalog.is_s3:  # the Plan function reads the catalog from S3: upload it beside the results
        data, _ = get_bytes(catalog)
        catalog = Location.parse(f"{out.url.rstrip('/')}/catalog{PurePosixPath(catalog.key).suffix or '.csv'}")
        put_bytes(catalog, data, "text/csv")
    run = f"bulk-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
    request = {"catalog": catalog.url, "out": out.url, "cubes": args.cubes or None, "size": list(size_xy),
               "resume": not args.no_resume, "shards": args.shards}
    sfn = boto3.client("stepfunctions")
    execution = sfn.start_execution(stateMachineArn=arn, name=run, input=json.dumps(request))["executionArn"]
    sizes: dict[str, int] | None = None
    while True:
        status = sfn.describe_execution(executionArn=execution)
        if sizes is None:
            sizes = tile_sizes(out.url, run)
            bar.total = sum(sizes.values()) if sizes is not None else None
        if sizes is not None:
            bar.update(targets_done(out.url, run, sizes) - bar.n)
        if status["status"] != "RUNNING":
            break
        time.sleep(POLL_SECONDS)
    if status["status"] != "SUCCEEDED":
        raise CubecutError(f"bulk job {run} {status['status'].lower()}: {failure_reason(status)}")
    return json.loads(status["output"])


def register(commands: argparse._SubParsersAction) -> None:
    p = add_command(commands, "bulk", bulk, help="cut TPFs for every target of a catalog (resumable; locally or on the state machine)",
        description="Cut a TPF for every target of a CSV/ECSV catalog (columns ra, dec in degrees; optional size "
        "as N or NXxNY pixels, id, tic or ticid, and tmag, which go into the TPF as OBJECT, TICID and TESSMAG; "
        "names case-insensitive) from the cubes given, or from every cube containing each target. Targets "
        "are sorted by row so that each row span is read once. Writes OUT/tpfs/<cube>/<astrocut name>.fits, and "
        "OUT/results.csv with one row per catalog row and cube (status written, skipped, off_footprint, "
        "malformed or failed, with the reason). Running it again skips TPFs already written.",
        epilog="examples:\n"
        "  cubecut bulk stars.csv --cubes s3://bucket/cubes/tess-s0001-1-1-cube.fits --out results/\n"
        "  cubecut bulk stars.ecsv --catalog-prefix s3://bucket/cubes/ --out s3://bucket/results/job1 --stack ARN")
    p.add_argument("catalog", help="target catalog: local path or s3:// URL (CSV or ECSV)")
    p.add_argument("--out", required=True, help="output folder or s3:// prefix")
    p.add_argument("--cubes", nargs="+", metavar="CUBE", help="cube paths or s3:// URLs")
    p.add_argument("--catalog-prefix", metavar="PREFIX",
                   help="without --cubes: use every cube under this prefix that contains a target "
                   "(default: $CUBECUT_CUBES; with --stack, the stack's cube prefix)")
    p.add_argument("--size", nargs="+", default=["11"], metavar="N",
                   help="default cutout size in pixels: NX [NY] (default 11); a size column overrides it")
    p.add_argument("--workers", type=int, default=1, help="worker processes for a local run (default 1)")
    p.add_argument("--no-resume", action="store_true", help="cut every target again, even those already written")
    p.add_argument("--shards", action="store_true",
                   help="write each tile's TPFs (up to $CUBECUT_BULK_TILE_TARGETS, default 100) as one uncompressed tar, "
                   "OUT/shards/<cube>/<tile>-<digest>.tar, rather than one object per TPF; results.csv gives each "
                   "target's shard and member name"),
    p.add_argument("--stack", nargs="?", const="", default=None, metavar="ARN",
                   help="run on the bulk state machine (ARN, or $CUBECUT_BULK_JOBS_STATE_MACHINE_ARN) instead of "
                   "in this process; --out must then be s3://")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
