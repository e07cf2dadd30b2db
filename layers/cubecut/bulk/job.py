"""A bulk job's files, and running a whole job in this process.

Layout under the job's output prefix ``out`` (a local folder or ``s3://bucket/prefix``):

* ``tpfs/{cube stem}/{astrocut name}.fits``: the TPFs (deterministic keys; see :mod:`.plan`);
* ``runs/{run}/tiles.json``: the plan's tiles (the Distributed Map's item source);
* ``runs/{run}/rows.json``: result rows the plan already knows (malformed, off every cube,
  skipped because done);
* ``runs/{run}/parts/{tile}.json``: the result rows of one tile, written by its worker;
* ``results.csv``: the results manifest of the latest run, one row per (catalog row, cube):
  ``row, id, ra, dec, cube, status, key, error``; every catalog row is in it at least once;
* ``summary.json``: counts per status, and where the manifest and TPFs are.

The state machine's Lambda handlers and :func:`run_job` call the same functions here.
"""
from __future__ import annotations

import csv
import io
import json
import os
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import PurePosixPath
from typing import Callable, Sequence

from ..errors import ObjectNotFoundError
from ..storage import Location, get_bytes, list_objects, put_bytes
from .plan import RESULT_FIELDS, TILE_TARGETS, Caps, Plan, cube_entries, plan_job
from .targets import read_targets
from .worker import OnTarget, run_tiles

#: Tiles per worker invocation (the state machine's ItemBatcher MaxItemsPerBatch).
TILES_PER_BATCH = 10


@dataclass(frozen=True)
class JobSummary:
    """What a finished run did: counts per status over all result rows."""

    out: str
    catalog_rows: int
    counts: dict[str, int]
    results: str

    def as_dict(self) -> dict:
        return {"out": self.out, "catalog_rows": self.catalog_rows, "counts": self.counts,
                "results": self.results, "tpfs": join(self.out, "tpfs/")}


def join(out: str, *parts: str) -> str:
    """``out`` (URL or path) with ``parts`` appended as ``/``-separated key parts."""
    return "/".join([out.rstrip("/"), *parts])


def plan_from_request(catalog: str, out: str, *, cubes: Sequence[str] | None = None,
                      catalog_prefix: str | None = None, size: tuple[int, int] = (11, 11),
                      caps: Caps | None = None, resume: bool = True, tile_targets: int = TILE_TARGETS) -> Plan:
    """Read the catalog, find the cubes and plan (see :func:`.plan.plan_job`)."""
    targets = read_targets(catalog, size)
    return plan_job(targets, cube_entries(cubes, catalog_prefix), out, caps=caps, resume=resume,
                    tile_targets=tile_targets)


def save_plan(plan: Plan, run: str) -> tuple[str, str]:
    """Write the plan's tiles and known rows under ``runs/{run}/``; returns their URLs."""
    tiles = join(plan.out, "runs", run, "tiles.json")
    rows = join(plan.out, "runs", run, "rows.json")
    put_bytes(tiles, json.dumps(plan.tiles).encode(), "application/json")
    put_bytes(rows, json.dumps({"catalog_rows": plan.catalog_rows, "rows": plan.rows}).encode(),
              "application/json")
    return tiles, rows


def save_parts(out: str, run: str, results: dict[str, list[dict]]) -> list[str]:
    """Write each tile's result rows to ``runs/{run}/parts/{tile}.json``; returns their URLs."""
    urls = []
    for tile, rows in results.items():
        url = join(out, "runs", run, "parts", f"{tile}.json")
        put_bytes(url, json.dumps(rows).encode(), "application/json")
        urls.append(url)
    return urls


def tile_sizes(out: str, run: str) -> dict[str, int] | None:
    """Targets per tile of a run, or None while the run has no plan yet."""
    try:
        tiles = json.loads(get_bytes(join(out, "runs", run, "tiles.json"))[0])
    except ObjectNotFoundError:
        return None
    return {tile["tile"]: len(tile["targets"]) for tile in tiles}


def targets_done(out: str, run: str, sizes: dict[str, int]) -> int:
    """Targets of the run whose tile has its part file (``sizes`` from :func:`tile_sizes`)."""
    parts = Location.parse(join(out, "runs", run, "parts") + "/")
    if not parts.is_s3 and not os.path.isdir(parts.key):
        return 0
    return sum(sizes.get(PurePosixPath(location.key).stem, 0) for location, _ in list_objects(parts))


def finish(out: str, run: str, parts: Sequence[str]) -> JobSummary:
    """Merge the run's known rows and its parts into ``results.csv`` and ``summary.json``."""
    known = json.loads(get_bytes(join(out, "runs", run, "rows.json"))[0])
    rows = list(known["rows"])
    for part in parts:
        rows.extend(json.loads(get_bytes(part)[0]))
    return write_results(out, known["catalog_rows"], rows)


def write_results(out: str, catalog_rows: int, rows: list[dict]) -> JobSummary:
    """Write the results manifest and summary of a run whose result rows are ``rows``."""
    rows = sorted(rows, key=lambda r: (r["row"], r["cube"]))
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=RESULT_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: "" if row[k] is None else row[k] for k in RESULT_FIELDS} for row in rows)
    results = join(out, "results.csv")
    put_bytes(results, text.getvalue().encode(), "text/csv")
    summary = JobSummary(Location.parse(out).url, catalog_rows, dict(Counter(r["status"] for r in rows)), results)
    put_bytes(join(out, "summary.json"), json.dumps(summary.as_dict(), indent=1).encode(), "application/json")
    return summary


def batches(tiles: list[dict], size: int = TILES_PER_BATCH) -> list[list[dict]]:
    """Consecutive runs of ``size`` tiles, as the ItemBatcher makes them."""
    return [tiles[i:i + size] for i in range(0, len(tiles), size)]


def run_job(catalog: str, out: str, *, cubes: Sequence[str] | None = None, catalog_prefix: str | None = None,
            size: tuple[int, int] = (11, 11), workers: int = 1, resume: bool = True, caps: Caps | None = None,
            tiles_per_batch: int = TILES_PER_BATCH, on_plan: Callable[[Plan], None] | None = None,
            on_target: OnTarget | None = None) -> JobSummary:
    """A whole bulk job in this process (``workers`` > 1: that many worker processes).

    ``on_plan`` sees the plan before any cutout; ``on_target`` every result row of a cut
    target (with ``workers`` > 1, a batch's rows arrive when the batch is done).
    """
    plan = plan_from_request(catalog, out, cubes=cubes, catalog_prefix=catalog_prefix, size=size, caps=caps,
                             resume=resume)
    if on_plan is not None:
        on_plan(plan)
    rows = list(plan.rows)
    # Several workers: no more tiles a batch than spreads the tiles over all of them.
    work = batches(plan.tiles, max(1, min(tiles_per_batch, -(-len(plan.tiles) // max(1, workers)))))
    if workers <= 1 or len(work) <= 1:
        for batch in work:
            for tile_rows in run_tiles(batch, on_target=on_target).values():
                rows.extend(tile_rows)
    else:
        with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
            for future in as_completed([pool.submit(run_tiles, batch) for batch in work]):
                for tile_rows in future.result().values():
                    rows.extend(tile_rows)
                    for row in tile_rows:
                        if on_target is not None:
                            on_target(row)
    return write_results(plan.out, plan.catalog_rows, rows)
