"""Ingest step 3: verify the parts, complete the upload, publish the index sidecar.

Completion is the single moment the cube becomes visible. The parts are listed from the
store (not trusted from the callers) and checked against the plan: every part present,
each of the planned size, numbered in ascending order, within S3's size rules. On any
failure, :func:`abort_ingest` removes the upload and the staging objects so nothing
partial remains.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..cube.index import INDEX_SUFFIX, CubeIndex
from ..errors import ObjectNotFoundError, PlanError
from ..storage import Location, get_bytes, open_source, put_bytes
from .blocks import check_parts
from .plan import IngestPlan, discard_staging, load_index
from .target import make_target


@dataclass(frozen=True)
class IngestResult:
    """A finished cube: where it and its sidecar are, its ETag (S3) and size in bytes."""

    cube: str
    index: str
    etag: str | None
    size: int
    nt: int


def verify_parts(plan: IngestPlan, parts: list) -> None:
    """Raise :class:`PlanError` unless ``parts`` are exactly the planned ones."""
    planned = {b.part: b.size for b in plan.blocks}
    arrived = {p.part: p.size for p in parts}
    missing = sorted(set(planned) - set(arrived))
    if missing:
        raise PlanError(f"{len(missing)} part(s) missing, e.g. {missing[:5]}")
    extra = sorted(set(arrived) - set(planned))
    if extra:
        raise PlanError(f"unexpected part(s) {extra[:5]}")
    wrong = [n for n in planned if arrived[n] != planned[n]]
    if wrong:
        raise PlanError(f"part {wrong[0]} is {arrived[wrong[0]]} B, planned {planned[wrong[0]]} B")
    check_parts(sorted(arrived.items()))


def finalize_ingest(plan: IngestPlan) -> IngestResult:
    """Complete the cube of ``plan`` and write ``{cube}.index.json`` beside it.

    Idempotent: if a previous attempt completed the upload, the cube is recognised by its
    size and only the sidecar is (re)written.
    """
    cube = Location.parse(plan.cube)
    target = make_target(cube, plan.layout.total_bytes)
    index = load_index(plan)
    try:
        parts = target.list_parts(plan.upload_id)
    except ObjectNotFoundError:
        parts = None
    if parts is None:
        source = open_source(cube)
        if source.size != plan.layout.total_bytes:
            raise PlanError(f"upload {plan.upload_id} of {plan.cube} is gone and no complete cube is there")
        etag = source.etag
    else:
        verify_parts(plan, parts)
        etag = target.complete(plan.upload_id, parts)
    index.cube_etag = etag
    index_url = cube.with_suffix(INDEX_SUFFIX).url
    put_bytes(index_url, index.to_json(), "application/json")
    discard_staging(plan)
    return IngestResult(cube.url, index_url, etag, plan.layout.total_bytes, plan.layout.nt)


def abort_ingest(plan: IngestPlan) -> None:
    """Abort the upload and delete the staging objects; safe to call more than once."""
    make_target(Location.parse(plan.cube), plan.layout.total_bytes).abort(plan.upload_id)
    discard_staging(plan)


def finalized_result(cube_url: str, upload_id: str) -> IngestResult | None:
    """The result of a finalize that already completed ``upload_id``, or None.

    For a retried Finalize whose first attempt finished (the cube complete, its sidecar
    written, the staging deleted) but whose answer was lost: the plan is gone then, so
    :func:`finalize_ingest` cannot run again. The upload must be finished (unknown to
    ListParts) and the sidecar must describe the object now in place (size and ETag).
    """
    cube = Location.parse(cube_url)
    try:
        make_target(cube, 0).list_parts(upload_id)
        return None  # the upload is still open: nothing was completed
    except ObjectNotFoundError:
        pass
    index_url = cube.with_suffix(INDEX_SUFFIX)
    try:
        index = CubeIndex.from_json(get_bytes(index_url)[0])
        source = open_source(cube)
    except (ObjectNotFoundError, ValueError, TypeError):
        return None
    if source.size != index.cube_size or (index.cube_etag and source.etag != index.cube_etag):
        return None
    return IngestResult(cube.url, index_url.url, source.etag, source.size, index.nt)
