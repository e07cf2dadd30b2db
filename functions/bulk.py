"""Lambda handlers of the bulk state machine (``infra/statemachines/bulk.asl.json``).

* ``plan_handler``: ``{request: {catalog, out, cubes?, size?: [nx, ny], resume?, shards?, limits?}, run}`` ->
  ``{out, run, tiles: {Bucket, Key}, results_prefix, ntiles, todo, catalog_rows}``. Reads the
  catalog, places its targets on the cubes named (or on every cube of the stack's cube
  prefix), refuses a job above the caps (``BulkCapError``, with the numbers) and writes the
  tiles, their batches (the
  Distributed Map's items, ``CUBECUT_BULK_TILES_PER_BATCH`` consecutive tiles each) and the
  rows it already knows under ``out/runs/{run}/``. Caps and tile sizes: ``Limits`` from the
  environment (``CUBECUT_BULK_MAX_TARGETS``, ``CUBECUT_BULK_MAX_PIXEL_FRAMES``,
  ``CUBECUT_BULK_TILE_TARGETS``, ``CUBECUT_BULK_TILE_PIXEL_FRAMES``, per cutout
  ``CUBECUT_BULK_MAX_SIDE`` and ``CUBECUT_MAX_PIXEL_FRAMES``), each lowered to the request's
  ``limits`` where those are tighter (the API's jobs carry its per-cutout budget).
* ``batch_handler``: one batch of consecutive tiles ``{Items: [tile, ...], BatchInput: {out, run}}`` ->
  ``{parts: [url, ...], counts}``. Cuts the tiles, writes their TPFs and one part file of
  result rows per tile (outputs stay small however many targets a batch has).
* ``finish_handler``: ``{out, run, map: {ResultWriterDetails: {Bucket, Key}}}`` -> the job's
  summary. Follows the ResultWriter's manifest to every batch's parts and writes
  ``out/results.csv`` and ``out/summary.json``.

Cold start: the bulk package (astropy, the cutout engine) loads with the first invocation
and the Tracer is built then too (:func:`cubecut_app.tracing.traced`), so the import is
light (tests/stack/test_packaging.py).
"""
from __future__ import annotations

import json
import os
from collections import Counter

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from cubecut.errors import InputError
from cubecut.storage import Location, get_bytes
from cubecut_app.tracing import traced

logger = Logger()


def _cube_prefix() -> str | None:
    bucket = os.environ.get("CUBECUT_BUCKET")
    return f"s3://{bucket}/{os.environ.get('CUBECUT_CUBE_PREFIX', 'cubes/')}" if bucket else None


@logger.inject_lambda_context(log_event=False)
@traced
def plan_handler(event: dict, context: LambdaContext) -> dict:
    from cubecut.bulk.job import join, plan_from_request, save_plan
    from cubecut.bulk.plan import Limits

    request, run = event["request"], str(event["run"])
    out = Location.parse(str(request.get("out", "")))
    if not out.is_s3:
        raise InputError(f"a bulk job's out must be an s3:// prefix, got {request.get('out')!r}")
    size = request.get("size") or [11, 11]
    plan = plan_from_request(str(request["catalog"]), out.url, cubes=request.get("cubes") or None,
                             catalog_prefix=_cube_prefix(), size=(int(size[0]), int(size[-1])),
                             resume=bool(request.get("resume", True)), shards=bool(request.get("shards", False)),
                             limits=Limits.from_settings(os.environ).tightened(request.get("limits")))
    tiles, _ = save_plan(plan, run, int(os.environ.get("CUBECUT_BULK_TILES_PER_BATCH", "10")))
    where = Location.parse(tiles)
    logger.info("bulk job planned", extra={"tiles": len(plan.tiles), "todo": plan.todo, "rows": plan.catalog_rows})
    return {"out": plan.out, "run": run, "tiles": {"Bucket": where.bucket, "Key": where.key},
            "results_prefix": Location.parse(join(plan.out, "runs", run, "map")).key,
            "ntiles": len(plan.tiles), "todo": plan.todo, "catalog_rows": plan.catalog_rows}


@logger.inject_lambda_context(log_event=False)
@traced
def batch_handler(event: dict, context: LambdaContext) -> dict:
    from cubecut.bulk.job import save_parts
    from cubecut.bulk.worker import run_tiles

    job = event["BatchInput"]
    results = run_tiles(event["Items"])
    parts = save_parts(job["out"], job["run"], results)
    counts = Counter(row["status"] for rows in results.values() for row in rows)
    return {"parts": parts, "counts": dict(counts)}


@logger.inject_lambda_context(log_event=False)
@traced
def finish_handler(event: dict, context: LambdaContext) -> dict:
    from cubecut.bulk.job import finish

    details = event["map"]["ResultWriterDetails"]
    manifest = json.loads(get_bytes(f"s3://{details['Bucket']}/{details['Key']}")[0])
    parts: list[str] = []
    for result_file in manifest["ResultFiles"].get("SUCCEEDED", []):
        children = json.loads(get_bytes(f"s3://{details['Bucket']}/{result_file['Key']}")[0])
        for child in children:
            parts.extend(json.loads(child["Output"])["parts"])
    summary = finish(event["out"], event["run"], parts).as_dict()
    logger.info("bulk job finished", extra=summary)
    return summary
