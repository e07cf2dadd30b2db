"""JSON documents from untrusted text, bounded before they are parsed.

Every JSON document a request carries (a body, a Mashup ``request``, a moving target's
``ephemeris``) is read by :func:`load_json`: at most :data:`MAX_JSON_DEPTH` deep, numbers
of at most :data:`MAX_NUMBER_DIGITS` digits, no NaN/Infinity.
"""
from __future__ import annotations

import json
import re
from typing import Any, NoReturn

#: Deepest nesting of arrays/objects in any JSON document a request carries (an ephemeris
#: in rows is 2 deep, a Mashup request 4).
MAX_JSON_DEPTH = 32
#: Most digits in one JSON number (a float64 needs 17 significant digits).
MAX_NUMBER_DIGITS = 64
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_LONG_NUMBER = re.compile(r"\d{%d,}" % (MAX_NUMBER_DIGITS + 1))


def json_depth(text: str) -> int:
    """Deepest array/object nesting of JSON ``text`` (brackets inside strings ignored); one
    pass of two C-level regular expressions and a loop over the brackets alone."""
    depth = deepest = 0
    for bracket in _NOT_BRACKET.sub("", _JSON_STRING.sub("", text)):
        depth += 1 if bracket in "[{" else -1
        deepest = max(deepest, depth)
    return deepest


def _no_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not a JSON number (numbers must be finite)")


def load_json(text: str, what: str, error: type[Exception]) -> Any:
    """``json.loads`` bounded before any parsing (at most MAX_JSON_DEPTH deep, numbers of at
    most MAX_NUMBER_DIGITS digits), refusing NaN and Infinity (not JSON); every failure on
    hostile input becomes ``error`` naming ``what``."""
    outside_strings = _JSON_STRING.sub('""', text)
    if _LONG_NUMBER.search(outside_strings):
        raise error(f"{what} holds a number too large (more than {MAX_NUMBER_DIGITS} digits)")
    if json_depth(text) > MAX_JSON_DEPTH:
        raise error(f"{what} is nested too deeply (more than {MAX_JSON_DEPTH} levels)")
    try:
        return json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise error(f"{what} is not valid JSON: {exc.msg}") from None
    except (ValueError, RecursionError) as exc:  # NaN/Infinity; anything the bounds above missed
        raise error(f"{what} is not usable JSON: {exc}") from None
