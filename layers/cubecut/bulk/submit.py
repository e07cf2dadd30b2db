"""Bulk jobs asked for by someone else (the HTTP API): checked before they start, named,
staged, and reported while they run.

A job asked for this way has a generated id (:func:`new_job_id`), which is also the name of
its state machine execution and its run, and its own output prefix
``{results root}/bulk/{job}`` (:func:`job_out`): a caller never picks where a job writes.
The catalog text is checked before anything starts (:func:`check_catalog`: readable, at
least one usable row, at most ``limits.max_targets`` of them) and stored beside the job's
results (:func:`stage_job`); the state machine's Plan then applies the pixel-frame cap as
for any job. :func:`job_status` says how far a job got from its execution's description
(as Step Functions' DescribeExecution gives it) and the job's files.
"""
from __future__ import annotations

import csv
import datetime as dt
import hashlib
import hmac
import io
import json
import re
import secrets
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from ..errors import BulkCapError, CatalogError
from ..storage import get_bytes, put_bytes
from .job import join, targets_done, tile_sizes
from .plan import Limits, check_cutouts
from .stars import TargetCatalog, parse_targets

#: What a job id looks like: ``bulk-YYYYMMDDTHHMMSS-`` and 8 hex digits (UTC start time).
JOB_ID = re.compile(r"^bulk-[0-9]{8}T[0-9]{6}-[0-9a-f]{8}$")
#: What a job's capability looks like: 32 random bytes (256 bits), URL-safe base64.
CAPABILITY = re.compile(r"^[A-Za-z0-9_-]{43}$")
#: Execution states (Step Functions' names) after which a job does no more work.
FINISHED = frozenset({"SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"})


def new_job_id(now: dt.datetime | None = None, token: str | None = None) -> str:
    """A fresh job id (see :data:`JOB_ID`): the UTC time and 32 random bits."""
    now = now or dt.datetime.now(dt.timezone.utc)
    return f"bulk-{now:%Y%m%dT%H%M%S}-{token or secrets.token_hex(4)}"


def new_capability() -> tuple[str, str]:
    """A fresh job capability: ``(token, digest)``. The token (256 random bits, see
    :data:`CAPABILITY`) goes to the caller only; the job records its SHA-256 digest."""
    token = secrets.token_urlsafe(32)
    return token, capability_digest(token)


def capability_digest(token: str) -> str:
    """The SHA-256 (hex) of a capability token: what a job records instead of the token."""
    return hashlib.sha256(token.encode()).hexdigest()


def may_read(request: Mapping[str, Any], caller: str | None, token: str | None) -> bool:
    """Whether ``caller`` (an identity, None if anonymous) holding ``token`` (or None) may
    see the job started with ``request`` (its state machine input): its owner, or whoever
    holds its capability. A job that recorded neither is nobody's."""
    owner, digest = request.get("owner"), request.get("capability")
    if owner is not None and caller is not None and hmac.compare_digest(str(owner), caller):
        return True
    return token is not None and isinstance(digest, str) and hmac.compare_digest(capability_digest(token), digest)


def job_out(results_root: str, job: str) -> str:
    """The output prefix of job ``job`` under ``results_root`` (``s3://bucket/prefix/``)."""
    return join(results_root, "bulk", job)


def check_catalog(text: str, size: tuple[int, int], limits: Limits) -> TargetCatalog:
    """The catalog text parsed, refused if no job could come of it.

    Args:
        size: ``(nx, ny)`` pixels for rows without a size column.

    Raises:
        CatalogError: no ra/dec columns, or not one usable row (the first problems named).
        BulkCapError: more usable rows than ``limits.max_targets``.
    """
    catalog = parse_targets(text, size, source="in the request")
    if not catalog.targets:
        first = "; ".join(f"row {p.row}: {p.reason}" for p in catalog.problems[:3])
        raise CatalogError(f"the catalog has no usable row{f' ({first})' if first else ''}")
    if len(catalog.targets) > limits.max_targets:
        raise BulkCapError(f"the catalog has {len(catalog.targets)} targets, above this service's cap of "
                           f"{limits.max_targets} per job: split it")
    return catalog


def check_budget(catalog: TargetCatalog, nt: int, limits: Limits) -> None:
    """Refuse, before anything is written, a catalog whose cutouts on cubes of ``nt``
    frames (the most frames of the cubes it may be cut from) are above ``limits``: any one
    cutout above the per-cutout limits, or all of them together, counting each target
    once, above ``limits.max_pixel_frames`` (the Plan then counts every cube each target
    is on, and refuses the same way). Raises BulkCapError with the numbers."""
    check_cutouts(catalog.targets, nt, limits, "the catalog")
    total = sum(t.size[0] * t.size[1] for t in catalog.targets) * nt
    if total > limits.max_pixel_frames:
        raise BulkCapError(f"the catalog's {len(catalog.targets):,} cutouts come to at least {total:,} pixel-frames "
                           f"({nt} frames per cube), above this service's cap of {limits.max_pixel_frames:,} "
                           "per job: split it or ask for smaller cutouts")


def stage_job(out: str, text: str, size: tuple[int, int], cubes: Sequence[str] | None,
              shards: bool = False, limits: Limits | None = None, owner: str | None = None,
              capability: str | None = None) -> dict[str, Any]:
    """Store the catalog text under ``out`` and return the bulk state machine's input for
    the job (``{catalog, out, cubes, size, resume, shards}``, as ``cubecut bulk --stack``
    sends it; ``limits``: caps the Plan applies where tighter than its own; ``owner`` and
    ``capability``: who may see the job, :func:`may_read`)."""
    suffix = ".ecsv" if text.startswith("# %ECSV") else ".csv"
    catalog = join(out, f"catalog{suffix}")
    put_bytes(catalog, text.encode(), "text/csv")
    request: dict[str, Any] = {"catalog": catalog, "out": out, "cubes": list(cubes) if cubes else None,
                               "size": list(size), "resume": True, "shards": shards}
    if limits is not None:
        request["limits"] = limits.caps()
    request.update({k: v for k, v in (("owner", owner), ("capability", capability)) if v is not None})
    return request


@dataclass(frozen=True)
class JobStatus:
    """How far a job got: ``status`` is the execution's (RUNNING, SUCCEEDED, FAILED,
    TIMED_OUT, ABORTED); ``done`` of ``total`` targets cut (``total`` None until planned);
    ``summary`` the finished job's counts and files; ``error`` why it failed."""

    job: str
    status: str
    done: int
    total: int | None
    results: str | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        answer: dict[str, Any] = {"job": self.job, "status": self.status, "done": self.done, "total": self.total}
        if self.summary:
            answer["summary"] = {k: self.summary[k] for k in ("catalog_rows", "counts") if k in self.summary}
        if self.error:
            answer["error"] = self.error
        return answer


def job_status(out: str, job: str, execution: Mapping[str, Any]) -> JobStatus:
    """The status of job ``job`` writing under ``out``, from its execution's description
    (``status``, and ``output`` or ``error``/``cause`` once finished)."""
    status = str(execution["status"])
    sizes = tile_sizes(out, job)
    total = None if sizes is None else sum(sizes.values())
    done = 0 if sizes is None else targets_done(out, job, sizes)
    if status == "SUCCEEDED":
        summary = json.loads(execution.get("output") or "{}")
        return JobStatus(job, status, total or 0, total or 0, summary.get("results"), summary)
    if status in FINISHED:
        return JobStatus(job, status, done, total, error=failure_reason(execution))
    return JobStatus(job, status, done, total)


#: Result rows with a file per page of :func:`result_files`.
FILES_PER_PAGE = 1000


def result_files(results: str, offset: int = 0, count: int = FILES_PER_PAGE) -> tuple[list[dict[str, str]], int | None]:
    """The rows of a job's ``results.csv`` (URL) that have a file (``written``/``skipped``),
    rows ``offset`` to ``offset + count`` (0-based) of them, as ``{"row", "id", "status",
    "key", "member"}`` (``key`` the TPF's or its shard's URL, ``member`` its name in the
    shard or ``""``), and the offset of the next page (None after the last)."""
    text = get_bytes(results)[0].decode("utf-8")
    with_files = [row for row in csv.DictReader(io.StringIO(text)) if row.get("key")]
    page = [{k: row.get(k, "") for k in ("row", "id", "status", "key", "member")}
            for row in with_files[offset:offset + count]]
    return page, offset + count if offset + count < len(with_files) else None


def failure_reason(execution: Mapping[str, Any]) -> str:
    """A failed execution's error and message (a Lambda's JSON cause carries ``errorMessage``),
    from its description (as DescribeExecution gives it)."""
    error, cause = str(execution.get("error") or ""), str(execution.get("cause") or "")
    try:
        cause = str(json.loads(cause).get("errorMessage", cause))
    except (ValueError, AttributeError):
        pass
    return ": ".join(filter(None, [error, cause])) or str(execution["status"]).lower().replace("_", " ")
