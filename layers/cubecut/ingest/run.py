"""Ingest on one machine: plan → blocks (concurrently) → finalize, aborting on failure.

This is what ``cubecut ingest`` runs; the state machine runs the same three steps as
separate Lambda invocations.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Callable

from ..reads import Threads
from ..storage import ReadStats
from .partition import DEFAULT_BLOCK_BYTES
from .transpose import write_block
from .finalize import IngestResult, abort_ingest, finalize_ingest
from .plan import IngestPlan, make_plan


def ingest(ffi_urls: list[str], cube_url: str, *, product: str | None = None, sector: int | None = None,
           workers: int = 2, block_bytes: int = DEFAULT_BLOCK_BYTES, threads: Threads = "auto",
           on_block: Callable[[int, int], None] | None = None, stats: ReadStats | None = None) -> IngestResult:
    """Build the cube of ``ffi_urls`` at ``cube_url`` (s3:// or a local path).

    ``workers`` blocks are built at once, each reading FFIs with ``threads`` concurrent
    range reads. ``on_block(done, total)`` is called after each block (progress bars).
    Any failure aborts the upload: no partial cube is ever visible.
    """
    plan = make_plan(ffi_urls, cube_url, product=product, sector=sector, block_bytes=block_bytes)
    return run_plan(plan, workers=workers, threads=threads, on_block=on_block, stats=stats)


def run_plan(plan: IngestPlan, *, workers: int = 2, threads: Threads = "auto",
             on_block: Callable[[int, int], None] | None = None, stats: ReadStats | None = None) -> IngestResult:
    """Write every block of ``plan`` (``workers`` at once) and finalize it; abort on failure.

    The same steps the state machine runs as Block and Finalize invocations, for an
    ingest and an update alike.
    """
    total = len(plan.blocks)
    pool = ThreadPoolExecutor(max_workers=max(1, workers))
    try:
        futures = [pool.submit(write_block, plan, b.index, threads=threads, stats=stats) for b in plan.blocks]
        for done, future in enumerate(futures, start=1):
            future.result()
            if on_block is not None:
                on_block(done, total)
        pool.shutdown()
        return finalize_ingest(plan)
    except BaseException as failure:
        pool.shutdown(cancel_futures=True)
        try:
            abort_ingest(plan)
        except Exception as exc:  # noqa: BLE001 - report the failure, not the clean-up's
            failure.add_note(f"cleaning up also failed ({type(exc).__name__}: {exc}); upload {plan.upload_id} "
                             f"of {plan.cube} is left for `cubecut janitor` or the bucket lifecycle rule")
        raise
