"""Ingest Lambda handlers: plan → block (one per row block, fanned out by the state
machine's Distributed Map) → finalize, with abort on any failure.

Each handler is a thin shell over :mod:`cubecut.ingest`. The Plan step plans a new cube
(``ffis``/``manifest``/``prefix``) or, with ``update``, the cube at that URL with FFIs
appended; Block and Finalize run either plan alike. Retries are safe without an
idempotency store: a block re-uploads the same bytes under the same part number, and
finalize recognises a cube it already committed by the plan id in its metadata.

Cold start: the ingest modules that need astropy's FITS load with the first invocation and
the Tracer is built then too (:func:`cubecut_app.tracing.traced`), so the import is light
(tests/stack/test_packaging.py).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from cubecut.errors import ForbiddenInputError, InputError, ObjectNotFoundError
from cubecut.ingest.inputs import read_manifest, report_manifest_failure, resolve_inputs
from cubecut.ingest.policy import InputPolicy
from cubecut.storage import ReadStats, open_upload
from cubecut_app.tracing import traced

logger = Logger()
metrics = Metrics(namespace="cubecut")


@dataclass(frozen=True)
class PlanRequest:
    """Input of the Plan step: FFIs as a list, a manifest or a prefix; where the cube goes.

    Every place is checked by the deployment's strict :class:`InputPolicy` (FFIs under the
    ingest prefix or an operator-allowed prefix; the cube under the cube prefix)."""

    ffis: list[str]
    cube: str
    product: str | None
    sector: int | None
    update: bool = False

    @classmethod
    def from_event(cls, event: dict, policy: InputPolicy) -> "PlanRequest":
        if "ffis" in event:
            ffis = resolve_inputs([str(f) for f in event["ffis"]], policy)
        elif "manifest" in event:
            ffis = read_manifest(policy.check_ffi(str(event["manifest"])), policy)
        elif "prefix" in event:
            ffis = resolve_inputs([str(event["prefix"])], policy)
        else:
            raise InputError("the ingest request needs 'ffis', 'manifest' or 'prefix'")
        if event.get("update"):
            return cls(ffis, policy.check_cube(str(event["update"])), event.get("product"), None, update=True)
        cube = policy.check_cube(str(event.get("cube") or default_cube_prefix()))
        return cls(ffis, cube, event.get("product"), event.get("sector"))


def default_cube_prefix() -> str:
    """``s3://$CUBECUT_BUCKET/$CUBECUT_CUBE_PREFIX``: where cubes go when not named."""
    bucket = os.environ.get("CUBECUT_BUCKET")
    if not bucket:
        raise InputError("no 'cube' given and CUBECUT_BUCKET is not set")
    return f"s3://{bucket}/{os.environ.get('CUBECUT_CUBE_PREFIX', 'cubes/')}"


def _block_bytes() -> int:
    from cubecut.ingest.partition import DEFAULT_BLOCK_BYTES

    return int(float(os.environ.get("CUBECUT_BLOCK_MIB", DEFAULT_BLOCK_BYTES / 2**20)) * 2**20)


@logger.inject_lambda_context(log_event=False)
@traced
@metrics.log_metrics
def plan_handler(event: dict, context: LambdaContext) -> dict:
    from cubecut.ingest.finalize import abort_ingest
    from cubecut.ingest.plan import cube_name, make_plan
    from cubecut.ingest.update import plan_update

    policy = InputPolicy.from_settings(os.environ)
    request = PlanRequest.from_event(event, policy)
    if request.update:
        plan, skipped = plan_update(request.cube, request.ffis, product=request.product,
                                    block_bytes=_block_bytes())
        if skipped:
            logger.warning("FFIs already in the cube were skipped", extra={"cube": plan.cube, "skipped": skipped})
    else:
        plan = make_plan(request.ffis, policy.plan_target(request.cube), product=request.product,
                         sector=request.sector, block_bytes=_block_bytes())
    try:
        if plan.sector is None:
            raise ForbiddenInputError("the FFIs carry no sector, so the cube has no TESScut name: give the sector")
        policy.check_planned(request.cube, plan.cube, cube_name(plan.product, plan.sector, plan.camera, plan.ccd))
    except ForbiddenInputError:
        abort_ingest(plan)  # nothing of a refused plan stays behind
        raise
    logger.info("planned cube", extra={"cube": plan.cube, "frames": plan.layout.nt, "blocks": len(plan.blocks),
                                       "bytes": plan.layout.total_bytes})
    metrics.add_metric(name="PlannedBlocks", unit=MetricUnit.Count, value=len(plan.blocks))
    return plan.summary()


@logger.inject_lambda_context(log_event=False)
@traced
@metrics.log_metrics
def block_handler(event: dict, context: LambdaContext) -> dict:
    from cubecut.ingest.transpose import write_block
    from cubecut.ingest.plan import IngestPlan

    plan = IngestPlan.load(event["plan"])
    stats = ReadStats()
    receipt = write_block(plan, int(event["block"]), stats=stats)
    logger.info("wrote block", extra={"block": event["block"], "part": receipt.part, "bytes": receipt.size,
                                      "reads": stats.requests, "bytes_read": stats.bytes})
    metrics.add_metric(name="BlockBytes", unit=MetricUnit.Bytes, value=receipt.size)
    return {"part": receipt.part, "etag": receipt.etag, "size": receipt.size}


@logger.inject_lambda_context(log_event=False)
@traced
@metrics.log_metrics
def finalize_handler(event: dict, context: LambdaContext) -> dict:
    from cubecut.ingest.finalize import finalize_ingest, finalized_result
    from cubecut.ingest.plan import IngestPlan

    try:
        plan = IngestPlan.load(event["plan"])
    except ObjectNotFoundError:
        # A retry after a first attempt that completed the cube (and removed the staging)
        # but whose answer was lost: recognise the finished cube, or fail as before.
        done = finalized_result(event["cube"], event["upload_id"], event.get("plan_id"))
        if done is None:
            raise
        logger.info("cube was already complete", extra={"cube": done.cube})
        return {"cube": done.cube, "index": done.index, "etag": done.etag, "size": done.size}
    result = finalize_ingest(plan)
    logger.info("cube complete", extra={"cube": result.cube, "bytes": result.size, "etag": result.etag,
                                        "published": result.published})
    metrics.add_metric(name="CubesIngested", unit=MetricUnit.Count, value=1)
    return {"cube": result.cube, "index": result.index, "etag": result.etag, "size": result.size,
            "published": result.published}


def _cause_message(cause: object) -> str:
    """The error message inside a Step Functions error Cause (Lambda's JSON errorMessage)."""
    try:
        return str(json.loads(str(cause)).get("errorMessage", cause))
    except (ValueError, AttributeError):
        return str(cause or "")


@logger.inject_lambda_context(log_event=False)
@traced
def abort_handler(event: dict, context: LambdaContext) -> dict:
    from cubecut.ingest.finalize import abort_ingest
    from cubecut.ingest.plan import IngestPlan

    error = event.get("error") or {}
    planned = event.get("planned") or {}  # Plan's output; absent when Plan itself failed
    cube = planned.get("cube") or event.get("cube")
    logger.warning("aborting ingest", extra={"cube": cube, "manifest": event.get("manifest"), "error": error})
    if event.get("manifest"):  # started by a manifest: say beside it why the ingest failed
        report = report_manifest_failure(event["manifest"], str(error.get("Error", "")),
                                         _cause_message(error.get("Cause")), cube=cube)
        logger.error("ingest of a manifest failed", extra={"manifest": event["manifest"], "report": report,
                                                           "reason": error.get("Error")})
    if "plan" not in planned:  # the Plan step itself failed: it cleans up after itself
        return {"aborted": False}
    try:
        abort_ingest(IngestPlan.load(planned["plan"]))
    except ObjectNotFoundError:  # staging already gone: abort the upload by its id
        open_upload(planned["cube"]).abort(planned["upload_id"])
    return {"aborted": True}
