"""The routes of the HTTP API as a powertools Router, included by the app (:mod:`.app`):
TESScut, the MAST calls lightkurve makes, cubecut's own /v1, and a web page. Each route
turns its validated parameters into a call of the library (:mod:`cubecut.tesscut`) with the
request's :class:`.settings.AppSettings` (given to :func:`.app.answer` by the handler), and
the answer into a response.

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
``POST /v1/bulk`` starts a bulk job (a catalog given as text) and ``GET /v1/bulk?job=``
reports it; ``GET /v1/quicklook`` → PNG of one cube's cutout; ``GET /v1/resolve`` → a target's position;
``GET /v1/cubes``; ``GET /health``. The web page is at ``/`` (and ``/web``), its script and
style sheet under ``/web/``. The OpenAPI schema is at ``/openapi.json`` (and
``/swagger?format=json``) and a Swagger page at ``/swagger``. A known path with another
method answers ``405`` with ``Allow``; an unknown path ``404``; both JSON.

Every route's parameters are one model of :mod:`.models` (validated there, injected with
powertools' ``Depends``), and its OpenAPI parameters, body and answers are generated from
the same model by :mod:`.openapi`. Failures are raised as named errors and answered by the
exception handlers at the end of this module (:func:`error_status` says which status),
never caught route by route.
"""
from __future__ import annotations

import base64
import binascii
import json
from typing import Annotated, Callable

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.depends import Depends
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter
from aws_lambda_powertools.metrics import MetricUnit

from cubecut.errors import HostUnreachableError, InputError, ObjectNotFoundError
from cubecut.storage import presigned_url
from cubecut.tesscut import mast, moving, quicklook, v1
from cubecut.tesscut.names import ResolverUnavailableError, UnknownTargetError, resolve_target
from cubecut.tesscut.protocol import API_PREFIX
from cubecut.tesscut.service import RETRY_AFTER_S, CutoutService, Delivery, ServiceBusyError

from . import openapi as doc
from . import webpage
from .forms import BodyTooLargeError, MalformedParamsError, UnsupportedBodyError, collect_params
from .callers import caller
from .jobs import BulkBusyError, BulkForbiddenError, BulkUnavailableError, JobEngine
from .models import (MAX_BULK_SIDE, BulkParams, BulkStatusParams, ColumnsConfigParams, CutoutParams, FfiWcsParams, MashupParams,
                     MovingParams, QuicklookParams, ResolveParams, ResolverParams, RouteParams, SectorParams,
                     V1CutoutParams, V1QuicklookParams)
from .settings import AppSettings, cutout_service

logger = Logger()  # same service name: the same logger as the handler module's
metrics = Metrics(namespace="cubecut")
# Routes return powertools Response objects; they carry no return annotation because the
# OpenAPI validation middleware would try to build a pydantic schema for Response.
router = APIGatewayHttpRouter()
TESSCUT = API_PREFIX
#: Keys of powertools' routing context that :func:`.app.answer` sets for each request.
SETTINGS, JOBS = "cubecut_settings", "cubecut_jobs"
#: Methods of every path routed here (the app adds its own paths in its table), to tell 405 from 404.
ROUTE_METHODS: dict[str, set[str]] = {}


def route(path: str, *methods: str, **kwargs) -> Callable:
    """``router.route`` that also records the path's methods in ROUTE_METHODS."""
    ROUTE_METHODS.setdefault(path, set()).update(methods)
    return router.route(path, method=list(methods), **kwargs)


def params_route(path: str, model: type[RouteParams], *methods: str, answers: dict, **kwargs) -> Callable:
    """``route`` for each method, its OpenAPI parameters or body generated from ``model``
    (a query string for GET, a form or JSON body for POST) and its ``answers``."""
    def register(function: Callable) -> Callable:
        for method in methods:
            body = method != "GET"
            route(path, method, openapi_extensions=doc.request_doc(model, body=body),
                  responses=doc.responses(answers, body=body), **kwargs)(function)
        return function
    return register


def settings() -> AppSettings:
    """The settings of the request being answered: :func:`.app.answer` puts them in
    powertools' routing context, which the resolver clears after every request. One dict
    per app is enough: a process answers one event at a time (a Lambda environment; the
    local stack's gateway, ``one_at_a_time``), and the resolver's current event is one per
    app too."""
    return router.context[SETTINGS]


def engine() -> JobEngine:
    """The bulk engine of the request being answered (the routing context, as
    :func:`settings`); BulkUnavailableError if there is none."""
    jobs = router.context.get(JOBS)
    if jobs is None:
        raise BulkUnavailableError("bulk jobs are not available on this server (no bulk state machine is "
                                   "configured); run `cubecut bulk` instead")
    return jobs


def service() -> CutoutService:
    """The cutout service of the current request's settings."""
    return cutout_service(settings())


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


def _validated(model: type[RouteParams]) -> Depends:
    """A ``Depends`` that hands the route this request's parameters validated by ``model``."""
    def dependency() -> RouteParams:
        return model.parse(params())
    return Depends(dependency)


def _json(status: int, payload: dict, headers: dict | None = None) -> Response:
    return Response(status_code=status, content_type="application/json", body=json.dumps(payload),
                    headers=headers or {})


def _png(picture: quicklook.Quicklook) -> Response:
    return Response(status_code=200, content_type="image/png", body=picture.png,
                    headers={"X-Cubecut-Cache": "hit" if picture.cached else "miss",
                             "Content-Disposition": 'inline; filename="quicklook.png"'})


# -- TESScut ------------------------------------------------------------------------------
@params_route(f"{TESSCUT}/sector", SectorParams, "GET", "POST", answers=doc.SECTOR_ANSWERS, tags=["TESScut"],
              summary="Cubes that contain a position",
              description="Answers `{\"results\": [{sectorName, sector, camera, ccd}]}`.")
def tesscut_sector(query: Annotated[SectorParams, _validated(SectorParams)]):
    return _json(200, service().sectors(query.request()))


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
    headers["Location"] = presigned_url(delivery.url, settings().presign_expiry, "astrocut.zip")
    return Response(status_code=303, headers=headers, body="")


@params_route(f"{TESSCUT}/astrocut", CutoutParams, "GET", "POST", answers=doc.ZIP_ANSWERS, tags=["TESScut"],
              summary="Cutouts as a zip of TPFs",
              description="One TPF per covering cube: 200 zip, 303 to a presigned URL when larger than 4 MiB, "
                          "200 `{msg}` when no cube covers the position.")
def tesscut_astrocut(query: Annotated[CutoutParams, _validated(CutoutParams)]):
    return _zip_answer(service().astrocut(query.request()), "astrocut")


@params_route(f"{TESSCUT}/moving_target/sector", MovingParams, "GET", "POST", answers=doc.SECTOR_ANSWERS,
              tags=["TESScut"], summary="Cubes a moving target's path crosses",
              description="Answers `{\"results\": [{sectorName, sector, camera, ccd}]}`, one entry per cube "
                          "crossed. `obj_id` alone is answered 400: JPL Horizons is not reachable, send `ephemeris`.")
def tesscut_moving_sector(query: Annotated[MovingParams, _validated(MovingParams)]):
    return _json(200, moving.moving_sectors(service().catalog, query.request()))


@params_route(f"{TESSCUT}/moving_target/astrocut", MovingParams, "GET", "POST", answers=doc.ZIP_ANSWERS,
              tags=["TESScut"], summary="Cutouts that follow a moving target, as a zip of TPFs",
              description="One TPF per sector crossed, members `{sectorName}_{obj_id}_{nx}x{ny}_astrocut.fits`; "
                          "200 zip or 303, 200 `{msg}` when the path crosses no cube.")
def tesscut_moving_astrocut(query: Annotated[MovingParams, _validated(MovingParams)]):
    return _zip_answer(moving.moving_astrocut(service(), query.request()), "moving_astrocut")


@params_route(f"{TESSCUT}/quicklook", QuicklookParams, "GET", answers=doc.PNG_ANSWERS, tags=["TESScut"],
              summary="Quick-look PNG of an astrocut request",
              description="Per matching cube (in sector order) a frame with the aperture and the aperture light "
                          "curve, one PNG. The zip is cached as `astrocut`'s, so downloading it afterwards reads "
                          "no cube. 200 `{msg}` when no cube covers the position.")
def tesscut_quicklook(query: Annotated[QuicklookParams, _validated(QuicklookParams)]):
    picture = quicklook.quicklook(service(), query.request(), query.options())
    return _json(200, {"msg": picture.message}) if picture.message else _png(picture)


@params_route(f"{TESSCUT}/ffi_wcs", FfiWcsParams, "GET", answers=doc.FITS_ANSWERS, tags=["TESScut"],
              summary="The FFI WCS of one cube (FITS header)",
              description="A FITS file with a data-less primary HDU; 404 `{msg}` if that cube is not ingested.")
def tesscut_ffi_wcs(query: Annotated[FfiWcsParams, _validated(FfiWcsParams)]):
    body = v1.ffi_wcs(service().catalog, query.sector, query.camera, query.ccd, query.product)
    return Response(status_code=200, content_type="application/fits", body=body)


@route(f"{TESSCUT}/cubes", "GET", tags=["TESScut"], summary="Ingested cubes (sector, camera, CCD, frames, times)",
       responses=doc.responses(doc.CUBES_ANSWERS, body=False))
@route("/v1/cubes", "GET", tags=["v1"], summary="Ingested cubes (sector, camera, CCD, frames, times)",
       responses=doc.responses(doc.CUBES_ANSWERS, body=False))
def cubes():
    return _json(200, {"cubes": v1.describe_cubes(service().catalog)})


# -- the MAST portal calls of lightkurve.search_tesscut -----------------------------------
@params_route("/api/v0/invoke", MashupParams, "POST", answers=doc.JSON_ANSWERS, tags=["MAST"],
              summary="Mashup request (Mast.Caom.* and Mast.Name.Lookup)",
              description="Every ingested cube is one CAOM observation (`target_name` 'TESS FFI', `obs_id` its "
                          "sector name).")
def mast_invoke(query: Annotated[MashupParams, _validated(MashupParams)]):
    return _json(200, mast.invoke(service().catalog, query.request))


@params_route("/portal/Mashup/Mashup.asmx/columnsconfig", ColumnsConfigParams, "POST", answers=doc.JSON_ANSWERS,
              tags=["MAST"], summary="CAOM column types")
def mast_columns_config(query: Annotated[ColumnsConfigParams, _validated(ColumnsConfigParams)]):
    return _json(200, mast.columns_config(query.col_config_id))


@params_route("/Santa-war/query", ResolverParams, "GET", answers=doc.JSON_ANSWERS, tags=["MAST"],
              summary="Name resolver (coordinates only)",
              description="Resolves positions written as names ('132.5, -69.2'); cubecut has no object catalogue.")
def mast_resolver(query: Annotated[ResolverParams, _validated(ResolverParams)]):
    return _json(200, mast.resolve_names(query.name))


# -- cubecut's own ------------------------------------------------------------------------
@params_route("/v1/cutouts", V1CutoutParams, "POST", answers=doc.V1_CUTOUT_ANSWERS, tags=["v1"],
              summary="One TPF from one cube, as a presigned URL",
              description="A JSON object or a form: the cube (`cube`, or `sector`+`camera`+`ccd`), `ra`, `dec`, "
                          "`size`, `units`. Within the same pixel-frame budget as `astrocut`.")
def cutouts(query: Annotated[V1CutoutParams, _validated(V1CutoutParams)]):
    answer = v1.make_cutout(service(), query.selector(), query.ra, query.dec, query.extents(),
                            settings().presign_expiry)
    # ("name" is a LogRecord attribute: logging refuses it as an extra key.)
    logger.info("cutout", extra={"tpf": answer["name"], "bytes": answer["bytes"], "reads": answer["reads"]})
    return _json(200, answer)


@params_route("/v1/quicklook", V1QuicklookParams, "GET", answers=doc.V1_PNG_ANSWERS, tags=["v1"],
              summary="Quick-look PNG of one cube's cutout")
def v1_quicklook(query: Annotated[V1QuicklookParams, _validated(V1QuicklookParams)]):
    request, entry = v1.quicklook_request(service().catalog, query.cube, query.coord(), query.pixels())
    picture = quicklook.quicklook(service(), request, query.options(), [entry])
    return _json(400, {"message": picture.message}) if picture.message else _png(picture)


@params_route("/v1/resolve", ResolveParams, "GET", answers=doc.RESOLVE_ANSWERS, tags=["v1"],
              summary="Where a target is: coordinates or a resolved name",
              description="Answers `{target, ra, dec, resolver}`; 503 when a name needs a resolver and none is "
                          "reachable (give coordinates).")
def v1_resolve(query: Annotated[ResolveParams, _validated(ResolveParams)]):
    return _json(200, resolve_target(query.target, settings().sesame_urls).as_dict())


@params_route("/v1/bulk", BulkParams, "POST", answers=doc.BULK_START_ANSWERS, tags=["v1"],
              summary="Start a bulk job: a TPF for every target of a catalog",
              description="A JSON object or a form: `catalog` (CSV/ECSV text), optional `cubes` and `size`. The "
                          "catalog is checked first (400 with the numbers above the target cap); the job then runs on "
                          "the bulk state machine, writing under this service's results. 202 with the job's id.")
def bulk_start(query: Annotated[BulkParams, _validated(BulkParams)]):
    from cubecut.bulk.plan import Limits
    from cubecut.bulk.submit import (JobStatus, check_budget, check_catalog, job_out, new_capability, new_job_id,
                                     stage_job)

    jobs, config = engine(), settings()
    who = caller(router.current_event.raw_event)
    if who is None and not config.bulk_anonymous:
        raise BulkForbiddenError("starting a bulk job needs an authenticated caller (a SigV4-signed IAM principal "
                                 "or a JWT, the API's RequireAuth iam or jwt); this deployment does not run bulk "
                                 "jobs for anonymous callers")
    _check_in_flight(jobs, who, config)
    size = query.pixels()
    limits = Limits(max_targets=config.bulk_max_targets, max_pixel_frames=config.bulk_max_pixel_frames,
                    max_side=MAX_BULK_SIDE, max_cutout_pixel_frames=config.bulk_cutout_pixel_frames)
    catalog = check_catalog(query.catalog, size, limits)
    entries = ([v1.find_cube(service().catalog, {"cube": name}) for name in query.cubes]
               or service().catalog.entries())
    check_budget(catalog, max((e.index.nt for e in entries), default=0), limits)
    cubes = [e.url for e in entries] if query.cubes else []
    job = new_job_id()
    token, digest = new_capability()
    jobs.start(job, stage_job(job_out(config.results_root, job), query.catalog, size, cubes, query.shards, limits,
                              owner=who, capability=digest))
    logger.info("bulk job started", extra={"job": job, "targets": len(catalog.targets), "cubes": len(cubes),
                                           "owner": who})
    return _json(202, {**JobStatus(job, "RUNNING", done=0, total=None).as_dict(),
                       "status_url": f"/v1/bulk?job={job}&token={token}", "token": token,
                       "targets": len(catalog.targets), "malformed": len(catalog.problems)})


def _check_in_flight(jobs: JobEngine, who: str | None, config: AppSettings) -> None:
    """BulkBusyError if ``config.bulk_max_in_flight`` jobs run already, or
    ``config.bulk_max_per_caller`` of caller ``who``'s (when the caller is known)."""
    running = jobs.running()
    if len(running) >= config.bulk_max_in_flight:
        raise BulkBusyError(f"{len(running)} bulk jobs are running, the most this service runs at once is "
                            f"{config.bulk_max_in_flight}: try again later")
    if who is not None:
        mine = sum(1 for job in running if json.loads((jobs.describe(job) or {}).get("input") or "{}").get("owner") == who)
        if mine >= config.bulk_max_per_caller:
            raise BulkBusyError(f"{mine} of your bulk jobs are running, the most one caller may run at once is "
                                f"{config.bulk_max_per_caller}: wait for one to finish")


@params_route("/v1/bulk", BulkStatusParams, "GET", answers=doc.BULK_STATUS_ANSWERS, tags=["v1"],
              summary="How far a bulk job got, and its results manifest")
def bulk_status(query: Annotated[BulkStatusParams, _validated(BulkStatusParams)]):
    from cubecut.bulk.submit import job_out, job_status, may_read

    execution = engine().describe(query.job)
    request = json.loads((execution or {}).get("input") or "{}")
    if execution is None or not may_read(request, caller(router.current_event.raw_event), query.token):
        # the same answer for a job that is not there and one that is not the caller's
        raise ObjectNotFoundError(f"no bulk job {query.job} of yours: give its token, as POST /v1/bulk answered")
    config = settings()
    status = job_status(job_out(config.results_root, query.job), query.job, execution)
    answer = status.as_dict()
    if status.results:
        # The pages' URLs carry the capability the caller showed, so they open for whoever follows them.
        follow = f"/v1/bulk?job={query.job}" + (f"&token={query.token}" if query.token else "")
        answer["results"] = presigned_url(status.results, config.presign_expiry, "results.csv")
        answer["files_url"] = f"{follow}&files=0"
        if query.files is not None:
            answer.update(_bulk_files(status.results, follow, query.files, config.presign_expiry))
    return _json(200, answer)


def _bulk_files(results: str, follow: str, offset: int, expiry: int) -> dict:
    """A page of a finished job's files as presigned HTTPS URLs (``files``), and the next
    page's URL (``next_files``, ``follow`` with its offset) if there is one."""
    from cubecut.bulk.submit import result_files

    rows, following = result_files(results, offset)
    files = [{"row": r["row"], "id": r["id"], "status": r["status"], "member": r["member"],
              "url": presigned_url(r["key"], expiry, r["key"].rsplit("/", 1)[-1])} for r in rows]
    answer: dict = {"files": files}
    if following is not None:
        answer["next_files"] = f"{follow}&files={following}"
    return answer


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


@route("/health", "GET", tags=["v1"], summary="Liveness", responses=doc.responses(doc.HEALTH_ANSWERS, body=False))
def health():
    return _json(200, {"status": "ok"})


# -- answers that are not a route's own ------------------------------------------------------
def error_body(path: str, text: str) -> dict:
    """``{"message"}`` under /v1 (cubecut's JSON API), ``{"msg"}`` elsewhere (TESScut, MAST)."""
    return {"message" if path.startswith("/v1/") else "msg": text}


#: The status of each named error that is not bad input (400), in order: busy, no name
#: resolver reachable or no bulk jobs here; an anonymous bulk job where those are closed;
#: too many bulk jobs running; a body over the limit; an unreadable body; unknown cubes
#: and names.
ERROR_STATUSES: tuple[tuple[type[Exception] | tuple[type[Exception], ...], int], ...] = (
    ((ServiceBusyError, ResolverUnavailableError, BulkUnavailableError), 503), (BulkForbiddenError, 403),
    (BulkBusyError, 429), (BodyTooLargeError, 413), (UnsupportedBodyError, 415),
    ((ObjectNotFoundError, UnknownTargetError), 404))


def error_status(exc: Exception) -> int:
    """The status of a named error: the first of :data:`ERROR_STATUSES` it is, else 400."""
    return next((status for kinds, status in ERROR_STATUSES if isinstance(exc, kinds)), 400)


@router.exception_handler([InputError, ServiceBusyError, ResolverUnavailableError, BulkUnavailableError,
                           BulkForbiddenError, BulkBusyError])
def named_error(exc: Exception) -> Response:
    """Every named error a request can cause, as ``{msg}``/``{message}`` JSON with its status."""
    headers = {"Retry-After": str(RETRY_AFTER_S)} if isinstance(exc, (ServiceBusyError, BulkBusyError)) else {}
    return _json(error_status(exc), error_body(router.current_event.path, str(exc)), headers)


#: What a caller is told when S3 does not answer: not the endpoint or its error (internal
#: detail), only that the store is unavailable for now.
STORAGE_UNREACHABLE = "the cube store is not answering; try again later"


@router.exception_handler(HostUnreachableError)
def storage_unreachable(exc: HostUnreachableError) -> Response:
    """S3 did not answer within the API's deadlines: 503 with ``Retry-After``, logged."""
    logger.warning("storage unreachable: %s", exc)
    return _json(503, error_body(router.current_event.path, STORAGE_UNREACHABLE), {"Retry-After": str(RETRY_AFTER_S)})


def no_route(route_methods: dict[str, set[str]], method: str, path: str) -> Response:
    """405 with ``Allow`` for a path of ``route_methods`` (path: its methods) asked with
    another method, else 404 (JSON)."""
    allowed = route_methods.get(path)
    if allowed:
        return _json(405, error_body(path, f"{method} is not allowed on {path}"), {"Allow": ", ".join(sorted(allowed))})
    return _json(404, error_body(path, f"no route {method} {path}"))


def internal_error() -> Response:
    """What any unexpected failure answers: no stack trace, both keys clients read."""
    logger.exception("unhandled error")
    return _json(500, {"message": "internal error", "msg": "internal error"})
