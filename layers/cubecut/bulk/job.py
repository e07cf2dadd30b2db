"""A bulk job's files, and running a whole job in this process.

Layout under the job's output prefix ``out`` (a local folder or ``s3://bucket/prefix``):

* ``tpfs/{cube stem}/{astrocut name}.fits``: the TPFs (deterministic keys; see :mod:`.plan`);
  or, for a job with ``shards``, ``shards/{cube stem}/{tile}-{digest}.tar`` (+ ``.json``,
  its index): a tile's TPFs as the members of one tar (see :mod:`.shards`);
* ``runs/{run}/tiles.json``: the plan's tiles (the Distributed Map's item source);
* ``runs/{run}/rows.json``: result rows the plan already knows (malformed, off every cube,
  skipped because done);
* ``runs/{run}/parts/{tile}.json``: the result rows of one tile, written by its worker;
* ``results.csv``: the results manifest of the latest run, one row per (catalog row, cube):
  ``row, id, ra, dec, cube, status, key, member, error`` (``key`` is the TPF's URL, or its
  shard's, with ``member`` its name in the shard); every catalog row is in it at least once;
  a text cell starting with ``= + - @``, a tab or a carriage return gets a leading ``'``
  (:func:`spreadsheet_safe`: spreadsheets would run it as a formula);
* ``summary.json``: counts per status, and where the manifest and TPFs are.

The state machine's Lambda handlers and :func:`run_job` call the same functions here.
"""
from __future__ import annotations

import csv
import io
import json
from collections import Counter
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import PurePosixPath
from queue import Empty
from typing import Callable, Sequence

from ..errors import ObjectNotFoundError
from ..storage import Location, get_bytes, list_objects, put_bytes
from .plan import DEFAULT_LIMITS, RESULT_FIELDS, SKIPPED, Limits, Plan, Tile, cube_entries, existing_tpfs, plan_job
from .stars import read_targets
from .worker import OnTarget, run_tiles

#: Result rows a worker process sends the job at once: each message is a round trip to the
#: queue's manager process, so a job's progress moves in steps of up to this many rows.
ROWS_PER_MESSAGE = 50
#: How often (seconds) a job waiting for rows checks whether a worker process has failed.
PROGRESS_POLL_SECONDS = 1.0


@dataclass(frozen=True)
class JobSummary:
    """What a finished run did: counts per status over all result rows."""

    out: str
    catalog_rows: int
    counts: dict[str, int]
    results: str
    #: Where the TPFs are: ``out/tpfs/``, or ``out/shards/`` for a job written as shards.
    tpfs: str

    def as_dict(self) -> dict:
        return asdict(self)


def join(out: str, *parts: str) -> str:
    """``out`` (URL or path) with ``parts`` appended as ``/``-separated key parts."""
    return "/".join([out.rstrip("/"), *parts])


def plan_from_request(catalog: str, out: str, *, cubes: Sequence[str] | None = None,
                      catalog_prefix: str | None = None, size: tuple[int, int] = (11, 11),
                      limits: Limits = DEFAULT_LIMITS, resume: bool = True, shards: bool = False) -> Plan:
    """Read the catalog, find the cubes and plan (see :func:`.plan.plan_job`)."""
    targets = read_targets(catalog, size)
    return plan_job(targets, cube_entries(cubes, catalog_prefix), out, limits=limits, resume=resume,
                    shards=shards)


def save_plan(plan: Plan, run: str, tiles_per_batch: int = 10) -> tuple[str, str]:
    """Write the plan's tiles, its batches and known rows under ``runs/{run}/``; returns the
    URLs of the batches (the Distributed Map's items: ``{"tiles": [...]}`` of at most
    ``tiles_per_batch`` consecutive tiles) and of the rows."""
    step = max(1, int(tiles_per_batch))
    files = {"tiles.json": plan.tiles,
             "batches.json": [{"tiles": plan.tiles[i:i + step]} for i in range(0, len(plan.tiles), step)],
             "rows.json": {"catalog_rows": plan.catalog_rows, "rows": plan.rows}}
    for name, value in files.items():
        put_bytes(join(plan.out, "runs", run, name), json.dumps(value).encode(), "application/json")
    return join(plan.out, "runs", run, "batches.json"), join(plan.out, "runs", run, "rows.json")


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
    return sum(sizes.get(PurePosixPath(location.key).stem, 0) for location, _ in list_objects(parts))


def finish(out: str, run: str, parts: Sequence[str]) -> JobSummary:
    """Merge the run's known rows and its parts into ``results.csv`` and ``summary.json``."""
    known = json.loads(get_bytes(join(out, "runs", run, "rows.json"))[0])
    rows = known["rows"] + [row for part in parts for row in json.loads(get_bytes(part)[0])]
    return write_results(out, known["catalog_rows"], rows)


#: What makes a spreadsheet read a cell as a formula (OWASP's "CSV injection" list).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value: object) -> object:
    """A text cell that a spreadsheet would run as a formula (``=HYPERLINK(...)``, ``@SUM``,
    ``+cmd``, ``-2+3``) with a single quote put in front, so it shows as text; numbers and
    other text as they are."""
    return "'" + value if isinstance(value, str) and value.startswith(FORMULA_STARTS) else value


def write_results(out: str, catalog_rows: int, rows: list[dict]) -> JobSummary:
    """Write the results manifest and summary of a run whose result rows are ``rows``."""
    rows = sorted(rows, key=lambda r: (r["row"], r["cube"]))
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=RESULT_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: "" if row[k] is None else spreadsheet_safe(row[k]) for k in RESULT_FIELDS} for row in rows)
    results = join(out, "results.csv")
    put_bytes(results, text.getvalue().encode(), "text/csv")
    folder = "shards/" if any(row.get("member") for row in rows) else "tpfs/"
    summary = JobSummary(Location.parse(out).url, catalog_rows, dict(Counter(r["status"] for r in rows)), results,
                         join(Location.parse(out).url, folder))
    put_bytes(join(out, "summary.json"), json.dumps(summary.as_dict(), indent=1).encode(), "application/json")
    return summary


def written_and_left(plan: Plan) -> tuple[int, int]:
    """How many of ``plan``'s TPFs exist now (those it skipped as done included; a shard's
    members once the shard is complete) and how many of its placements are not written
    yet: what an interrupted run has done and what running it again will do."""
    existing = existing_tpfs(plan.out)
    names = ["/".join(p.key.rsplit("/", 2)[-2:]) for tile in plan.tiles for p in Tile.from_json(tile).placements]
    done = sum(1 for name in names if name in existing)
    skipped = sum(1 for row in plan.rows if row["status"] == SKIPPED)
    return done + skipped, len(names) - done


def run_job(catalog: str, out: str, *, cubes: Sequence[str] | None = None, catalog_prefix: str | None = None,
            size: tuple[int, int] = (11, 11), workers: int = 1, resume: bool = True, limits: Limits = DEFAULT_LIMITS,
            on_plan: Callable[[Plan], None] | None = None, on_target: OnTarget | None = None,
            shards: bool = False) -> JobSummary:
    """A whole bulk job in this process, or in ``workers`` worker processes.

    Each worker takes one contiguous share of the row-sorted tiles, so the only spans read
    twice are those shared across the ``workers - 1`` boundaries. ``on_plan`` sees the
    plan before any cutout, ``on_target`` every result row of a cut target as it is known.
    ``shards``: each tile's TPFs go into one tar shard rather than one file each.
    """
    plan = plan_from_request(catalog, out, cubes=cubes, catalog_prefix=catalog_prefix, size=size, limits=limits,
                             resume=resume, shards=shards)
    if on_plan is not None:
        on_plan(plan)
    shares = _shares(plan.tiles, workers)
    if len(shares) <= 1:
        results = [run_tiles(plan.tiles, on_target=on_target)]
    else:
        context = get_context("spawn")
        with context.Manager() as manager, ProcessPoolExecutor(len(shares), mp_context=context) as pool:
            queue = manager.Queue()
            futures = [pool.submit(_run_share, share, queue) for share in shares]
            _report_progress(queue, futures, plan.todo, on_target)
            results = [future.result() for future in futures]
    rows = plan.rows + [row for result in results for tile_rows in result.values() for row in tile_rows]
    return write_results(plan.out, plan.catalog_rows, rows)


def _report_progress(queue, futures: list[Future], expected: int, on_target: OnTarget | None) -> None:
    """Pass the workers' rows to ``on_target`` until ``expected`` have come or every worker
    has stopped; a worker that failed fails the job here (its exception is raised), rather
    than the job waiting for rows that will never come."""
    while expected > 0:
        try:
            batch = queue.get(timeout=PROGRESS_POLL_SECONDS)
        except Empty:
            for future in futures:
                if future.done():
                    future.result()
            if all(future.done() for future in futures):
                return
            continue
        expected -= len(batch)
        if on_target is not None:
            for row in batch:
                on_target(row)


def _shares(tiles: list[dict], workers: int) -> list[list[dict]]:
    """``tiles`` cut into at most ``workers`` contiguous runs of about equal target counts."""
    total = sum(len(tile["targets"]) for tile in tiles)
    shares: list[list[dict]] = [[] for _ in range(max(1, min(workers, len(tiles))))]
    seen = 0
    for tile in tiles:
        shares[min(len(shares) - 1, seen * len(shares) // max(1, total))].append(tile)
        seen += len(tile["targets"])
    return [share for share in shares if share]


def _run_share(tiles: list[dict], queue) -> dict[str, list[dict]]:
    """A worker process's share; its rows also go to ``queue`` as they are known, in lists
    of at most :data:`ROWS_PER_MESSAGE`."""
    batch: list[dict] = []

    def send(row: dict) -> None:
        batch.append(row)
        if len(batch) >= ROWS_PER_MESSAGE:
            queue.put(batch[:])
            batch.clear()

    result = run_tiles(tiles, on_target=send)
    if batch:
        queue.put(batch)
    return result
