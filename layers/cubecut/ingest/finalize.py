"""Ingest step 3: verify the parts, complete the upload, publish the index sidecar.

Completion is the single moment the cube becomes visible (the commit). The parts are
listed from the store (not trusted from the callers) and checked against the plan: every
part present, each of the planned size, numbered in ascending order, within S3's size
rules. The commit is conditional on the key still holding the version the plan started
from (:attr:`IngestPlan.replaces`); a writer that lost gets ConcurrentWriteError and its
upload and staging are removed. After the commit the sidecar is published bound to the
new version (:func:`cubecut.cube.sidecar.publish_index`). Before the commit, any failure
goes to :func:`abort_ingest`, which removes the upload and the staging objects so nothing
partial remains; a committed cube is never deleted (docs/architecture.md, "Consistency
model").
"""
from __future__ import annotations

from dataclasses import dataclass

from ..cube.sidecar import describes, publish_index, read_sidecar, sidecar_location
from ..errors import ConcurrentWriteError, ObjectNotFoundError, PlanError, UploadGoneError
from ..storage import Location, head, open_upload, part_minimum
from .partition import check_parts
from .plan import PLAN_KEY, IngestPlan, discard_staging, load_index


@dataclass(frozen=True)
class IngestResult:
    """A committed cube: where it and its sidecar are, its ETag (version) and size in bytes.

    ``published`` is False when a newer version replaced this one before its index was
    published (the newer writer publishes its own; nothing is lost: the newer version was
    built on this one or planned after it).
    """

    cube: str
    index: str
    etag: str | None
    size: int
    nt: int
    published: bool = True


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
    # A local file has no part minimum (updates of local cubes use small blocks).
    check_parts(sorted(arrived.items()), min_part=part_minimum(plan.cube))


def own_version(cube: Location, plan_id: str) -> str | None:
    """The ETag of the object at ``cube`` if this plan's upload made it, else None.

    S3 objects carry their plan id as user metadata (``cubecut-plan``); a local file has
    no metadata, so a local upload that is gone is never claimed.
    """
    try:
        info = head(cube)
    except ObjectNotFoundError:
        return None
    return info.etag if info.metadata.get(PLAN_KEY) == plan_id else None


def finalize_ingest(plan: IngestPlan) -> IngestResult:
    """Commit the cube of ``plan`` and publish ``{cube}.index.json`` bound to it.

    Idempotent: a retry after an attempt that committed recognises its own cube by the
    plan id in the object's metadata and only (re)publishes the sidecar; a retry after an
    attempt that finished (staging already deleted) returns that attempt's result
    (:func:`finalized_result`).

    Raises:
        ConcurrentWriteError: another writer replaced the cube first; this upload and its
            staging were removed and the other writer's cube stays.
        UploadGoneError: the upload was aborted (janitor, lifecycle rule, by hand) before
            it was committed; nothing is published, the staging is removed.
        PlanError: the parts are not the planned ones.
        ObjectNotFoundError: the staging is gone and the cube there is not (or no longer)
            this plan's finished cube: finalized or aborted before, outcome unknown here.
    """
    cube = Location.parse(plan.cube)
    target = open_upload(cube)
    try:
        index = load_index(plan)
    except ObjectNotFoundError:
        done = finalized_result(plan.cube, plan.upload_id, plan.plan_id)
        if done is None:
            raise ObjectNotFoundError(f"{plan.index_url}: the staging of this ingest is gone and {plan.cube} is "
                                      "not its finished cube: it was finalized (and since replaced) or aborted "
                                      "before; run the ingest again if its cube is wanted") from None
        return done
    try:
        parts = target.list_parts(plan.upload_id)
    except ObjectNotFoundError:
        etag = own_version(cube, plan.plan_id)
        if etag is None:
            discard_staging(plan)
            raise UploadGoneError(f"the upload {plan.upload_id} of {plan.cube} is gone (aborted by the janitor, "
                                  "the bucket's lifecycle rule or by hand) and the object there is not this "
                                  "ingest's cube: nothing was published; run the ingest again") from None
    else:
        verify_parts(plan, parts)
        try:
            etag = target.complete(plan.upload_id, parts, if_match=plan.replaces, if_none_match=plan.replaces is None)
        except ConcurrentWriteError as exc:
            etag = own_version(cube, plan.plan_id)  # a retried request whose first try committed
            if etag is None:
                abort_ingest(plan)
                started = f"version {plan.replaces}" if plan.replaces else "no cube"
                raise ConcurrentWriteError(f"{exc}: another ingest or update replaced the cube first (this one "
                                           f"started from {started}); its upload was not completed and the other "
                                           "writer's cube stays") from None
    index.cube_etag = etag
    published = publish_index(cube, index)
    discard_staging(plan)
    return IngestResult(cube.url, sidecar_location(cube).url, etag, plan.layout.total_bytes, plan.layout.nt,
                        published)


def abort_ingest(plan: IngestPlan) -> None:
    """Abort the upload and delete the staging objects; safe to call more than once.

    A cube the plan already committed is not deleted (it is complete and may have been
    read); its sidecar is published if it is still the current version.
    """
    cube = Location.parse(plan.cube)
    open_upload(cube).abort(plan.upload_id)
    etag = own_version(cube, plan.plan_id)
    if etag is not None:
        try:
            index = load_index(plan)
        except ObjectNotFoundError:  # staging already gone: readers index the cube themselves
            pass
        else:
            index.cube_etag = etag
            publish_index(cube, index)
    discard_staging(plan)


def finalized_result(cube_url: str, upload_id: str, plan_id: str | None) -> IngestResult | None:
    """The result of a finalize that already committed ``upload_id``, or None.

    For a retried Finalize whose first attempt finished (the cube committed, its sidecar
    published, the staging deleted) but whose answer was lost: the plan is gone then, so
    :func:`finalize_ingest` cannot run again. The upload must be finished (unknown to
    ListParts), the object must be this plan's (``plan_id`` in its metadata) and the
    sidecar must describe it.
    """
    cube = Location.parse(cube_url)
    try:
        open_upload(cube).list_parts(upload_id)
        return None  # the upload is still open: nothing was completed
    except ObjectNotFoundError:
        pass
    etag = own_version(cube, plan_id) if plan_id else None
    index, _ = read_sidecar(cube)
    if etag is None or index is None or not describes(index, etag):
        return None
    return IngestResult(cube.url, sidecar_location(cube).url, etag, index.cube_size, index.nt)
