"""S3 event entry: a manifest landing under the ingest prefix starts the ingest state machine.

The manifest (``ingest/<anything>/manifest.json``) is JSON: ``{"ffis": [...]}`` with FFI
URLs (or names relative to the manifest), and optionally ``"cube"``, ``"product"``,
``"sector"`` and ``"update"`` (the format: docs/architecture.md, "Ingest manifests"). The
execution name is derived from the object's key and ETag, so S3's at-least-once event
delivery never starts the same ingest twice.

FFIs and the cube must be places the deployment allows (cubecut.ingest.policy: keys
under the ingest prefix or operator-allowed ``s3://`` prefixes; the cube under the cube
prefix, named from its FFIs); anything else is refused before any FFI is read.
A manifest that cannot be read as documented is reported beside it as
``manifest.error.json`` and in the log (with its key and the reason), and not retried; a
failure to start the execution is raised, so Lambda retries the event and finally sends it
to the dead-letter queue (template.yaml: IngestFailuresQueue).

Cold start: boto3 loads with the first event and the Tracer is built at the first
invocation (:func:`cubecut_app.tracing.traced`); tests/stack/test_packaging.py checks the import.
"""
from __future__ import annotations

import hashlib
import json
import os
from urllib.parse import unquote_plus

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.data_classes import S3Event, event_source
from aws_lambda_powertools.utilities.typing import LambdaContext

from cubecut.errors import ManifestError
from cubecut.ingest.inputs import MANIFEST_OPTIONS, parse_manifest, report_manifest_failure
from cubecut.ingest.policy import InputPolicy
from cubecut.storage import get_bytes
from cubecut_app.tracing import traced

logger = Logger()
MANIFEST_NAME = "manifest.json"


def execution_name(bucket: str, key: str, etag: str) -> str:
    """A deterministic, valid Step Functions execution name (≤ 80 chars)."""
    digest = hashlib.sha256(f"{bucket}/{key}/{etag}".encode()).hexdigest()[:32]
    stem = "".join(c if c.isalnum() or c in "-_" else "-" for c in key.rsplit("/", 2)[-2])[:40]
    return f"ingest-{stem}-{digest}"


@logger.inject_lambda_context(log_event=True)
@traced
@event_source(data_class=S3Event)
def handler(event: S3Event, context: LambdaContext) -> dict:
    import boto3

    sfn = boto3.client("stepfunctions")
    started, skipped = [], []
    for record in event.records:
        key = unquote_plus(record.s3.get_object.key)  # S3 event keys are URL-encoded
        bucket = record.s3.bucket.name
        if not key.endswith(MANIFEST_NAME):
            skipped.append(key)
            continue
        url = f"s3://{bucket}/{key}"
        try:
            manifest = parse_manifest(get_bytes(url)[0], url, InputPolicy.from_settings(os.environ))
        except ManifestError as exc:
            report = report_manifest_failure(url, type(exc).__name__, str(exc))
            logger.error("rejected ingest manifest", extra={"manifest": url, "reason": str(exc), "report": report})
            skipped.append(key)
            continue
        request = {"manifest": url, **{k: manifest[k] for k in MANIFEST_OPTIONS if k in manifest}}
        name = execution_name(bucket, key, record.s3.get_object.etag or "")
        try:
            response = sfn.start_execution(stateMachineArn=os.environ["STATE_MACHINE_ARN"], name=name,
                                           input=json.dumps(request))
        except sfn.exceptions.ExecutionAlreadyExists:
            logger.info("ingest already started for this manifest", extra={"manifest": url, "execution": name})
            skipped.append(key)
            continue
        logger.info("started ingest", extra={"manifest": url, "execution": response["executionArn"]})
        started.append(response["executionArn"])
    return {"started": started, "skipped": skipped}
