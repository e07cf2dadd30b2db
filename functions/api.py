"""The HTTP API Lambda (API Gateway HTTP API, payload v2).

The app (routes, OpenAPI, error answers) is :mod:`cubecut_app.app`; this module is its
edge: it builds the :class:`~cubecut_app.settings.AppSettings` from the environment, hands
them to the app with each request, and adds the powertools logging, tracing and metrics.

Cold start: importing this module loads the app and pydantic but no astropy (the library
loads it with the first request that needs it), no boto3 (the first S3 client) and no X-Ray
SDK: powertools' Tracer imports ``aws_xray_sdk``, whose recorder builds an X-Ray client at
import (~0.2-0.3 s, whether tracing is enabled or not), so the Tracer is built at the first
invocation (:func:`cubecut_app.tracing.traced`), before that invocation makes any AWS call
(its botocore patches still see every call). benchmarks/imports.py measures both halves;
tests/stack/test_packaging.py checks the import.

Secrets stay out of telemetry: the tracer records no handler response (the answers hold
presigned URLs, whose query strings are credentials), events are never logged, and every
log record passes :class:`cubecut_app.redact.RedactingFilter`.
"""
from __future__ import annotations

import functools
import json
import os
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from cubecut_app.app import answer, openapi_document  # noqa: F401  (the document, for tests and docs)
from cubecut_app.redact import RedactingFilter
from cubecut_app.settings import AppSettings
from cubecut_app import tracing
from cubecut_app.tracing import traced

logger = Logger()
logger.addFilter(RedactingFilter())
metrics = Metrics(namespace="cubecut")


def settings() -> AppSettings:
    """The API's settings from this process's environment (read per request: a few look-ups)."""
    return AppSettings.from_env(os.environ)


def __getattr__(name: str) -> Any:
    """``tracer``: the handler's powertools Tracer, built on first use (see above)."""
    if name == "tracer":
        return tracing.tracer()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class StepFunctionsJobs:
    """Bulk jobs on the bulk state machine ``arn`` (:class:`cubecut_app.jobs.JobEngine`):
    one execution per job, named by the job id."""

    def __init__(self, arn: str) -> None:
        self.arn = arn
        # The execution ARN of a job: the state machine's with ":execution:" and the name.
        self._prefix = arn.replace(":stateMachine:", ":execution:", 1) + ":"

    @functools.cached_property
    def _client(self) -> Any:
        import boto3

        return boto3.client("stepfunctions")

    def start(self, job: str, payload: dict) -> None:
        self._client.start_execution(stateMachineArn=self.arn, name=job, input=json.dumps(payload))

    def describe(self, job: str) -> dict | None:
        try:
            return self._client.describe_execution(executionArn=self._prefix + job)
        except self._client.exceptions.ExecutionDoesNotExist:
            return None

    def running(self) -> list[str]:
        listed = self._client.list_executions(stateMachineArn=self.arn, statusFilter="RUNNING", maxResults=1000)
        return [execution["name"] for execution in listed["executions"]]


@functools.lru_cache(maxsize=4)
def _jobs(arn: str) -> StepFunctionsJobs | None:
    return StepFunctionsJobs(arn) if arn else None


@traced(capture_response=False)  # the answers hold presigned URLs
def _answer(event: dict, context: LambdaContext) -> dict:
    config = settings()
    return answer(event, context, config, _jobs(config.bulk_state_machine))


@logger.inject_lambda_context(log_event=False)
@metrics.log_metrics
def handler(event: dict, context: LambdaContext) -> dict:
    metrics.add_metric(name="Requests", unit=MetricUnit.Count, value=1)
    return _answer(event, context)
