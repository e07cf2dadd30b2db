"""What an ingest will cost on Lambda and S3, from its plan alone (``cubecut ingest --plan-only``).

The figures are a model, not a measurement: every assumption is a named constant below
and docs/ingest-at-scale.md says where each comes from. The block workers' GETs are
exact (one range read per FFI image per block); the plan's header reads are counted as
they happen; times and prices are the assumptions'.

Deployment facts (``DEPLOYED_CONCURRENCY``, ``BLOCK_MEMORY_MB``, ``BLOCK_TIMEOUT_S``,
``PLAN_MEMORY_MB``) are template.yaml's defaults; tests/library/test_ingest_scale.py checks that
they agree with it.
"""
from __future__ import annotations

import math
import posixpath
from dataclasses import dataclass

from ..cube.layout import CubeLayout
from ..reads import workers
from ..storage import Location, ReadStats
from .partition import DEFAULT_BLOCK_BYTES, Block
from .plan import IngestPlan, PlanDraft, draft_plan

MB = 1024 * 1024

# --- the deployment (template.yaml's defaults; checked by tests/library/test_ingest_scale.py)
#: Blocks written at once: the ingest Map's MaxConcurrency (= BlockReservedConcurrency).
DEPLOYED_CONCURRENCY = 200
#: BlockFunction's and PlanFunction's MemorySize (MB) and Timeout (s).
BLOCK_MEMORY_MB = 5120
BLOCK_TIMEOUT_S = 600
PLAN_MEMORY_MB = 1769
PLAN_TIMEOUT_S = 900

# --- Lambda's and S3's limits
LAMBDA_MAX_MEMORY_MB = 10_240
LAMBDA_MAX_TIMEOUT_S = 900
#: GET/HEAD requests per second S3 serves per partitioned prefix.
S3_GETS_PER_PREFIX_S = 5_500

# --- prices (us-east-1, arm64)
LAMBDA_GB_SECOND_USD = 0.0000133334
LAMBDA_REQUEST_USD = 0.20 / 1e6
S3_GET_USD = 0.0004 / 1000
S3_PUT_USD = 0.005 / 1000  # PUT, UploadPart, CreateMultipartUpload, CompleteMultipartUpload
STEP_TRANSITION_USD = 0.025 / 1000
#: State transitions per block (the Map's child execution: start, Block task, end) and
#: per ingest (plan, map, finalize and the parent's own).
TRANSITIONS_PER_BLOCK = 3
TRANSITIONS_PER_INGEST = 10

# --- performance assumptions (per block worker)
#: S3's time to first byte of a GET (in-region, typical 20-60 ms).
FIRST_BYTE_S = 0.030
#: Bytes per second one worker reads from S3, and again uploads (not overlapped).
NETWORK_BYTES_S = 100e6
#: Bytes of part one block worker builds per CPU second: its range GETs through botocore
#: (one per 160 KiB read), the transposition into the part (a scatter over the time axis,
#: slower the more frames) and the upload's checksums: no faster than the slowest block of
#: the three cadences measured by benchmarks/ingest_scale.py (results/ingest-scale.md;
#: tests/docs/test_ingest_at_scale_doc.py keeps it so), one core of this machine taken for a vCPU.
BLOCK_CPU_BYTES_S = 29.8e6
#: A block worker's memory besides its part and reads in flight (Python, numpy,
#: botocore, the plan), above the peaks beside the part that benchmarks/ingest_scale.py
#: measured (results/ingest-scale.md).
RUNTIME_BYTES = 200 * MB
#: The plan step: CPU seconds per FFI (a HEAD and four header GETs through botocore,
#: parsing the headers; the rate of the largest plan, 11,700 FFIs, that
#: benchmarks/ingest_scale.py measured: results/ingest-scale.md),
#: scaled by the PlanFunction's share of a vCPU (1769 MB = one vCPU), plus its GETs'
#: first bytes at 64 reads in flight.
PLAN_CPU_S_PER_FFI = 0.031
PLAN_THREADS = 64
#: The finalize step (CompleteMultipartUpload, the index sidecar), seconds.
FINALIZE_S = 10.0


@dataclass(frozen=True)
class Headers:
    """What reading the FFIs' headers cost (counted while planning)."""

    ffis: int
    requests: int
    bytes: int


def reads_in_flight(layout: CubeLayout, block: Block) -> int:
    """Concurrent FFI reads of one block worker (``threads="auto"``, :func:`cubecut.reads.workers`)."""
    return workers("auto", layout.nt * layout.nplanes, (block.row1 - block.row0) * layout.ncols * 8)


def worker_memory_bytes(layout: CubeLayout, block: Block) -> int:
    """A block worker's peak memory: runtime + its part + two copies of each read in flight
    (the HTTP body and the bytes handed to numpy)."""
    read = (block.row1 - block.row0) * layout.ncols * 4
    return RUNTIME_BYTES + block.size + 2 * reads_in_flight(layout, block) * read


def block_seconds(layout: CubeLayout, block: Block, cpu_bytes_s: float = BLOCK_CPU_BYTES_S) -> float:
    """One block on Lambda: its GETs' first bytes in waves of reads in flight, the part's
    bytes read and uploaded at :data:`NETWORK_BYTES_S`, and its CPU (``cpu_bytes_s`` bytes
    of part per second), one after the other (no overlap)."""
    waves = math.ceil(layout.nt * layout.nplanes / reads_in_flight(layout, block))
    return waves * FIRST_BYTE_S + 2 * block.size / NETWORK_BYTES_S + block.size / cpu_bytes_s


def plan_seconds(headers: Headers) -> float:
    """The plan step on the PlanFunction: header CPU at its vCPU share + GET latency."""
    cpu = headers.ffis * PLAN_CPU_S_PER_FFI * max(1.0, 1769 / PLAN_MEMORY_MB)
    return cpu + math.ceil(headers.requests / PLAN_THREADS) * FIRST_BYTE_S


def ingest_model(layout: CubeLayout, blocks: list[Block], headers: Headers, prefixes: int,
                 plan_json_bytes: int, *, concurrency: int = DEPLOYED_CONCURRENCY,
                 cpu_bytes_s: float = BLOCK_CPU_BYTES_S) -> dict:
    """The plan's figures and the modelled Lambda run, as ``--plan-only --json`` prints them.

    ``prefixes``: distinct S3 prefixes (folders) the FFIs are in; block workers start their
    FFI sweeps spread over the time axis (:func:`cubecut.ingest.transpose.build_part`), so the
    workers running at once share the prefixes evenly. ``plan_json_bytes``: the staged plan
    every block worker GETs. ``cpu_bytes_s``: bytes of part a worker builds per CPU second
    (default the measured :data:`BLOCK_CPU_BYTES_S`). Sizes in bytes, times in seconds,
    money in US dollars.
    """
    nblocks = len(blocks)
    pixel_gets = nblocks * layout.nt * layout.nplanes
    staged = 1 + sum(b.head for b in blocks) + sum(b.tail for b in blocks)  # plan, head, tail
    largest = max(blocks, key=lambda b: b.size)
    memory = max(worker_memory_bytes(layout, b) for b in blocks)
    t_block = max(block_seconds(layout, b, cpu_bytes_s) for b in blocks)
    running = min(nblocks, concurrency)
    waves = math.ceil(nblocks / running)
    per_worker = layout.nt * layout.nplanes / t_block  # GET/s of one worker
    demand = math.ceil(running / max(1, prefixes)) * per_worker
    stretch = max(1.0, demand / S3_GETS_PER_PREFIX_S)  # S3 throttles above its rate
    t_blocks = waves * t_block * stretch
    t_plan = plan_seconds(headers)
    wall = t_plan + t_blocks + FINALIZE_S

    gets = pixel_gets + nblocks * staged + headers.requests
    puts = nblocks + 7  # parts; CreateMultipartUpload; 5 staging objects; Complete (+ sidecar)
    gb_seconds = (nblocks * t_block * stretch * BLOCK_MEMORY_MB + (t_plan + FINALIZE_S) * PLAN_MEMORY_MB) / 1024
    cost = {"lambda": gb_seconds * LAMBDA_GB_SECOND_USD + (nblocks + 2) * LAMBDA_REQUEST_USD,
            "s3_get": gets * S3_GET_USD, "s3_put": puts * S3_PUT_USD,
            "step_functions": (nblocks * TRANSITIONS_PER_BLOCK + TRANSITIONS_PER_INGEST) * STEP_TRANSITION_USD}
    cost["total"] = sum(cost.values())
    problems = []
    if memory > BLOCK_MEMORY_MB * MB:
        problems.append(f"a worker needs {memory / MB:.0f} MiB, above BlockFunction's {BLOCK_MEMORY_MB} MB")
    if t_block * stretch > BLOCK_TIMEOUT_S:
        problems.append(f"a block takes ~{t_block * stretch:.0f} s, above BlockFunction's timeout {BLOCK_TIMEOUT_S} s")
    if t_plan > PLAN_TIMEOUT_S:
        problems.append(f"reading {headers.ffis} FFIs' headers takes ~{t_plan:.0f} s, above PlanFunction's "
                        f"timeout {PLAN_TIMEOUT_S} s")
    rows = largest.row1 - largest.row0
    pixel_bytes = layout.nrows * layout.ncols * layout.nt * layout.nplanes * 4  # float32 FFI images
    staged_bytes = nblocks * plan_json_bytes + layout.head_bytes + layout.data_padding + layout.table_bytes
    return {
        "frames": layout.nt, "rows": layout.nrows, "columns": layout.ncols, "planes": layout.nplanes,
        "cube_bytes": layout.total_bytes, "row_bytes": layout.row_stride,
        "parts": nblocks, "rows_per_part": rows, "part_bytes_max": largest.size,
        "part_bytes_min": min(b.size for b in blocks),
        "worker_memory_bytes": memory, "reads_in_flight": reads_in_flight(layout, largest),
        "get_requests": gets, "get_bytes": pixel_bytes + staged_bytes + headers.bytes,
        "pixel_get_requests": pixel_gets, "bytes_per_pixel_get": rows * layout.ncols * 4,
        "header_requests": headers.requests, "header_bytes": headers.bytes, "prefixes": prefixes,
        "model": {
            "concurrency": concurrency, "workers_at_once": running, "waves": waves,
            "worker_memory_mb": BLOCK_MEMORY_MB, "block_seconds": round(t_block, 1),
            "plan_seconds": round(t_plan, 1), "blocks_seconds": round(t_blocks, 1), "finalize_seconds": FINALIZE_S,
            "lambda_wall_seconds": round(wall, 1),
            "get_rate_per_prefix": round(min(demand, S3_GETS_PER_PREFIX_S)),
            "get_rate_per_prefix_wanted": round(demand), "throttled_by_s3": stretch > 1.0,
            "cost_usd": {k: round(v, 4) for k, v in cost.items()},
            "problems": problems,
        },
    }


def plan_only(ffi_urls: list[str], cube_url: str, *, product: str | None = None, sector: int | None = None,
              block_bytes: int = DEFAULT_BLOCK_BYTES, concurrency: int = DEPLOYED_CONCURRENCY) -> dict:
    """Plan the cube of ``ffi_urls`` from their headers alone and model its ingest
    (:func:`ingest_model`); nothing is written, no upload is begun."""
    stats = ReadStats()
    draft = draft_plan(ffi_urls, product=product, sector=sector, block_bytes=block_bytes, stats=stats,
                       named=cube_url.endswith("/"))
    return draft_model(draft, stats, cube_url, concurrency=concurrency)


def draft_model(draft: PlanDraft, stats: ReadStats, cube_url: str, *,
                concurrency: int = DEPLOYED_CONCURRENCY) -> dict:
    """:func:`ingest_model` of a drafted plan whose header reads ``stats`` counted."""
    # The staged plan as the workers will read it (ids of their real length).
    plan = IngestPlan("0" * 16, cube_url, cube_url + ".ingest/" + "0" * 16 + "/", "0" * 64, draft.product,
                      draft.sector, draft.camera, draft.ccd, draft.layout, draft.blocks, draft.refs())
    headers = Headers(len(draft.frames), stats.requests, stats.bytes)
    prefixes = len({posixpath.dirname(Location.parse(f.url).url) for f in draft.frames})  # S3 prefixes or folders
    return ingest_model(draft.layout, draft.blocks, headers, prefixes, len(plan.to_json()), concurrency=concurrency)
