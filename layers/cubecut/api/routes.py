"""The routes of the HTTP API as a powertools Router, included by the API Lambda
(``functions/api.py``): TESScut, the MAST calls lightkurve makes, cubecut's own /v1, and a
web page.

TESScut-compatible (``/tesscut/api/v0.1/...``): ``sector`` and ``astrocut`` (GET or POST),
``moving_target/sector`` and ``moving_target/astrocut`` (GET or POST, with the path given as
``ephemeris``: there is no JPL Horizons here), ``ffi_wcs``, ``cubes``, and cubecut's
``quicklook`` (a PNG of an ``astrocut`` request). Answers follow TESScut:
``400 {"msg": ...}`` for bad input, ``200 {"msg": ...}`` when no cube covers the position,
``503`` with ``Retry-After`` when busy, zips inline when small and ``303`` to a presigned URL
when large. ``astrocut`` answers carry ``X-Cubecut-Cache`` (hit/miss), ``X-Cubecut-Reads``
(cube and sidecar read requests made), ``X-Cubecut-Bytes-Read`` and a ``Server-Timing``
entry per cube.

MAST portal subset (for ``lightkurve.search_tesscut``): ``POST /api/v0/invoke``,
``POST /portal/Mashup/Mashup.asmx/columnsconfig`` and ``GET /Santa-war/query``.

cubecut's own (``/v1``): ``POST /v1/cutouts`` → JSON with a presigned URL of the TPF;
``POST /v1/bulk`` starts a bulk job and ``GET /v1/bulk/{job}``
reports it; ``GET /v1/quicklook`` → PNG of one cube's cutout; ``GET /v1/resolve`` → a target's position;
``GET /v1/cubes``; ``GET /health``. The web page is at ``/`` (and ``/web``), its script and
style sheet under ``/web/``. The OpenAPI schema is at ``/openapi.json`` (and
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

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter
from aws_lambda_powertools.metrics import MetricUnit

from ..errors import CubecutError, InputError, ObjectNotFoundError
from . import bulk_jobs, mast, moving, quicklook, tesscut, v1, webpage
from .catalog import CubeCatalog
from .forms import MalformedParamsError, UnsupportedBodyError, collect_params
from .names import ResolverUnavailableError, UnknownTargetError, resolve_target
from .service import (MAX_CONCURRENT, MAX_PIXEL_FRAMES, RETRY_AFTER_S, CutoutService, Delivery, ServiceBusyError,
                      presign)

logger = Logger()  # same service name: the same logger as the handler module's
metrics = Metrics(namespace="cubecut")
# Routes return powertools Response objects; they carry no return annotation because the
# OpenAPI validation middleware would try to build a pydantic schema for Response.
router = APIGatewayHttpRouter()
TESSCUT = tesscut.API_PREFIX
#: Methods of every routed path (the app adds its own), to tell 405 from 404.
ROUTE_METHODS: dict[str, set[str]] = {}


def route(path: str, *methods: str, **kwargs) -> Callable:
    """``router.route`` that also records the path's methods in ROUTE_METHODS."""
    ROUTE_METHODS.setdefault(path, set()).update(methods)
    return router.route(path, method=list(methods), **kwargs)


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
    event = router.current_event
    text = event.body or ""
    try:
        body = base64.b64decode(text, validate=True) if event.is_base64_encoded else text.encode()
    except binascii.Error:
        raise MalformedParamsError("the body is not valid base64") from None
    return collect_params(event.raw_query_string or "", body, event.headers.get("content-type"))


def _json(status: int, payload: dict, headers: dict | None = None) -> Response:
    return Response(status_code=status, content_type="application/json", body=json.dumps(payload),
                    headers=headers or {})


def _error(exc: CubecutError, key: str = "msg") -> Response:
    """An error answer ``{key: message}``: 503 + Retry-After when busy, 503 when no name
    resolver is reachable, 415 for an unreadable body, 404 for unknown cubes and names,
    else 400. TESScut/MAST routes use ``msg``, /v1 ``message``."""
    body = {key: str(exc)}
    if isinstance(exc, ServiceBusyError):
        return _json(503, body, {"Retry-After": str(RETRY_AFTER_S)})
    if isinstance(exc, ResolverUnavailableError):
        return _json(503, body)
    if isinstance(exc, UnsupportedBodyError):
        return _json(415, body)
    return _json(404 if isinstance(exc, (ObjectNotFoundError, UnknownTargetError)) else 400, body)


def _png(picture: quicklook.Quicklook) -> Response:
    return Response(status_code=200, content_type="image/png", body=picture.png,
                    headers={"X-Cubecut-Cache": "hit" if picture.cached else "miss",
                             "Content-Disposition": 'inline; filename="quicklook.png"'})


# -- TESScut ------------------------------------------------------------------------------
@route(f"{TESSCUT}/sector", "GET", "POST", tags=["TESScut"], summary="Cubes that contain a position",
       description="`ra`, `dec` (deg), `radius` (deg, or with a unit: `0m`, `30s`, `1d`, `3px`). "
                   "Answers `{\"results\": [{sectorName, sector, camera, ccd}]}`.")
def tesscut_sector():
    try:
        return _json(200, service().sectors(tesscut.parse_sector_request(params())))
    except (InputError, ServiceBusyError) as exc:
        return _error(exc)


def _work_headers(delivery: Delivery) -> dict[str, str]:
    timing = ", ".join(f'{w.sector_name};dur={(w.stop - w.start) * 1000:.1f};desc="start={w.start * 1000:.1f}"'
                       for w in delivery.work)
    return {"X-Cubecut-Cache": "hit" if delivery.cached else "miss", "X-Cubecut-Reads": str(delivery.reads),
            "X-Cubecut-Bytes-Read": str(delivery.bytes_read),
            "Server-Timing": ", ".join(filter(None, [timing, f"total;dur={delivery.elapsed * 1000:.1f}"]))}


def _zip_answer(delivery: Delivery, route_name: str) -> Response:
    """A delivered zip as TESScut answers it: inline, 303 to a presigned URL, or ``{msg}``."""
    metrics.add_metric(name="CutoutRequests", unit=MetricUnit.Count, value=1)
    logger.info(route_name, extra={"members": delivery.members, "bytes": delivery.size, "cached": delivery.cached,
                                   "reads": delivery.reads, "seconds": round(delivery.elapsed, 3)})
    headers = _work_headers(delivery)
    if delivery.message:
        return _json(200, {"msg": delivery.message}, headers)
    if delivery.body is not None:
        headers["Content-Disposition"] = 'attachment; filename="astrocut.zip"'
        return Response(status_code=200, content_type="application/zip", body=delivery.body, headers=headers)
    headers["Location"] = presign(delivery.url, presign_expiry(), "astrocut.zip")
    return Response(status_code=303, headers=headers, body="")


@route(f"{TESSCUT}/astrocut", "GET", "POST", tags=["TESScut"], summary="Cutouts as a zip of TPFs",
       description="`ra`, `dec` (deg); `x`, `y` (size; `y` defaults to `x`); `units` px|arcsec|arcmin|deg "
                   "(also s, m, d); `sector` (absent = all; repeated, comma-separated or `[28, 68]`); "
                   "`product` SPOC|TICA. 200 zip, 303 to a presigned URL when larger than 4 MiB, "
                   "200 `{msg}` when no cube covers the position, 400 `{msg}`, 503 + Retry-After.")
def tesscut_astrocut():
    try:
        delivery = service().astrocut(tesscut.parse_cutout_request(params()))
    except (InputError, ServiceBusyError) as exc:
        return _error(exc)
    return _zip_answer(delivery, "astrocut")


_EPHEMERIS_DOC = ("`ephemeris`: the path as JSON, `{\"time\": [...], \"ra\": [...], \"dec\": [...]}` or a list of "
                  "`{time, ra, dec}` rows (ICRS degrees); `time_format` btjd (default)|jd|mjd|isot|iso, "
                  "`time_scale` tdb (default)|utc|tt|tai; `obj_id` names the target (JPL Horizons is not "
                  "reachable: `obj_id` alone is answered 400); `obj_type` majorbody|smallbody.")


@route(f"{TESSCUT}/moving_target/sector", "GET", "POST", tags=["TESScut"],
       summary="Cubes a moving target's path crosses", description=_EPHEMERIS_DOC + " Also `sector`, `product`. "
       "Answers `{\"results\": [{sectorName, sector, camera, ccd}]}`, one entry per cube crossed.")
def tesscut_moving_sector():
    try:
        return _json(200, moving.moving_sectors(service().catalog, moving.parse_moving_request(params())))
    except InputError as exc:
        return _error(exc)


@route(f"{TESSCUT}/moving_target/astrocut", "GET", "POST", tags=["TESScut"],
       summary="Cutouts that follow a moving target, as a zip of TPFs",
       description=_EPHEMERIS_DOC + " Also `x`, `y`, `units`, `sector`, `product` as for `astrocut`. One TPF per "
       "sector crossed, members `{sectorName}_{obj_id}_{nx}x{ny}_astrocut.fits`; 200 zip or 303, 200 `{msg}` "
       "when the path crosses no cube, 400 `{msg}`, 503 + Retry-After.")
def tesscut_moving_astrocut():
    try:
        delivery = moving.moving_astrocut(service(), moving.parse_moving_request(params()))
    except (InputError, ServiceBusyError) as exc:
        return _error(exc)
    return _zip_answer(delivery, "moving_astrocut")


@route(f"{TESSCUT}/quicklook", "GET", tags=["TESScut"], summary="Quick-look PNG of an astrocut request",
       description="The parameters of `astrocut`, plus `frame` median|first and `stretch` "
                   "asinh|sinh|sqrt|log|linear: per matching cube (in sector order) a frame with the aperture "
                   "and the aperture light curve, one PNG. The zip is cached as `astrocut`'s, so downloading "
                   "it afterwards reads no cube. 200 `{msg}` when no cube covers the position.")
def tesscut_quicklook():
    try:
        values = params()
        picture = quicklook.quicklook(service(), tesscut.parse_cutout_request(values), quicklook.parse_options(values))
    except (InputError, ServiceBusyError) as exc:
        return _error(exc)
    return _json(200, {"msg": picture.message}) if picture.message else _png(picture)


@route(f"{TESSCUT}/ffi_wcs", "GET", tags=["TESScut"], summary="The FFI WCS of one cube (FITS header)",
       description="`sector`, `camera`, `ccd` (and `product`); 404 `{msg}` if that cube is not ingested.")
def tesscut_ffi_wcs():
    try:
        header = v1.ffi_wcs(service().catalog, params())
    except InputError as exc:
        return _error(exc)
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
        return _error(exc)


@route("/portal/Mashup/Mashup.asmx/columnsconfig", "POST", tags=["MAST"], summary="CAOM column types")
def mast_columns_config():
    try:
        config_id = params().get("colConfigId") or [""]
        return _json(200, mast.columns_config(config_id[0]))
    except InputError as exc:
        return _error(exc)


@route("/Santa-war/query", "GET", tags=["MAST"], summary="Name resolver (coordinates only)",
       description="`name` (repeatable). Resolves positions written as names ('132.5, -69.2'); cubecut "
                   "has no object catalogue.")
def mast_resolver():
    try:
        return _json(200, mast.resolve_names(params().get("name", [])))
    except InputError as exc:
        return _error(exc)


# -- cubecut's own ------------------------------------------------------------------------
@route("/v1/cutouts", "POST", tags=["v1"], summary="One TPF from one cube, as a presigned URL")
def cutouts():
    try:
        body = json.loads(router.current_event.decoded_body or "{}")
        answer = v1.make_cutout(service(), body, presign_expiry())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return _json(400, {"message": f"body is not JSON: {exc}"})
    except (InputError, ServiceBusyError) as exc:
        return _error(exc, "message")
    # ("name" is a LogRecord attribute: logging refuses it as an extra key.)
    logger.info("cutout", extra={"tpf": answer["name"], "bytes": answer["bytes"], "reads": answer["reads"]})
    return _json(200, answer)


@route("/v1/bulk", "POST", tags=["v1"], summary="Start a bulk job: a TPF for every target of a catalog",
       description="JSON `{targets, cubes?, size?}` (see cubecut.api.bulk_jobs) -> 202 `{job, status_url}`.")
def bulk_start():
    import boto3

    try:
        answer = bulk_jobs.start_job(json.loads(router.current_event.decoded_body or "{}"), service().catalog,
                                     boto3.client("stepfunctions"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return _json(400, {"message": f"body is not JSON: {exc}"})
    except InputError as exc:
        return _error(exc, "message")
    return _json(202, answer)


@route("/v1/bulk/<job>", "GET", tags=["v1"], summary="A bulk job's status, progress and results manifest")
def bulk_status(job: str):
    import boto3

    try:
        return _json(200, bulk_jobs.job_status(job, boto3.client("stepfunctions"), presign_expiry()))
    except InputError as exc:
        return _error(exc, "message")


@route("/v1/quicklook", "GET", tags=["v1"], summary="Quick-look PNG of one cube's cutout",
       description="`cube` (a sector name such as tess-s0001-1-1), `ra`, `dec` (deg), `size` (px: `N` or "
                   "`NX,NY`, default 11), `frame` median|first, `stretch` asinh|sinh|sqrt|log|linear.")
def v1_quicklook():
    try:
        values = params()
        request, entry = v1.quicklook_request(service().catalog, values)
        picture = quicklook.quicklook(service(), request, quicklook.parse_options(values), [entry])
    except (InputError, ServiceBusyError) as exc:
        return _error(exc, "message")
    return _json(400, {"message": picture.message}) if picture.message else _png(picture)


@route("/v1/resolve", "GET", tags=["v1"], summary="Where a target is: coordinates or a resolved name",
       description="`target`: coordinates (`132.5 -69.2`, `08:50:06 -69:12:00`) or an object name, resolved "
                   "by CDS Sesame when a mirror is reachable (503 when none is: give coordinates). Answers "
                   "`{target, ra, dec, resolver}`.")
def v1_resolve():
    try:
        return _json(200, resolve_target(tesscut.single(params(), "target") or "").as_dict())
    except (InputError, ResolverUnavailableError) as exc:
        return _error(exc, "message")


# -- the web page ---------------------------------------------------------------------------
def _asset(name: str) -> Response:
    return Response(status_code=200, content_type=webpage.ASSETS[name], body=webpage.asset(name),
                    headers=dict(webpage.HEADERS))


@route("/", "GET", include_in_schema=False)
@route("/web", "GET", include_in_schema=False)
def web_page():
    return _asset("index.html")


@route("/web/app.js", "GET", include_in_schema=False)
def web_script():
    return _asset("app.js")


@route("/web/style.css", "GET", include_in_schema=False)
def web_style():
    return _asset("style.css")


@route("/health", "GET", tags=["v1"], summary="Liveness")
def health():
    return _json(200, {"status": "ok"})


def error_body(path: str, text: str) -> dict:
    """``{"message"}`` under /v1 (cubecut's JSON API), ``{"msg"}`` elsewhere (TESScut, MAST)."""
    return {"message" if path.startswith("/v1/") else "msg": text}


def no_route(method: str, path: str) -> Response:
    """405 with ``Allow`` for a known path asked with another method, else 404 (JSON)."""
    allowed = ROUTE_METHODS.get(path)
    if allowed:
        return _json(405, error_body(path, f"{method} is not allowed on {path}"), {"Allow": ", ".join(sorted(allowed))})
    return _json(404, error_body(path, f"no route {method} {path}"))


def internal_error() -> Response:
    """What any unexpected failure answers: no stack trace, both keys clients read."""
    logger.exception("unhandled error")
    return _json(500, {"message": "internal error", "msg": "internal error"})
