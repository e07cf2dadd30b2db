"""Request parameters from a query string and a body, the way TESScut's clients send them.

``astroquery`` POSTs ``application/x-www-form-urlencoded`` forms and GETs query strings,
``requests`` users do either, and some send JSON objects. Keys may repeat (``sector=1&
sector=2``), so every key maps to a list of strings. Anything else in a body is refused
with a named error, never decoded by guesswork.

Every JSON document a request carries is read by :func:`cubecut.tesscut.jsontext.load_json`,
bounded before it is parsed (nesting depth, digits of a number, no NaN/Infinity), and a body
is at most :data:`MAX_BODY_BYTES`.

A few parameters hold a JSON document themselves (:data:`JSON_VALUED`, e.g. a moving
target's ``ephemeris``): in a query string or form they are JSON text; in a JSON body they
may be written as JSON values, and are kept as their JSON text for the parser to read.
"""
from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs

from cubecut.errors import InputError
from cubecut.tesscut.jsontext import load_json

#: Most parameters one request may carry (query string and body together).
MAX_FIELDS = 200
FORM = "application/x-www-form-urlencoded"
JSON = "application/json"
#: Parameters whose value is a JSON document (kept as JSON text when a JSON body nests them).
JSON_VALUED = frozenset({"ephemeris"})
#: Largest request body read (bytes): an ephemeris of MAX_EPHEMERIS_CHARS (4 M) with room
#: for the other parameters; API Gateway itself stops at 10 MB and Lambda at 6 MB.
MAX_BODY_BYTES = 5 * 1024 * 1024


class UnsupportedBodyError(InputError):
    """The body is neither a form nor a JSON object of simple values (answered 415)."""


class MalformedParamsError(InputError):
    """The query string or body cannot be decoded (not UTF-8, too many fields, JSON out of
    bounds)."""


class BodyTooLargeError(MalformedParamsError):
    """The body is longer than MAX_BODY_BYTES (answered 413)."""


def _parse_qs(text: str) -> dict[str, list[str]]:
    try:
        return parse_qs(text, keep_blank_values=True, max_num_fields=MAX_FIELDS, errors="strict")
    except UnicodeDecodeError:
        raise MalformedParamsError("parameters must be UTF-8 text") from None
    except ValueError as exc:  # more than MAX_FIELDS fields
        raise MalformedParamsError(f"too many parameters: {exc}") from None


def _text(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedParamsError("the body must be UTF-8 text") from None


def bounded_json_body(text: str) -> Any:
    """The app's JSON body deserializer (powertools ``json_body_deserializer``)."""
    return load_json(text, "the body", MalformedParamsError)


def _json_params(body: bytes) -> dict[str, list[str]]:
    document = load_json(_text(body), "the body", MalformedParamsError)
    if not isinstance(document, dict) or len(document) > MAX_FIELDS:
        raise UnsupportedBodyError("a JSON body must be an object of parameters")
    merged: dict[str, list[str]] = {}
    for key, value in document.items():
        if key in JSON_VALUED and isinstance(value, (dict, list)):
            merged[key] = [json.dumps(value)]
            continue
        values = value if isinstance(value, list) else [value]
        if not all(isinstance(v, (str, int, float)) and not isinstance(v, bool) for v in values):
            raise UnsupportedBodyError(f"JSON parameter {key!r} must be a string, a number or a list of them")
        merged[key] = [str(v) for v in values]
    return merged


def collect_params(query: str, body: bytes, content_type: str | None) -> dict[str, list[str]]:
    """Query string and body parameters merged (query first), repeated keys kept in order.

    Raises:
        MalformedParamsError: undecodable text or too many fields.
        UnsupportedBodyError: a non-empty body that is neither a form nor a JSON object.
    """
    merged = _parse_qs(query or "")
    if len(body) > MAX_BODY_BYTES:
        raise BodyTooLargeError(f"the body is {len(body):,} bytes; at most {MAX_BODY_BYTES:,} are read")
    if not body:
        return merged
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media == FORM:
        extra = _parse_qs(_text(body))
    elif media == JSON or media.endswith("+json"):
        extra = _json_params(body)
    else:
        raise UnsupportedBodyError(f"send parameters as a query string, a {FORM} form or a JSON object, "
                                   f"not {media or 'an untyped body'}")
    for key, values in extra.items():
        merged.setdefault(key, []).extend(values)
    if sum(len(v) for v in merged.values()) > MAX_FIELDS:
        raise MalformedParamsError(f"too many parameters (at most {MAX_FIELDS})")
    return merged
