"""The OpenAPI description of each route, generated from its model (:mod:`.models`) and the
answers it gives: query parameters for GET, a form or JSON body for POST, and every status
the route returns with its media type.

powertools builds the document from what the routes declare here (``openapi_extensions``
for parameters and bodies, ``responses`` for answers). Its generic ``422`` (the answer of
its own validation) is never sent by this API, whose validation failures are 400s, so
:func:`truthful` drops it from the finished document.
"""
from __future__ import annotations

import copy
from typing import Any

from .forms import MAX_FIELDS
from .models import RouteParams

FORM = "application/x-www-form-urlencoded"
JSON = "application/json"
_MSG = {"type": "object", "required": ["msg"], "properties": {"msg": {"type": "string"}}}
_MESSAGE = {"type": "object", "required": ["message"], "properties": {"message": {"type": "string"}}}
_SECTORS = {"type": "object", "required": ["results"], "properties": {"results": {"type": "array", "items": {
    "type": "object", "required": ["sectorName", "sector", "camera", "ccd"],
    "properties": {k: {"type": "string"} for k in ("sectorName", "sector", "camera", "ccd")}}}}}
_BINARY = {"type": "string", "format": "binary"}
_RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait", "schema": {"type": "integer"}}}
_CACHE_HEADERS = {name: {"description": text, "schema": {"type": "string"}} for name, text in (
    ("X-Cubecut-Cache", "hit or miss of the result cache"),
    ("X-Cubecut-Reads", "read requests made on cubes and sidecars"),
    ("X-Cubecut-Bytes-Read", "bytes read from cubes and sidecars"))}


def _answer(description: str, media: str | None = None, schema: dict | None = None, headers: dict | None = None,
            *, or_json: dict | None = None) -> dict[str, Any]:
    """An answer's description, content (``media`` with ``schema``, or a JSON ``or_json``) and headers."""
    answer: dict[str, Any] = {"description": description}
    if media:
        answer["content"] = {media: {"schema": schema or {}}}
    if or_json:
        answer["content"][JSON] = {"schema": or_json}
    if headers:
        answer["headers"] = headers
    return answer


def _errors(key_schema: dict, *statuses: int) -> dict[int, dict]:
    text = {400: "Bad input: the message names the parameter",
            403: "Bulk jobs need an authenticated caller (IAM or JWT) here",
            404: "No such cube, or no such job of yours, or a name no resolver knows",
            429: "Too many bulk jobs running, in all or of this caller (Retry-After)",
            503: "Busy (Retry-After), no name resolver is reachable, or no bulk jobs here"}
    return {status: _answer(text[status], JSON, key_schema, _RETRY_AFTER if status in (429, 503) else None)
            for status in statuses}


SECTOR_ANSWERS = {200: _answer("The cubes", JSON, _SECTORS), **_errors(_MSG, 400)}
ZIP_ANSWERS = {
    200: _answer("The zip of TPFs; or `{msg}` JSON when no cube covers the position", "application/zip", _BINARY,
                 _CACHE_HEADERS, or_json=_MSG),
    303: _answer("The zip is over 4 MiB: `Location` is a presigned URL of it", headers={
        "Location": {"description": "presigned S3 URL", "schema": {"type": "string"}}, **_CACHE_HEADERS}),
    **_errors(_MSG, 400, 503)}
PNG_ANSWERS = {200: _answer("The picture; or `{msg}` JSON when no cube covers the position", "image/png", _BINARY,
                            or_json=_MSG), **_errors(_MSG, 400, 503)}
FITS_ANSWERS = {200: _answer("FITS file: a data-less primary HDU holding the WCS", "application/fits", _BINARY),
                **_errors(_MSG, 400, 404)}
JSON_ANSWERS = {200: _answer("The answer", JSON, {"type": "object"}), **_errors(_MSG, 400)}
CUBES_ANSWERS = {200: _answer("The ingested cubes", JSON, {"type": "object", "required": ["cubes"], "properties": {
    "cubes": {"type": "array", "items": {"type": "object"}}}})}
HEALTH_ANSWERS = {200: _answer("Alive", JSON, {"type": "object", "properties": {"status": {"const": "ok"}}})}
V1_CUTOUT_ANSWERS = {200: _answer("The TPF's presigned URL and what it holds", JSON, {
    "type": "object", "required": ["url", "name", "bytes", "expires_in", "cube", "shape"], "properties": {
        "url": {"type": "string"}, "name": {"type": "string"}, "bytes": {"type": "integer"},
        "expires_in": {"type": "integer"}, "cube": {"type": "string"},
        "shape": {"type": "array", "items": {"type": "integer"}}, "reads": {"type": "object"}}}),
    **_errors(_MESSAGE, 400, 404, 503)}
V1_PNG_ANSWERS = {200: _answer("The picture", "image/png", _BINARY), **_errors(_MESSAGE, 400, 404, 503)}
RESOLVE_ANSWERS = {200: _answer("Where the target is", JSON, {
    "type": "object", "required": ["target", "ra", "dec", "resolver"], "properties": {
        "target": {"type": "string"}, "ra": {"type": "number"}, "dec": {"type": "number"},
        "resolver": {"type": "string"}}}), **_errors(_MESSAGE, 400, 404, 503)}
_BULK_JOB = {"type": "object", "required": ["job", "status", "done", "total"], "properties": {
    "job": {"type": "string"}, "status": {"type": "string"}, "done": {"type": "integer"},
    "total": {"type": ["integer", "null"]}, "status_url": {"type": "string"}, "results": {"type": "string"},
    "targets": {"type": "integer"}, "malformed": {"type": "integer"}, "summary": {"type": "object"},
    "error": {"type": "string"}, "token": {"type": "string"}, "files_url": {"type": "string"},
    "next_files": {"type": "string"},
    "files": {"type": "array", "items": {"type": "object", "properties": {
        "row": {"type": "string"}, "id": {"type": "string"}, "status": {"type": "string"},
        "member": {"type": "string"}, "url": {"type": "string"}}}}}}
BULK_START_ANSWERS = {202: _answer("The job started: its id, its capability `token` and where to follow it",
                                   JSON, _BULK_JOB), **_errors(_MESSAGE, 400, 403, 404, 429, 503)}
BULK_STATUS_ANSWERS = {200: _answer("How far the job got; `results` is a presigned URL of its results.csv "
                                    "once it succeeded, and with `files` its files as presigned URLs",
                                    JSON, _BULK_JOB), **_errors(_MESSAGE, 400, 404, 503)}


def _inline(schema: dict) -> dict:
    """A model's JSON schema with its ``$defs`` references replaced by the definitions."""
    definitions = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return resolve(copy.deepcopy(definitions[node["$ref"].rsplit("/", 1)[-1]]))
            options = [o for o in node.get("anyOf", []) if o != {"type": "null"}]
            if len(options) == 1 and len(node["anyOf"]) == 2:  # optional: absent, never null
                node = {**{k: v for k, v in node.items() if k != "anyOf"}, **options[0]}
                if node.get("default", 0) is None:
                    node.pop("default")
            return {k: resolve(v) for k, v in node.items() if k != "title"}
        if isinstance(node, list):
            return [resolve(v) for v in node]
        return node

    return resolve(schema)


#: A number written as JSON text (how query strings and forms carry numbers).
_NUMBER_TEXT = {"type": "string", "pattern": r"^\s*[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?\s*$"}


#: Keys a route does not read are ignored, but must still be simple values.
_SCALAR = {"anyOf": [{"type": "string"}, {"type": "number"}]}
_OTHER_JSON_PARAMETER = {"anyOf": [{"type": "string"}, {"type": "number"}, {"type": "array", "items": _SCALAR}]}


def _as_json(prop: dict) -> dict:
    """A parameter's schema as a JSON body may write it. JSON scalars are read as the text
    of a form field (:func:`.forms.collect_params`), so a number may also come as a string
    of digits and free text as a number; a list takes the same items; ``ephemeris`` may
    be written out as a JSON value."""
    kind = prop.get("type")
    if kind in ("number", "integer"):
        return {"anyOf": [prop, _NUMBER_TEXT]}
    if kind == "string" and "enum" not in prop and "const" not in prop:
        return {"anyOf": [prop, {"type": "number"}]}
    if kind == "array":
        return {**prop, "items": _as_json(prop["items"])}
    return prop


#: A blank value, which query strings and forms may send for an optional parameter (read
#: as absent).
_BLANK = {"type": "string", "maxLength": 0}


def _blankable(prop: dict) -> dict:
    if prop.get("type") == "array":
        return prop
    return {"anyOf": [prop, _BLANK], **({"description": prop["description"]} if "description" in prop else {})}


def _required(model: type[RouteParams], schema: dict) -> list[str]:
    return [key for key, prop in schema["properties"].items()
            if key in schema.get("required", []) or prop.get("x-required")]


def request_doc(model: type[RouteParams], *, body: bool) -> dict[str, Any]:
    """``parameters`` (query string) or ``requestBody`` (form or JSON object) of ``model``."""
    schema = _inline(model.model_json_schema(by_alias=True))
    required = _required(model, schema)
    base = {key: {k: v for k, v in prop.items() if k != "x-required"} for key, prop in schema["properties"].items()}

    def properties(transform: Any) -> dict[str, dict]:
        return {key: transform(prop) if key in required else _blankable(transform(prop)) for key, prop in base.items()}

    if body:
        wanted = {"required": required} if required else {}
        form = {"type": "object", "properties": properties(lambda p: p), **wanted}
        json_properties = properties(_as_json)
        if "ephemeris" in base:
            json_properties["ephemeris"] = {"anyOf": [base["ephemeris"], {"type": "object"}, {"type": "array"}],
                                            "description": base["ephemeris"].get("description", "")}
        document = {"type": "object", "properties": json_properties,
                    "additionalProperties": _OTHER_JSON_PARAMETER, "maxProperties": MAX_FIELDS, **wanted}
        content = {FORM: {"schema": form}, JSON: {"schema": document}}
        return {"requestBody": {"required": bool(required), "content": content}}
    parameters = []
    for key, prop in properties(lambda p: p).items():
        description = prop.pop("description", "")
        parameters.append({"name": key, "in": "query", "required": key in required, "description": description,
                           "schema": prop})
    return {"parameters": parameters}


def responses(answers: dict[int, dict], *, body: bool) -> dict[int, dict]:
    """A route's answers, plus what every request with a body may get (413, 415)."""
    result = copy.deepcopy(answers)
    if body:
        error_schema = answers.get(400, {}).get("content", {}).get(JSON, {}).get("schema", _MSG)
        schema = _MESSAGE if "message" in error_schema["properties"] else _MSG
        result[413] = _answer("The body is larger than the API reads", JSON, schema)
        result[415] = _answer("The body is neither a form nor a JSON object of simple values", JSON, schema)
    return result


def truthful(document: dict[str, Any]) -> dict[str, Any]:
    """The generated document without powertools' 422 answers and their (unreferenced) schemas."""
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            if isinstance(operation, dict):
                operation.get("responses", {}).pop("422", None)
    schemas = document.get("components", {}).get("schemas", {})
    for name in ("HTTPValidationError", "ValidationError", "ResponseValidationError"):
        schemas.pop(name, None)
    if not schemas:
        document.get("components", {}).pop("schemas", None)
    if not document.get("components", True):
        document.pop("components")
    return document
