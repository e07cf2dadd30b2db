"""The HTTP API Lambda (API Gateway HTTP API, payload v2): TESScut, the MAST calls lightkurve
makes, and cubecut's own /v1.

TESScut-compatible (``/tesscut/api/v0.1/...``): ``sector`` and ``astrocut`` (GET or POST),
``ffi_wcs``, ``cubes``. Answers follow TESScut: ``400 {"msg": ...}`` for bad input,
``200 {"msg": ...}`` when no cube covers the position, ``503`` with ``Retry-After`` when
busy, zips inline when small and ``303`` to a presigned URL when large. ``astrocut``
answers carry ``X-Cubecut-Cache`` (hit/miss), ``X-Cubecut-Reads`` (cube and sidecar read
requests made), ``X-Cubecut-Bytes-Read`` and a ``Server-Timing`` entry per cube.

MAST portal subset (for ``lightkurve.search_tesscut``): ``POST /api/v0/invoke``,
``POST /portal/Mashup/Mashup.asmx/columnsconfig`` and ``GET /Santa-war/query``.

cubecut's own (``/v1``): ``POST /v1/cutouts`` → JSON with a presigned URL of the TPF;
``GET /v1/cubes``; ``GET /health``. The OpenAPI schema is at ``/openapi.json`` (and
``/swagger?format=json``) and a Swagger page at ``/swagger``. A known path with another
method answers ``405`` with ``Allow``; an unknown path ``404``; both JSON.
"""
from __future__ import annotations

import base64
import binascii
import json
import os
from functools import lru_cache
from typing import Callable

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from cubecut.api import mast, tesscut, v1
from cubecut.api.catalog import CubeCatalog
from cubecut.api.forms import MalformedParamsError, UnsupportedBodyError, collect_params
from cubecut.api.service import (MAX_CONCURRENT, MAX_PIXEL_FRAMES, RETRY_AFTER_S, CutoutService, Delivery,
                                 ServiceBusyError, presign)
from cubecut.errors import InputError, ObjectNotFoundError

logger = Logger()
tracer = Tracer()
metrics = Metrics(namespace="cubecut")
# Routes return powertools Response objects; they carry no return annotation because the
# OpenAPI validation middleware would try to build a pydantic schema for Response.
app = APIGatewayHttpResolver(enable_validation=True)
app.enable_swagger(path="/swagger", title="cubecut", description="TESS FFI cutouts, TESScut-compatible")
TESSCUT = tesscut.API_PREFIX
#: Methods of every path routed here, to tell 405 from 404.
ROUTE_METHODS: dict[str, set[str]] = {"/swagger": {"GET"}}


def route(path: str, *methods: str, **kwargs) -> Callable:
    """``app.route`` that also records the path's methods in ROUTE_METHODS."""
    ROUTE_METHODS.setdefault(path, set()).update(methods)
    return app.route(path, method=list(methods), **kwargs)


@lru_cache(maxsize=4)
def _service(bucket: str, cube_prefix: str, results_prefix: str, ttl: float, max_concurrent: int,
             max_pixel_frames: int) -> CutoutService:
    catalog = CubeCatalog(f"s3://{bucket}/{cube_prefix}", ttl=ttl)
    return CutoutService(catalog, f"s3://{bucket}/{results_prefix}", max_concurrent=max_concurrent,
                         max_pixel_frames=max_pixel_frames)


def service() -> CutoutService:
    """The service for the current configuration (environment), built on first use: no AWS
    calls at import / cold start, and a changed configuration gets its own service."""
    env = os.environ
    return _service(env["CUBECUT_BUCKET"], env.get("CUBECUT_CUBE_PREFIX", "cubes/"),
                    env.get("CUBECUT_RESULTS_PREFIX", "results/"), float(env.get("CUBECUT_CATALOG_TTL", "30")),
                    int(env.get("CUBECUT_MAX_CONCURRENT", MAX_CONCURRENT)),
                    int(env.get("CUBECUT_MAX_PIXEL_FRAMES", MAX_PIXEL_FRAMES)))


def presign_expiry() -> int:
    """Presigned URL lifetime in seconds, clamped to [60 s, 7 days] (S3's SigV4 maximum)."""
    return max(60, min(int(os.environ.get("CUBECUT_PRESIGN_EXPIRY", "3600")), 7 * 24 * 3600))


def params() -> dict[str, list[str]]:
    """Query string and form/JSON body merged, repeated keys kept (API Gateway comma-joins
    them in queryStringParameters, so the raw query string is parsed instead)."""
    event = app.current_event
    text = event.body or ""
    try:
        body = base64.b64decode(text, validate=True) if event.is_base64_encoded else text.encode()
    except binascii.Error:
        raise MalformedParamsError("the body is not valid base64") from None
    return collect_params(event.raw_query_string or "", body, event.headers.get("content-type"))


def _json(status: int, payload: dict, headers: dict | None = None) -> Response:
    return Response(status_code=status, content_type="application/json", body=json.dumps(payload),
                    headers=headers or {})


def _msg(exc: Exception) -> Response:
    """TESScut/MAST errors: ``{"msg": ...}`` with 503 (busy), 415, 404 or 400."""
    if isinstance(exc, ServiceBusyError):
        return _json(503, {"msg": str(exc)}, {"Retry-After": str(RETRY_AFTER_S)})
    if isinstance(exc, UnsupportedBodyError):
        return _json(415, {"msg": str(exc)})
    return _json(404 if isinstance(exc, ObjectNotFoundError) else 400, {"msg": str(exc)})


# -- TESScut ------------------------------------------------------------------------------
@route(f"{TESSCUT}/sector", "GET", "POST", tags=["TESScut"], summary="Cubes that contain a position",
       description="`ra`, `dec` (deg), `radius` (deg, or with a unit: `0m`, `30s`, `1d`, `3px`). "
                   "Answers `{\"results\": [{sectorName, sector, camera, ccd}]}`.")
def tesscut_sector():
    try:
        return _json(200, service().sectors(tesscut.parse_sector_request(params())))
    except (InputError, ServiceBusyError) as exc:
        return _msg(exc)


def _work_headers(delivery: Delivery) -> dict[str, str]:
    timing = ", ".join(f'{w.sector_name};dur={(w.stop - w.start) * 1000:.1f};desc="start={w.start * 1000:.1f}"'
                       for w in delivery.work)
    return {"X-Cubecut-Cache": "hit" if delivery.cached else "miss", "X-Cubecut-Reads": str(delivery.reads),
            "X-Cubecut-Bytes-Read": str(delivery.bytes_read),
            "Server-Timing": ", ".join(filter(None, [timing, f"total;dur={delivery.elapsed * 1000:.1f}"]))}


@route(f"{TESSCUT}/astrocut", "GET", "POST", tags=["TESScut"], summary="Cutouts as a zip of TPFs",
       description="`ra`, `dec` (deg); `x`, `y` (size; `y` defaults to `x`); `units` px|arcsec|arcmin|deg "
                   "(also s, m, d); `sector` (absent = all; repeated, comma-separated or `[28, 68]`); "
                   "`product` SPOC|TICA. 200 zip, 303 to a presigned URL when larger than 4 MiB, "
                   "200 `{msg}` when no cube covers the position, 400 `{msg}`, 503 + Retry-After.")
def tesscut_astrocut():
    try:
        delivery = service().astrocut(tesscut.parse_cutout_request(params()))
    except (InputError, ServiceBusyError) as exc:
        return _msg(exc)
    metrics.add_metric(name="CutoutRequests", unit=MetricUnit.Count, value=1)
    logger.info("astrocut", extra={"members": delivery.members, "bytes": delivery.size, "cached": delivery.cached,
                                   "reads": delivery.reads, "seconds": round(delivery.elapsed, 3)})
    headers = _work_headers(delivery)
    if delivery.message:
        return _json(200, {"msg": delivery.message}, headers)
    if delivery.body is not None:
        headers["Content-Disposition"] = 'attachment; filename="astrocut.zip"'
        return Response(status_code=200, content_type="application/zip", body=delivery.body, headers=headers)
    headers["Location"] = presign(delivery.url, presign_expiry(), "astrocut.zip")
    return Response(status_code=303, headers=headers, body="")


@route(f"{TESSCUT}/ffi_wcs", "GET", tags=["TESScut"], summary="The FFI WCS of one cube (FITS header)",
       description="`sector`, `camera`, `ccd` (and `product`); 404 `{msg}` if that cube is not ingested.")
def tesscut_ffi_wcs():
    try:
        header = v1.ffi_wcs(service().catalog, params())
    except InputError as exc:
        return _msg(exc)
    return Response(status_code=200, content_type="application/fits", body=header)


@route(f"{TESSCUT}/cubes", "GET", tags=["TESScut"], summary="Ingested cubes (sector, camera, CCD, frames, times)")
@route("/v1/cubes", "GET", tags=["v1"], summary="Ingested cubes (sector, camera, CCD, frames, times)")
def cubes():
    return _json(200, {"cubes": v1.describe_cubes(service().catalog)})


# -- the MAST portal calls of lightkurve.search_tesscut -----------------------------------
@route("/api/v0/invoke", "POST", tags=["MAST"], summary="Mashup request (Mast.Caom.* and Mast.Name.Lookup)",
       description="Form field `request`: the Mashup JSON. Every ingested cube is one CAOM observation "
                   "(`target_name` 'TESS FFI', `obs_id` its sector name).")
def mast_invoke():
    try:
        request = params().get("request") or [""]
        return _json(200, mast.invoke(service().catalog, request[0]))
    except InputError as exc:
        return _msg(exc)


@route("/portal/Mashup/Mashup.asmx/columnsconfig", "POST", tags=["MAST"], summary="CAOM column types")
def mast_columns_config():
    try:
        config_id = params().get("colConfigId") or [""]
        return _json(200, mast.columns_config(config_id[0]))
    except InputError as exc:
        return _msg(exc)


@route("/Santa-war/query", "GET", tags=["MAST"], summary="Name resolver (coordinates only)",
       description="`name` (repeatable). Resolves positions written as names ('132.5, -69.2'); cubecut "
                   "has no object catalogue.")
def mast_resolver():
    try:
        return _json(200, mast.resolve_names(params().get("name", [])))
    except InputError as exc:
        return _msg(exc)


# -- cubecut's own ------------------------------------------------------------------------
@route("/v1/cutouts", "POST", tags=["v1"], summary="One TPF from one cube, as a presigned URL")
def cutouts():
    try:
        body = json.loads(app.current_event.decoded_body or "{}")
        answer = v1.make_cutout(service(), body, presign_expiry())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return _json(400, {"message": f"body is not JSON: {exc}"})
    except ServiceBusyError as exc:
        return _json(503, {"message": str(exc)}, {"Retry-After": str(RETRY_AFTER_S)})
    except InputError as exc:
        return _json(404 if isinstance(exc, ObjectNotFoundError) else 400, {"message": str(exc)})
    logger.info("cutout", extra={"name": answer["name"], "bytes": answer["bytes"], "reads": answer["reads"]})
    return _json(200, answer)


@route("/health", "GET", tags=["v1"], summary="Liveness")
def health():
    return _json(200, {"status": "ok"})


@route("/openapi.json", "GET", include_in_schema=False)
def openapi():
    return Response(status_code=200, content_type="application/json",
                    body=app.get_openapi_json_schema(title="cubecut", description="TESS FFI cutouts, "
                                                     "TESScut-compatible"))


def _error_body(path: str, text: str) -> dict:
    """``{"message"}`` under /v1 (cubecut's JSON API), ``{"msg"}`` elsewhere (TESScut, MAST)."""
    return {"message" if path.startswith("/v1/") else "msg": text}


@app.not_found
def not_found(_exc: Exception) -> Response:
    event = app.current_event
    allowed = ROUTE_METHODS.get(event.path)
    if allowed:
        return _json(405, _error_body(event.path, f"{event.http_method} is not allowed on {event.path}"),
                     {"Allow": ", ".join(sorted(allowed))})
    return _json(404, _error_body(event.path, f"no route {event.http_method} {event.path}"))


@app.exception_handler(Exception)
def internal_error(exc: Exception) -> Response:
    logger.exception("unhandled error")
    return _json(500, {"message": "internal error", "msg": "internal error"})


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict, context: LambdaContext) -> dict:
    metrics.add_metric(name="Requests", unit=MetricUnit.Count, value=1)
    return app.resolve(event, context)
