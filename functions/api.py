"""The HTTP API Lambda (API Gateway HTTP API, payload v2).

The routes (TESScut-compatible, the MAST calls lightkurve makes, cubecut's /v1, the web
page) live in :mod:`cubecut.api.routes`; this module makes the app, adds OpenAPI/Swagger,
the 404/405 and 500 answers, and the powertools logging, tracing and metrics.

Secrets stay out of telemetry: the tracer records no handler response (the answers hold
presigned URLs, whose query strings are credentials), events are never logged, and every
log record passes :class:`cubecut.api.redact.RedactingFilter`.
"""
from __future__ import annotations

import json

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from cubecut.api import openapi as doc
from cubecut.api import routes
from cubecut.api.forms import bounded_json_body
from cubecut.api.redact import RedactingFilter
from cubecut.api.routes import presign_expiry, service  # noqa: F401  (the app's configuration, for tests)

logger = Logger()
logger.addFilter(RedactingFilter())
tracer = Tracer()
metrics = Metrics(namespace="cubecut")
TITLE, DESCRIPTION = "cubecut", "TESS FFI cutouts, TESScut-compatible"
app = APIGatewayHttpResolver(enable_validation=True, json_body_deserializer=bounded_json_body)
app.enable_swagger(path="/swagger", title=TITLE, description=DESCRIPTION)
app.include_router(routes.router)
routes.ROUTE_METHODS.update({"/swagger": {"GET"}, "/openapi.json": {"GET"}})


def openapi_document() -> dict:
    """The OpenAPI document, as served."""
    return doc.truthful(json.loads(app.get_openapi_json_schema(title=TITLE, description=DESCRIPTION)))


@app.get("/openapi.json", include_in_schema=False)
def openapi():
    return Response(status_code=200, content_type="application/json", body=json.dumps(openapi_document()))


@app.not_found
def not_found(_exc: Exception) -> Response:
    return routes.no_route(app.current_event.http_method, app.current_event.path)


@app.exception_handler(Exception)
def internal_error(_exc: Exception) -> Response:
    return routes.internal_error()


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def handler(event: dict, context: LambdaContext) -> dict:
    metrics.add_metric(name="Requests", unit=MetricUnit.Count, value=1)
    return app.resolve(event, context)
