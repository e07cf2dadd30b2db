"""The API application: a powertools ``APIGatewayHttpResolver`` with the routes of
:mod:`.routes`, OpenAPI/Swagger, and the 404/405 and 500 answers.

The app owns its route table (:data:`ROUTE_METHODS`: every path it serves, with its
methods). The handler (``functions/api.py``) answers each event with :func:`answer`,
giving it the settings it built.
"""
from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from cubecut import __version__
from cubecut.storage import INTERACTIVE, using_deadlines

from . import openapi as doc
from . import routes
from .jobs import JobEngine
from .forms import bounded_json_body
from .settings import AppSettings

TITLE, DESCRIPTION = "cubecut", "TESS FFI cutouts, TESScut-compatible"
SWAGGER, OPENAPI = "/swagger", "/openapi.json"
app = APIGatewayHttpResolver(enable_validation=True, json_body_deserializer=bounded_json_body)
app.enable_swagger(path=SWAGGER, title=TITLE, description=DESCRIPTION, version=__version__)
app.include_router(routes.router)
#: Methods of every path the app serves, to tell 405 from 404.
ROUTE_METHODS: dict[str, set[str]] = {**routes.ROUTE_METHODS, SWAGGER: {"GET"}, OPENAPI: {"GET"}}


def openapi_document() -> dict:
    """The OpenAPI document, as served."""
    return doc.truthful(json.loads(app.get_openapi_json_schema(title=TITLE, description=DESCRIPTION,
                                                               version=__version__)))


@app.get(OPENAPI, include_in_schema=False)
def openapi():
    return Response(status_code=200, content_type="application/json", body=json.dumps(openapi_document()))


@app.not_found
def not_found(_exc: Exception) -> Response:
    return routes.no_route(ROUTE_METHODS, app.current_event.http_method, app.current_event.path)


@app.exception_handler(Exception)
def internal_error(_exc: Exception) -> Response:
    return routes.internal_error()


def answer(event: dict, context: Any, settings: AppSettings, jobs: JobEngine | None = None) -> dict:
    """The API Gateway (payload v2) answer to ``event`` under ``settings``; bulk jobs run on
    ``jobs`` (None: the bulk routes answer 503). Its S3 calls run under
    :data:`cubecut.storage.INTERACTIVE` deadlines: an unreachable S3 is a named error well
    inside the API's 29 s, not a retry loop past it."""
    with using_deadlines(INTERACTIVE):
        app.append_context(**{routes.SETTINGS: settings, routes.JOBS: jobs})  # cleared by resolve
        return app.resolve(event, context)
