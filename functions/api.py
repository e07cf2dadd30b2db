"""The HTTP API Lambda (API Gateway HTTP API, payload v2): TESScut routes and /v1.

TESScut-compatible (``/tesscut/api/v0.1/...``): ``sector``, ``astrocut`` (GET or POST),
``ffi_wcs``, ``cubes``. Answers follow TESScut: ``400 {"msg": ...}`` for bad input,
``200 {"msg": ...}`` when no cube covers the position, ``503`` with ``Retry-After`` when
busy, zips inline when small and ``303`` to a presigned URL when large.

cubecut's own (``/v1``): ``POST /v1/cutouts`` → JSON with a presigned URL of the TPF;
``GET /v1/cubes``; ``GET /health``. The OpenAPI schema is at ``/openapi.json`` and a
Swagger page at ``/swagger``.
"""
from __future__ import annotations

import base64
import json
import os
from functools import lru_cache
from urllib.parse import parse_qs

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from cubecut.api import tesscut, v1
from cubecut.api.catalog import CubeCatalog
from cubecut.api.service import CutoutService, ServiceBusyError, presign
from cubecut.errors import InputError, ObjectNotFoundError

logger = Logger()
tracer = Tracer()
metrics = Metrics(namespace="cubecut")
# Routes return powertools Response objects; they carry no return annotation because the
# OpenAPI validation middleware would try to build a pydantic schema for Response.
app = APIGatewayHttpResolver(enable_validation=True)
app.enable_swagger(path="/swagger", title="cubecut", description="TESS FFI cutouts, TESScut-compatible")
TESSCUT = tesscut.API_PREFIX


@lru_cache(maxsize=1)
def service() -> CutoutService:
    """Built on first use from the environment (no AWS calls at import / cold start)."""
    bucket = os.environ["CUBECUT_BUCKET"]
    catalog = CubeCatalog(f"s3://{bucket}/{os.environ.get('CUBECUT_CUBE_PREFIX', 'cubes/')}",
                          ttl=float(os.environ.get("CUBECUT_CATALOG_TTL", "30")))
    return CutoutService(catalog, f"s3://{bucket}/{os.environ.get('CUBECUT_RESULTS_PREFIX', 'results/')}",
                         max_concurrent=int(os.environ.get("CUBECUT_MAX_CONCURRENT", "4")))


def presign_expiry() -> int:
    """Presigned URL lifetime in seconds, clamped to [60 s, 7 days] (S3's SigV4 maximum)."""
    return max(60, min(int(os.environ.get("CUBECUT_PRESIGN_EXPIRY", "3600")), 7 * 24 * 3600))


def params() -> dict[str, list[str]]:
    """Query string and form body merged, repeated keys kept (API Gateway comma-joins them
    in queryStringParameters, so the raw query string is parsed instead)."""
    event = app.current_event
    merged = parse_qs(event.raw_query_string or "", keep_blank_values=True)
    body = event.body or ""
    if body and "x-www-form-urlencoded" in (event.headers.get("content-type") or ""):
        text = base64.b64decode(body).decode() if event.is_base64_encoded else body
        for key, values in parse_qs(text, keep_blank_values=True).items():
            merged.setdefault(key, []).extend(values)
    return merged


def _json(status: int, payload: dict, headers: dict | None = None) -> Response:
    return Response(status_code=status, content_type="application/json", body=json.dumps(payload),
                    headers=headers or {})


def _tesscut_error(exc: Exception) -> Response:
    if isinstance(exc, ServiceBusyError):
        return _json(503, {"msg": str(exc)}, {"Retry-After": "2"})
    return _json(400, {"msg": str(exc)})


@app.route(f"{TESSCUT}/sector", method=["GET", "POST"])
def tesscut_sector():
    try:
        return _json(200, service().sectors(tesscut.parse_sector_request(params())))
    except (InputError, ServiceBusyError) as exc:
        return _tesscut_error(exc)


@app.route(f"{TESSCUT}/astrocut", method=["GET", "POST"])
def tesscut_astrocut():
    try:
        delivery = service().astrocut(tesscut.parse_cutout_request(params()))
    except (InputError, ServiceBusyError) as exc:
        return _tesscut_error(exc)
    metrics.add_metric(name="CutoutRequests", unit=MetricUnit.Count, value=1)
    logger.info("astrocut", extra={"members": delivery.members, "bytes": delivery.size,
                                   "cached": delivery.cached, "reads": delivery.reads})
    if delivery.message:
        return _json(200, {"msg": delivery.message})
    if delivery.body is not None:
        return Response(status_code=200, content_type="application/zip", body=delivery.body,
                        headers={"Content-Disposition": 'attachment; filename="astrocut.zip"'})
    url = presign(delivery.url, presign_expiry(), "astrocut.zip")
    return Response(status_code=303, headers={"Location": url}, body="")


@app.get(f"{TESSCUT}/ffi_wcs")
def tesscut_ffi_wcs():
    try:
        header = v1.ffi_wcs(service().catalog, params())
    except InputError as exc:
        return _json(404 if isinstance(exc, ObjectNotFoundError) else 400, {"msg": str(exc)})
    return Response(status_code=200, content_type="application/fits", body=header)


@app.get(f"{TESSCUT}/cubes")
@app.get("/v1/cubes")
def cubes():
    return _json(200, {"cubes": v1.describe_cubes(service().catalog)})


@app.post("/v1/cutouts")
def cutouts():
    try:
        body = json.loads(app.current_event.decoded_body or "{}")
        answer = v1.make_cutout(service(), body, presign_expiry())
    except json.JSONDecodeError as exc:
        return _json(400, {"message": f"body is not JSON: {exc}"})
    except ServiceBusyError as exc:
        return _json(503, {"message": str(exc)}, {"Retry-After": "2"})
    except InputError as exc:
        return _json(404 if isinstance(exc, ObjectNotFoundError) else 400, {"message": str(exc)})
    logger.info("cutout", extra={"name": answer["name"], "bytes": answer["bytes"], "reads": answer["reads"]})
    return _json(200, answer)


@app.get("/health")
def health():
    return _json(200, {"status": "ok"})


@app.not_found
def not_found(_exc: Exception) -> Response:
    return _json(404, {"message": f"no route {app.current_event.http_method} {app.current_event.path}"})


@app.exception_handler(Exception)
def internal_error(exc: Exception) -> Response:
    logger.exception("unhandled error")
    return _json(500, {"message": "internal error", "msg": "internal error"})


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict, context: LambdaContext) -> dict:
    return app.resolve(event, context)
