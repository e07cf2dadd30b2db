"""Bulk jobs over HTTP: start one on the bulk state machine, and report its progress.

``POST /v1/bulk`` with JSON ``{targets, cubes?, size?}``: ``targets`` is the catalog's text
(CSV or ECSV, as ``cubecut bulk`` reads it; at most :data:`MAX_CATALOG_BYTES`), ``cubes``
optional sector names (``tess-s0001-1-1``; default: every cube containing each target) and
``size`` pixels (``N`` or ``[NX, NY]``, default 11). The catalog is checked before the job
starts (no ra/dec columns, too many targets: 400); its malformed rows are reported per row
in the results. Answer 202 ``{job, status, status_url}``.

``GET /v1/bulk/{job}``: ``{job, status, progress: {targets, done}, counts?, results?, error?}``
where ``results`` is a presigned URL of the results manifest once the job has succeeded.
"""
from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Mapping
from ..bulk.job import targets_done, tile_sizes
from ..bulk.plan import Caps
from ..bulk.targets import parse_targets
from ..errors import BulkCapError, InputError, ObjectNotFoundError
from ..storage import put_bytes
from .catalog import CubeCatalog
from .service import presign

#: Largest catalog accepted in a request body (API Gateway's own limit is 10 MB).
MAX_CATALOG_BYTES = 5 * 1024 * 1024
_JOB = re.compile(r"^bulk-[0-9a-f]{16}$")


def _machine() -> str:
    arn = os.environ.get("CUBECUT_BULK_JOBS_STATE_MACHINE_ARN")
    if not arn:
        raise InputError("bulk jobs are not enabled here (no CUBECUT_BULK_JOBS_STATE_MACHINE_ARN)")
    return arn


def _out(job: str) -> str:
    return f"s3://{os.environ['CUBECUT_BUCKET']}/{os.environ.get('CUBECUT_RESULTS_PREFIX', 'results/')}bulk/{job}"


def _size(value: object) -> list[int]:
    items = value if isinstance(value, list) else [value]
    if not 1 <= len(items) <= 2 or not all(type(v) is int and 0 < v <= 1000 for v in items):
        raise InputError(f"size must be N or [NX, NY] whole pixels from 1 to 1000, got {value!r}")
    return [items[0], items[-1]]


def start_job(body: object, catalog: CubeCatalog, sfn) -> dict:
    """Check the request, store the catalog under the job's prefix and start the execution."""
    machine = _machine()
    if not isinstance(body, Mapping):
        raise InputError("the body must be a JSON object {targets, cubes?, size?}")
    text = body.get("targets")
    if not isinstance(text, str) or not text.strip():
        raise InputError("targets must be the catalog's CSV or ECSV text (columns ra, dec, optional size and id)")
    if len(text.encode()) > MAX_CATALOG_BYTES:
        raise InputError(f"targets is {len(text.encode())} bytes, above the {MAX_CATALOG_BYTES} byte limit")
    size = _size(body.get("size", 11))
    parsed = parse_targets(text, (size[0], size[1]), source="targets")
    caps = Caps.from_environment()
    if len(parsed.targets) > caps.max_targets:
        raise BulkCapError(f"targets has {len(parsed.targets):,} targets, above the cap of {caps.max_targets:,} "
                           "targets per job")
    cubes = body.get("cubes")
    urls = None
    if cubes is not None:
        if not isinstance(cubes, list) or not cubes or not all(isinstance(c, str) for c in cubes):
            raise InputError("cubes must be a non-empty list of sector names such as tess-s0001-1-1")
        known = {entry.sector_name: entry.url for entry in catalog.entries()}
        unknown = [c for c in cubes if c not in known]
        if unknown:
            raise ObjectNotFoundError(f"no cube {', '.join(unknown)}")
        urls = [known[c] for c in cubes]
    job = f"bulk-{uuid.uuid4().hex[:16]}"
    out = _out(job)
    put_bytes(f"{out}/catalog.csv", text.encode(), "text/csv")
    request = {"catalog": f"{out}/catalog.csv", "out": out, "cubes": urls, "size": size}
    sfn.start_execution(stateMachineArn=machine, name=job, input=json.dumps(request))
    return {"job": job, "status": "RUNNING", "status_url": f"/v1/bulk/{job}", "catalog_rows": parsed.nrows}


def job_status(job: str, sfn, expiry: int) -> dict:
    """The job's state, how many of its targets are done and, when done, its results."""
    if not _JOB.match(job):
        raise ObjectNotFoundError(f"no bulk job {job!r}")
    execution = _machine().replace(":stateMachine:", ":execution:") + f":{job}"
    try:
        status = sfn.describe_execution(executionArn=execution)
    except sfn.exceptions.ExecutionDoesNotExist:
        raise ObjectNotFoundError(f"no bulk job {job!r}") from None
    out = _out(job)
    sizes = tile_sizes(out, job) or {}
    answer: dict = {"job": job, "status": status["status"],
                    "progress": {"targets": sum(sizes.values()), "done": targets_done(out, job, sizes)}}
    if status["status"] == "SUCCEEDED":
        summary = json.loads(status["output"])
        answer.update(counts=summary["counts"], catalog_rows=summary["catalog_rows"],
                      results=presign(summary["results"], expiry, f"{job}-results.csv"), tpfs=summary["tpfs"])
    elif status["status"] != "RUNNING":
        cause = status.get("cause", "")
        try:
            cause = json.loads(cause).get("errorMessage", cause)
        except (ValueError, AttributeError):
            pass
        answer["error"] = f"{status.get('error', '')}: {cause}"
    return answer

