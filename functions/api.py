"""The HTTP API Lambda (API Gateway HTTP API, payload v2).

The app (routes, OpenAPI, error answers) is :mod:`cubecut_app.app`; this module is its
edge: it builds the :class:`~cubecut_app.settings.AppSettings` from the environment, hands
them to the app with each request, and adds the powertools logging, tracing and metrics.

Secrets stay out of telemetry: the tracer records no handler response (the answers hold
presigned URLs, whose query strings are credentials), events are never logged, and every
log record passes :class:`cubecut_app.redact.RedactingFilter`.
"""
from __future__ import annotations

import os

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from cubecut.tesscut.service import CutoutService
from cubecut_app.app import answer, openapi_document  # noqa: F401  (the document, for tests and docs)
from cubecut_app.redact import RedactingFilter
from cubecut_app.settings import AppSettings, cutout_service

logger = Logger()
logger.addFilter(RedactingFilter())
tracer = Tracer()
metrics = Metrics(namespace="cubecut")


def settings() -> AppSettings:
    """The API's settings from this process's environment (read per request: a few look-ups)."""
    return AppSettings.from_env(os.environ)


def service() -> CutoutService:
    """The cutout service the API uses under the current environment."""
    return cutout_service(settings())


def presign_expiry() -> int:
    """Presigned URL lifetime in seconds, as configured (clamped to [60 s, 7 days])."""
    return settings().presign_expiry


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def handler(event: dict, context: LambdaContext) -> dict:
    metrics.add_metric(name="Requests", unit=MetricUnit.Count, value=1)
    return answer(event, context, settings())
