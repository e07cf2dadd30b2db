"""A small, strict Amazon States Language interpreter for the subset cubecut uses.

It runs a state machine definition (the same JSON that Step Functions deploys) against
local Python callables, so the real ingest and bulk-cutout definitions are exercised on
one machine without Docker. The subset:

* states ``Task`` (Resource ARN → callable, optional ``TimeoutSeconds``), ``Pass``,
  ``Choice``, ``Succeed``, ``Fail`` (``Error``/``Cause`` or ``ErrorPath``/``CausePath``),
  ``Map`` (``INLINE`` and ``DISTRIBUTED``; ``ItemsPath``, or ``ItemReader`` with
  ``arn:aws:states:::s3:getObject`` and ``ReaderConfig.InputType`` ``JSON`` through a
  boto3 S3 client; ``ItemSelector``; ``MaxConcurrency`` enforced with a thread pool;
  ``ItemBatcher`` with ``MaxItemsPerBatch``/``MaxInputBytesPerBatch``/``BatchInput``, each
  child getting ``{"Items": [...], "BatchInput": {...}}``; ``ResultWriter`` with
  ``arn:aws:states:::s3:putObject`` and ``Parameters`` ``Bucket``/``Prefix``, which writes
  ``{Prefix}/{map run id}/SUCCEEDED_0.json`` (the child executions, ``Input`` and ``Output``
  as JSON strings) and ``manifest.json`` there, and makes the state's result
  ``{"MapRunArn", "ResultWriterDetails": {"Bucket", "Key"}}``);
* ``InputPath``, ``Parameters``, ``ResultSelector``, ``ResultPath`` (including ``null``),
  ``OutputPath``, payload templates with ``.$`` keys, reference paths (``$.a.b``,
  ``$['a']``, ``$.a[0]``), the context object (``$$.Execution``, ``$$.State``,
  ``$$.StateMachine`` and ``$$.Map.Item.Index``/``Value`` inside ``ItemSelector``) and
  the intrinsic functions ``States.Format``, ``States.StringToJson``,
  ``States.JsonToString`` and ``States.Array``;
* ``Retry`` (``ErrorEquals``, ``IntervalSeconds``, ``BackoffRate``, ``MaxAttempts``,
  ``MaxDelaySeconds``, ``JitterStrategy`` ``FULL``/``NONE``; sleeps are multiplied by
  ``retry_time_scale``) and ``Catch`` (``ErrorEquals``, ``ResultPath``, ``Next``);
* Choice comparators ``StringEquals[Path]``, ``NumericEquals[Path]``,
  ``NumericLessThan[Equals]``, ``NumericGreaterThan[Equals]``, ``BooleanEquals``,
  ``IsPresent``, ``IsNull``, ``IsNumeric``, ``IsString``, ``IsBoolean``, ``And``,
  ``Or``, ``Not``.

Everything else that the language has (``Parallel``, ``Wait``, ``ItemSelector`` together
with ``ItemBatcher``, ``ResultWriter``'s ``WriterConfig``, ``ToleratedFailure*``, ``HeartbeatSeconds``, JSONata, other
intrinsics or comparators, ...) is rejected with :class:`UnsupportedASLError` before the
execution starts; structural mistakes are rejected with :class:`ASLValidationError`.

Step Functions behaviour that is reproduced because our definitions depend on it:

* a Python exception raised by a callable becomes an error named after its class (what
  Lambda reports as ``errorType``) with a Lambda-style JSON ``Cause``
  (``errorMessage``, ``errorType``, ``stackTrace``); a result that is not JSON fails with
  ``Runtime.MarshalError``;
* ``States.TaskFailed`` matches every error except ``States.Timeout``; ``States.ALL``
  matches every error; neither catches the terminal ``States.Runtime`` (a path that
  does not resolve) and ``States.DataLimitExceeded`` (a payload above 256 KiB);
* only the first retrier whose ``ErrorEquals`` matches is used;
* a failed iteration fails an ``INLINE`` Map with the iteration's error, while a failed
  child execution fails a ``DISTRIBUTED`` Map with
  ``States.ExceedToleratedFailureThreshold`` (tolerated failures are zero);
* ``DefinitionSubstitutions`` are applied textually, as CloudFormation does, so an
  unquoted ``${MaxConcurrency}`` becomes a JSON number.

The payload limit is checked on the execution input, every task input and result, every
state output and every Map's collected results (Step Functions may check fewer places;
checking more can only make a local run stricter).
"""
from __future__ import annotations

import json
import random
import re
import threading
import time
import traceback
import uuid
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from copy import deepcopy
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Iterator, Mapping, NamedTuple

from .lambda_context import LOCAL_ACCOUNT_ID, LOCAL_REGION, LambdaContext

__all__ = [
    "ASLError", "ASLValidationError", "UnsupportedASLError", "Execution", "HistoryEvent",
    "StateMachineRunner", "validate_definition", "apply_substitutions", "PAYLOAD_LIMIT_BYTES",
]

#: Step Functions' limit on any input, output or result payload (UTF-8 JSON).
PAYLOAD_LIMIT_BYTES = 256 * 1024
#: Concurrent iterations of an INLINE Map without MaxConcurrency (Step Functions' own cap).
INLINE_UNBOUNDED_CONCURRENCY = 40
#: Local thread cap for a DISTRIBUTED Map without MaxConcurrency (AWS would go to 10,000).
DISTRIBUTED_UNBOUNDED_CONCURRENCY = 64
#: The Lambda timeout assumed for a context when a Task has no TimeoutSeconds.
DEFAULT_TASK_TIMEOUT_SECONDS = 900

Resource = Callable[[Any, LambdaContext], Any]


class ASLError(Exception):
    """Base class of the interpreter's errors; ``problems`` lists what was found."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))


class ASLValidationError(ASLError):
    """The definition is not a valid state machine (or a substitution is missing)."""


class UnsupportedASLError(ASLError):
    """The definition uses a part of the language that this interpreter does not run."""


# --------------------------------------------------------------------------------------
# The supported language: fields per state type, and what the language has besides.
# --------------------------------------------------------------------------------------
_COMMON = {"Type", "Comment"}
_FLOW = {"Next", "End"}
_IO = {"InputPath", "OutputPath"}
_STATE_FIELDS: dict[str, set[str]] = {
    "Task": _COMMON | _FLOW | _IO | {"ResultPath", "Parameters", "ResultSelector", "Retry", "Catch",
                                     "Resource", "TimeoutSeconds"},
    "Pass": _COMMON | _FLOW | _IO | {"ResultPath", "Parameters", "Result"},
    "Choice": _COMMON | _IO | {"Choices", "Default"},
    "Succeed": _COMMON | _IO,
    "Fail": _COMMON | {"Error", "ErrorPath", "Cause", "CausePath"},
    "Map": _COMMON | _FLOW | _IO | {"ResultPath", "ResultSelector", "Retry", "Catch", "ItemsPath",
                                    "ItemReader", "ItemSelector", "ItemProcessor", "MaxConcurrency",
                                    "Label", "ItemBatcher", "ResultWriter"},
}
_UNSUPPORTED_STATE_TYPES = {"Parallel", "Wait"}
_LANGUAGE_FIELDS = set().union(*_STATE_FIELDS.values()) | {
    "Parameters", "HeartbeatSeconds", "HeartbeatSecondsPath", "TimeoutSecondsPath", "Credentials",
    "Branches", "Seconds", "SecondsPath", "Timestamp", "TimestampPath", "Iterator", "ItemBatcher",
    "ResultWriter", "MaxConcurrencyPath", "ToleratedFailurePercentage",
    "ToleratedFailurePercentagePath", "ToleratedFailureCount", "ToleratedFailureCountPath",
    "QueryLanguage", "Arguments", "Output", "Assign", "Items",
}
_TOP_FIELDS = {"StartAt", "States", "Comment"}
_TOP_LANGUAGE_FIELDS = _TOP_FIELDS | {"Version", "TimeoutSeconds", "QueryLanguage"}
_PROCESSOR_FIELDS = {"ProcessorConfig", "StartAt", "States", "Comment"}
_RETRIER_FIELDS = {"ErrorEquals", "IntervalSeconds", "MaxAttempts", "BackoffRate", "MaxDelaySeconds",
                   "JitterStrategy"}
_CATCHER_FIELDS = {"ErrorEquals", "Next", "ResultPath"}
# The ASL specification lists no Comment field for retriers and catchers: not accepted here.
_RETRIER_LANGUAGE_FIELDS = _RETRIER_FIELDS | {"Comment"}
_CATCHER_LANGUAGE_FIELDS = _CATCHER_FIELDS | {"Assign", "Output", "Comment"}
_S3_GET_OBJECT = "arn:aws:states:::s3:getObject"
_S3_PUT_OBJECT = "arn:aws:states:::s3:putObject"
_KNOWN_STATES_ERRORS = {
    "States.ALL", "States.TaskFailed", "States.Timeout", "States.Runtime", "States.DataLimitExceeded",
    "States.HeartbeatTimeout", "States.Permissions", "States.ResultPathMatchFailure",
    "States.ParameterPathFailure", "States.BranchFailed", "States.NoChoiceMatched",
    "States.IntrinsicFailure", "States.ExceedToleratedFailureThreshold", "States.ItemReaderFailed",
    "States.ResultWriterFailed", "States.QueryEvaluationError",
}
_TERMINAL_ERRORS = {"States.Runtime", "States.DataLimitExceeded"}

# Choice comparators: name → kind of value ("str", "num", "bool" or "path").
_COMPARATORS: dict[str, str] = {
    "StringEquals": "str", "StringEqualsPath": "path",
    "NumericEquals": "num", "NumericEqualsPath": "path",
    "NumericLessThan": "num", "NumericLessThanEquals": "num",
    "NumericGreaterThan": "num", "NumericGreaterThanEquals": "num",
    "BooleanEquals": "bool",
    "IsPresent": "bool", "IsNull": "bool", "IsNumeric": "bool", "IsString": "bool", "IsBoolean": "bool",
}
_LANGUAGE_COMPARATOR = re.compile(r"^(String|Numeric|Boolean|Timestamp)[A-Za-z]+$|^Is[A-Z][A-Za-z]+$")
_INTRINSICS = {"States.Format", "States.StringToJson", "States.JsonToString", "States.Array"}
_INTRINSIC_ARITY = {"States.StringToJson": 1, "States.JsonToString": 1}


# --------------------------------------------------------------------------------------
# Substitutions
# --------------------------------------------------------------------------------------
_PLACEHOLDER = re.compile(r"\$\{([A-Za-z0-9_.:-]+)\}")


def apply_substitutions(text: str, substitutions: Mapping[str, Any]) -> str:
    """Replace every ``${Name}`` in ``text`` the way CloudFormation's DefinitionSubstitutions do.

    The replacement is textual: a placeholder written without quotes becomes whatever the
    value's text is (``200`` → a JSON number). Raises :class:`ASLValidationError` naming
    every placeholder that has no value.
    """
    missing = sorted({name for name in _PLACEHOLDER.findall(text) if name not in substitutions})
    if missing:
        raise ASLValidationError([f"no substitution for ${{{name}}}" for name in missing])
    return _PLACEHOLDER.sub(lambda m: str(substitutions[m.group(1)]), text)


def _load(definition: Mapping[str, Any] | str, substitutions: Mapping[str, Any] | None) -> dict[str, Any]:
    text = definition if isinstance(definition, str) else json.dumps(definition)
    text = apply_substitutions(text, substitutions or {})
    try:
        loaded = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ASLValidationError([f"definition is not valid JSON: {exc}"]) from None
    if not isinstance(loaded, dict):
        raise ASLValidationError(["definition must be a JSON object"])
    return loaded


# --------------------------------------------------------------------------------------
# Paths, payload templates and intrinsic functions
# --------------------------------------------------------------------------------------
_PATH_STEP = re.compile(r"\.([^.\[\]\s*?@,:()'\"$]+)|\[(\d+)\]|\['([^']*)'\]|\[\"([^\"]*)\"\]")


class _Path(NamedTuple):
    context: bool               # "$$" (the context object) rather than "$"
    steps: tuple[str | int, ...]


def _parse_path(text: Any) -> _Path | None:
    """Parse a reference path; None if it is not one (wildcards, filters, slices, ...)."""
    if not isinstance(text, str) or not text.startswith("$"):
        return None
    context = text.startswith("$$")
    rest, steps = text[2 if context else 1:], []
    while rest:
        match = _PATH_STEP.match(rest)
        if not match:
            return None
        name, index, quoted1, quoted2 = match.groups()
        steps.append(int(index) if index is not None else (name or quoted1 or quoted2 or ""))
        rest = rest[match.end():]
    return _Path(context, tuple(steps))


class _Missing(Exception):
    """A path did not resolve."""


def _resolve(path: _Path, data: Any, context: Any) -> Any:
    value = context if path.context else data
    for step in path.steps:
        if isinstance(step, int) and isinstance(value, list) and step < len(value):
            value = value[step]
        elif isinstance(step, str) and isinstance(value, dict) and step in value:
            value = value[step]
        else:
            raise _Missing(step)
    return value


class _Call(NamedTuple):
    name: str
    args: tuple[Any, ...]   # _Literal, _Path or _Call


class _Literal(NamedTuple):
    value: Any


class _IntrinsicSyntaxError(ValueError):
    """An intrinsic function call that cannot be parsed."""


def _parse_intrinsic(text: str) -> _Call:
    call, end = _parse_call(text, 0)
    if text[end:].strip():
        raise _IntrinsicSyntaxError(f"unexpected text after the call: {text[end:]!r}")
    return call


def _parse_call(text: str, pos: int) -> tuple[_Call, int]:
    match = re.compile(r"\s*(States\.[A-Za-z]+)\(").match(text, pos)
    if not match:
        raise _IntrinsicSyntaxError(f"expected States.Name( at {text[pos:]!r}")
    name, pos, args = match.group(1), match.end(), []
    while True:
        pos = _skip_spaces(text, pos)
        if pos < len(text) and text[pos] == ")" and not args:
            return _Call(name, ()), pos + 1
        arg, pos = _parse_arg(text, pos)
        args.append(arg)
        pos = _skip_spaces(text, pos)
        if pos >= len(text):
            raise _IntrinsicSyntaxError(f"unterminated call to {name}")
        if text[pos] == ")":
            return _Call(name, tuple(args)), pos + 1
        if text[pos] != ",":
            raise _IntrinsicSyntaxError(f"expected ',' or ')' in {text!r}")
        pos += 1


def _skip_spaces(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] == " ":
        pos += 1
    return pos


_NUMBER = re.compile(r"-?\d+(\.\d+)?([eE][+-]?\d+)?")


def _parse_arg(text: str, pos: int) -> tuple[Any, int]:
    if text.startswith("States.", pos):
        return _parse_call(text, pos)
    if text.startswith("'", pos):
        out, pos = [], pos + 1
        while pos < len(text) and text[pos] != "'":
            if text[pos] == "\\" and pos + 1 < len(text):
                # \' and \\ are resolved; \{ and \} stay escaped for States.Format.
                out.append(text[pos + 1] if text[pos + 1] in "'\\" else text[pos:pos + 2])
                pos += 2
            else:
                out.append(text[pos])
                pos += 1
        if pos >= len(text):
            raise _IntrinsicSyntaxError(f"unterminated string in {text!r}")
        return _Literal("".join(out)), pos + 1
    if text.startswith("$", pos):
        end = pos
        while end < len(text) and text[end] not in ",)":
            end += 1
        path = _parse_path(text[pos:end].strip())
        if path is None:
            raise _IntrinsicSyntaxError(f"not a reference path: {text[pos:end]!r}")
        return path, end
    for word, value in (("true", True), ("false", False), ("null", None)):
        if text.startswith(word, pos):
            return _Literal(value), pos + len(word)
    match = _NUMBER.match(text, pos)
    if match:
        number = float(match.group()) if (match.group(1) or match.group(2)) else int(match.group())
        return _Literal(number), match.end()
    raise _IntrinsicSyntaxError(f"cannot read an argument at {text[pos:]!r}")


def _intrinsic_names(call: _Call) -> Iterator[_Call]:
    yield call
    for arg in call.args:
        if isinstance(arg, _Call):
            yield from _intrinsic_names(arg)


# --------------------------------------------------------------------------------------
# Static validation
# --------------------------------------------------------------------------------------
@dataclass
class _Problems:
    invalid: list[str] = field(default_factory=list)
    unsupported: list[str] = field(default_factory=list)

    def all(self) -> list[str]:
        return self.invalid + [f"unsupported: {text}" for text in self.unsupported]


def validate_definition(definition: Mapping[str, Any] | str) -> list[str]:
    """Check a definition statically; return the problems found (empty if it is fine).

    Checks: JSON object with ``StartAt`` naming a state; every ``Next``/``Default``/
    ``Catch`` target exists in the same (sub)machine; every flow ends in a terminal state;
    no state is unreachable; Choice rules, Retry and Catch fields, paths, payload
    templates and intrinsic calls are well formed; and nothing outside the supported
    subset is used (those problems start with ``"unsupported: "``).
    """
    if isinstance(definition, str):
        try:
            definition = json.loads(definition)
        except json.JSONDecodeError as exc:
            return [f"definition is not valid JSON: {exc}"]
    return _check(definition).all()


def _check(definition: Any) -> _Problems:
    problems = _Problems()
    if not isinstance(definition, dict):
        problems.invalid.append("definition must be a JSON object")
        return problems
    _check_fields(definition, _TOP_FIELDS, _TOP_LANGUAGE_FIELDS, "the definition", problems)
    _check_machine(definition, "", problems)
    return problems


def _check_fields(obj: dict[str, Any], allowed: set[str], language: set[str], where: str,
                  problems: _Problems) -> None:
    for key in obj:
        if key in allowed:
            continue
        if key in language:
            problems.unsupported.append(f"field {key!r} in {where}")
        else:
            problems.invalid.append(f"unknown field {key!r} in {where}")


def _check_machine(machine: dict[str, Any], prefix: str, problems: _Problems) -> None:
    states = machine.get("States")
    if not isinstance(states, dict) or not states:
        problems.invalid.append(f"{prefix or 'the definition'}: States must be a non-empty object")
        return
    start = machine.get("StartAt")
    if start not in states:
        problems.invalid.append(f"{prefix or 'the definition'}: StartAt {start!r} is not a state")
    terminal = False
    for name, state in states.items():
        where = f"state {prefix}{name!r}"
        if not isinstance(state, dict):
            problems.invalid.append(f"{where} must be an object")
            continue
        kind = state.get("Type")
        if kind in _UNSUPPORTED_STATE_TYPES:
            problems.unsupported.append(f"{where} has Type {kind!r}")
            continue
        if kind not in _STATE_FIELDS:
            problems.invalid.append(f"{where} has unknown Type {kind!r}")
            continue
        _check_fields(state, _STATE_FIELDS[kind], _LANGUAGE_FIELDS, where, problems)
        terminal |= _check_flow(state, kind, states, where, problems)
        _check_state_paths(state, where, problems)
        for template_field in ("Parameters", "ResultSelector", "ItemSelector"):
            if template_field in state:
                _check_template(state[template_field], f"{where} {template_field}", problems)
        for retrier_index, retrier in enumerate(_as_list(state.get("Retry", []), f"{where} Retry", problems)):
            _check_retrier(retrier, f"{where} Retry[{retrier_index}]", problems)
        _check_error_lists(state.get("Retry", []), f"{where} Retry", problems)
        _check_error_lists(state.get("Catch", []), f"{where} Catch", problems)
        if kind == "Task":
            _check_task(state, where, problems)
        elif kind == "Choice":
            _check_choice(state, states, where, problems)
        elif kind == "Fail":
            _check_fail(state, where, problems)
        elif kind == "Map":
            _check_map(state, f"{prefix}{name}.", where, problems)
    if not terminal:
        problems.invalid.append(f"{prefix or 'the definition'}: no terminal state (End, Succeed or Fail)")
    if start in states:
        unreachable = sorted(set(states) - _reachable(start, states))
        for name in unreachable:
            problems.invalid.append(f"state {prefix}{name!r} is unreachable from StartAt")


def _as_list(value: Any, where: str, problems: _Problems) -> list[Any]:
    if isinstance(value, list):
        return value
    problems.invalid.append(f"{where} must be a list")
    return []


def _check_flow(state: dict[str, Any], kind: str, states: dict[str, Any], where: str,
                problems: _Problems) -> bool:
    """Check Next/End; return True if the state ends its (sub)machine."""
    if kind in {"Succeed", "Fail"}:
        return True
    if kind == "Choice":
        return False
    has_next, has_end = "Next" in state, "End" in state
    if has_next == has_end:
        problems.invalid.append(f"{where} must have exactly one of Next and End")
    if has_end and state["End"] is not True:
        problems.invalid.append(f"{where}: End must be true")
    if has_next and state["Next"] not in states:
        problems.invalid.append(f"{where}: Next {state['Next']!r} is not a state")
    for index, catcher in enumerate(state.get("Catch", []) if isinstance(state.get("Catch"), list) else []):
        cwhere = f"{where} Catch[{index}]"
        if not isinstance(catcher, dict):
            problems.invalid.append(f"{cwhere} must be an object")
            continue
        _check_fields(catcher, _CATCHER_FIELDS, _CATCHER_LANGUAGE_FIELDS, cwhere, problems)
        if catcher.get("Next") not in states:
            problems.invalid.append(f"{cwhere}: Next {catcher.get('Next')!r} is not a state")
        if "ResultPath" in catcher:
            _check_result_path(catcher["ResultPath"], f"{cwhere} ResultPath", problems)
    if "Catch" in state and not isinstance(state["Catch"], list):
        problems.invalid.append(f"{where} Catch must be a list")
    return has_end and state.get("End") is True


def _check_state_paths(state: dict[str, Any], where: str, problems: _Problems) -> None:
    for key in ("InputPath", "OutputPath"):
        if key in state and state[key] is not None and _parse_path(state[key]) is None:
            problems.unsupported.append(f"{where} {key} {state[key]!r} is not a reference path")
    if "ResultPath" in state:
        _check_result_path(state["ResultPath"], f"{where} ResultPath", problems)
    if "ItemsPath" in state and _parse_path(state["ItemsPath"]) is None:
        problems.unsupported.append(f"{where} ItemsPath {state['ItemsPath']!r} is not a reference path")


def _check_result_path(value: Any, where: str, problems: _Problems) -> None:
    if value is None:
        return
    path = _parse_path(value)
    if path is None or path.context:
        problems.invalid.append(f"{where} {value!r} is not a reference path into the state input")
    elif any(isinstance(step, int) for step in path.steps):
        problems.unsupported.append(f"{where} {value!r} uses an array index")


def _check_template(template: Any, where: str, problems: _Problems) -> None:
    if isinstance(template, list):
        for item in template:
            _check_template(item, where, problems)
        return
    if not isinstance(template, dict):
        return
    for key, value in template.items():
        if not key.endswith(".$"):
            _check_template(value, where, problems)
            continue
        _check_dynamic_value(value, f"{where} field {key!r}", problems)


def _check_dynamic_value(value: Any, where: str, problems: _Problems) -> None:
    """A ``.$`` value, ErrorPath or CausePath: a reference path or an intrinsic call."""
    if not isinstance(value, str):
        problems.invalid.append(f"{where} must be a string")
    elif value.startswith("$"):
        if _parse_path(value) is None:
            problems.unsupported.append(f"{where}: {value!r} is not a reference path")
    elif value.startswith("States."):
        try:
            call = _parse_intrinsic(value)
        except _IntrinsicSyntaxError as exc:
            problems.invalid.append(f"{where}: {exc}")
            return
        for inner in _intrinsic_names(call):
            if inner.name not in _INTRINSICS:
                problems.unsupported.append(f"{where}: intrinsic function {inner.name}")
            elif inner.name in _INTRINSIC_ARITY and len(inner.args) != _INTRINSIC_ARITY[inner.name]:
                problems.invalid.append(f"{where}: {inner.name} takes {_INTRINSIC_ARITY[inner.name]} argument")
            elif inner.name == "States.Format" and not (inner.args and isinstance(inner.args[0], _Literal)
                                                         and isinstance(inner.args[0].value, str)):
                problems.invalid.append(f"{where}: States.Format needs a string template first")
    else:
        problems.invalid.append(f"{where}: {value!r} is neither a path nor an intrinsic function")


def _check_retrier(retrier: Any, where: str, problems: _Problems) -> None:
    if not isinstance(retrier, dict):
        problems.invalid.append(f"{where} must be an object")
        return
    _check_fields(retrier, _RETRIER_FIELDS, _RETRIER_LANGUAGE_FIELDS, where, problems)
    checks = {
        "IntervalSeconds": lambda v: _is_int(v) and v >= 1,
        "MaxAttempts": lambda v: _is_int(v) and v >= 0,
        "BackoffRate": lambda v: _is_number(v) and v >= 1.0,
        "MaxDelaySeconds": lambda v: _is_int(v) and v >= 1,
        "JitterStrategy": lambda v: v in {"FULL", "NONE"},
    }
    for key, ok in checks.items():
        if key in retrier and not ok(retrier[key]):
            problems.invalid.append(f"{where} {key} has an invalid value {retrier[key]!r}")


def _check_error_lists(handlers: Any, where: str, problems: _Problems) -> None:
    if not isinstance(handlers, list):
        return
    for index, handler in enumerate(handlers):
        if not isinstance(handler, dict):
            continue
        errors = handler.get("ErrorEquals")
        hwhere = f"{where}[{index}] ErrorEquals"
        if not isinstance(errors, list) or not errors or not all(isinstance(e, str) for e in errors):
            problems.invalid.append(f"{hwhere} must be a non-empty list of error names")
            continue
        for error in errors:
            if error.startswith("States.") and error not in _KNOWN_STATES_ERRORS:
                problems.invalid.append(f"{hwhere}: unknown error name {error!r}")
        if "States.ALL" in errors and (len(errors) > 1 or index != len(handlers) - 1):
            problems.invalid.append(f"{hwhere}: States.ALL must appear alone and in the last entry")


def _check_task(state: dict[str, Any], where: str, problems: _Problems) -> None:
    if not isinstance(state.get("Resource"), str) or not state["Resource"]:
        problems.invalid.append(f"{where} needs a Resource")
    if "TimeoutSeconds" in state and not (_is_int(state["TimeoutSeconds"]) and state["TimeoutSeconds"] > 0):
        problems.invalid.append(f"{where} TimeoutSeconds must be a positive integer")


def _check_fail(state: dict[str, Any], where: str, problems: _Problems) -> None:
    for plain, dynamic in (("Error", "ErrorPath"), ("Cause", "CausePath")):
        if plain in state and dynamic in state:
            problems.invalid.append(f"{where} cannot have both {plain} and {dynamic}")
        if plain in state and not isinstance(state[plain], str):
            problems.invalid.append(f"{where} {plain} must be a string")
        if dynamic in state:
            _check_dynamic_value(state[dynamic], f"{where} {dynamic}", problems)


def _check_choice(state: dict[str, Any], states: dict[str, Any], where: str, problems: _Problems) -> None:
    choices = state.get("Choices")
    if not isinstance(choices, list) or not choices:
        problems.invalid.append(f"{where} needs a non-empty Choices list")
        return
    for index, rule in enumerate(choices):
        rwhere = f"{where} Choices[{index}]"
        if not isinstance(rule, dict):
            problems.invalid.append(f"{rwhere} must be an object")
            continue
        if rule.get("Next") not in states:
            problems.invalid.append(f"{rwhere}: Next {rule.get('Next')!r} is not a state")
        _check_rule(rule, rwhere, problems, top=True)
    if "Default" in state and state["Default"] not in states:
        problems.invalid.append(f"{where}: Default {state['Default']!r} is not a state")


def _check_rule(rule: Any, where: str, problems: _Problems, *, top: bool) -> None:
    if not isinstance(rule, dict):
        problems.invalid.append(f"{where} must be an object")
        return
    if not top and "Next" in rule:
        problems.invalid.append(f"{where}: a nested rule cannot have Next")
    keys = set(rule) - {"Next", "Comment"}
    combinators = keys & {"And", "Or", "Not"}
    if combinators:
        if len(keys) != 1:
            problems.invalid.append(f"{where}: And/Or/Not must be the rule's only condition")
            return
        (op,) = combinators
        operands = [rule[op]] if op == "Not" else rule[op]
        if op != "Not" and (not isinstance(operands, list) or not operands):
            problems.invalid.append(f"{where}: {op} needs a non-empty list")
            return
        for index, operand in enumerate(operands):
            _check_rule(operand, f"{where}.{op}[{index}]", problems, top=False)
        return
    if "Variable" not in keys:
        problems.invalid.append(f"{where} has no Variable")
    elif _parse_path(rule["Variable"]) is None:
        problems.unsupported.append(f"{where}: Variable {rule['Variable']!r} is not a reference path")
    comparators = keys - {"Variable"}
    if len(comparators) != 1:
        problems.invalid.append(f"{where} must have exactly one comparison operator, has {sorted(comparators)}")
        return
    (op,) = comparators
    if op not in _COMPARATORS:
        if _LANGUAGE_COMPARATOR.match(op):
            problems.unsupported.append(f"{where}: comparison operator {op}")
        else:
            problems.invalid.append(f"{where}: unknown field {op!r}")
        return
    value, kind = rule[op], _COMPARATORS[op]
    valid = {"str": isinstance(value, str), "num": _is_number(value), "bool": isinstance(value, bool),
             "path": _parse_path(value) is not None}[kind]
    if not valid:
        problems.invalid.append(f"{where}: {op} has a value of the wrong type: {value!r}")


def _check_map(state: dict[str, Any], prefix: str, where: str, problems: _Problems) -> None:
    processor = state.get("ItemProcessor")
    if "Iterator" in state or "Parameters" in state:
        return  # already reported as unsupported fields (use ItemProcessor and ItemSelector)
    if not isinstance(processor, dict):
        problems.invalid.append(f"{where} needs an ItemProcessor")
        return
    _check_fields(processor, _PROCESSOR_FIELDS, _PROCESSOR_FIELDS, f"{where} ItemProcessor", problems)
    config = processor.get("ProcessorConfig", {})
    mode = config.get("Mode", "INLINE") if isinstance(config, dict) else None
    if mode not in {"INLINE", "DISTRIBUTED"}:
        problems.invalid.append(f"{where} ProcessorConfig.Mode must be INLINE or DISTRIBUTED")
    elif mode == "DISTRIBUTED" and config.get("ExecutionType") not in {"STANDARD", "EXPRESS"}:
        problems.invalid.append(f"{where}: a DISTRIBUTED Map needs ExecutionType STANDARD or EXPRESS")
    elif mode == "INLINE" and "ExecutionType" in config:
        problems.invalid.append(f"{where}: ExecutionType is only for DISTRIBUTED Maps")
    if isinstance(config, dict):
        _check_fields(config, {"Mode", "ExecutionType"}, {"Mode", "ExecutionType"},
                      f"{where} ProcessorConfig", problems)
    if "MaxConcurrency" in state and not (_is_int(state["MaxConcurrency"]) and state["MaxConcurrency"] >= 0):
        problems.invalid.append(f"{where} MaxConcurrency must be a non-negative integer")
    if "ItemReader" in state:
        if mode != "DISTRIBUTED":
            problems.invalid.append(f"{where}: ItemReader is only for DISTRIBUTED Maps")
        if "ItemsPath" in state:
            problems.unsupported.append(f"{where}: ItemsPath together with ItemReader")
        _check_item_reader(state["ItemReader"], f"{where} ItemReader", problems)
    for field_name, check in (("ItemBatcher", _check_item_batcher), ("ResultWriter", _check_result_writer)):
        if field_name in state:
            if mode != "DISTRIBUTED":
                problems.invalid.append(f"{where}: {field_name} is only for DISTRIBUTED Maps")
            check(state[field_name], f"{where} {field_name}", problems)
    if "ItemBatcher" in state and "ItemSelector" in state:
        problems.unsupported.append(f"{where}: ItemSelector together with ItemBatcher")
    _check_machine(processor, prefix, problems)


def _check_item_batcher(batcher: Any, where: str, problems: _Problems) -> None:
    if not isinstance(batcher, dict):
        problems.invalid.append(f"{where} must be an object")
        return
    _check_fields(batcher, {"MaxItemsPerBatch", "MaxInputBytesPerBatch", "BatchInput"},
                  {"MaxItemsPerBatch", "MaxInputBytesPerBatch", "BatchInput", "MaxItemsPerBatchPath",
                   "MaxInputBytesPerBatchPath"}, where, problems)
    limits = [batcher[k] for k in ("MaxItemsPerBatch", "MaxInputBytesPerBatch") if k in batcher]
    if not limits:
        problems.invalid.append(f"{where} needs MaxItemsPerBatch or MaxInputBytesPerBatch")
    if not all(_is_int(v) and v > 0 for v in limits):
        problems.invalid.append(f"{where}: MaxItemsPerBatch/MaxInputBytesPerBatch must be positive integers")
    if batcher.get("MaxInputBytesPerBatch", 0) > PAYLOAD_LIMIT_BYTES:
        problems.invalid.append(f"{where}: MaxInputBytesPerBatch is above {PAYLOAD_LIMIT_BYTES}")
    if "BatchInput" in batcher:
        _check_template(batcher["BatchInput"], f"{where} BatchInput", problems)


def _check_result_writer(writer: Any, where: str, problems: _Problems) -> None:
    if not isinstance(writer, dict):
        problems.invalid.append(f"{where} must be an object")
        return
    _check_fields(writer, {"Resource", "Parameters"}, {"Resource", "Parameters", "WriterConfig", "Arguments"},
                  where, problems)
    if writer.get("Resource") != _S3_PUT_OBJECT:
        problems.unsupported.append(f"{where} Resource {writer.get('Resource')!r} (only {_S3_PUT_OBJECT})")
    parameters = writer.get("Parameters")
    if not isinstance(parameters, dict):
        problems.invalid.append(f"{where} needs Parameters with Bucket and Prefix")
        return
    _check_template(parameters, f"{where} Parameters", problems)
    for key in ("Bucket", "Prefix"):
        if key not in parameters and f"{key}.$" not in parameters:
            problems.invalid.append(f"{where} Parameters needs {key}")


def _check_item_reader(reader: Any, where: str, problems: _Problems) -> None:
    if not isinstance(reader, dict):
        problems.invalid.append(f"{where} must be an object")
        return
    _check_fields(reader, {"Resource", "ReaderConfig", "Parameters"}, {"Resource", "ReaderConfig",
                  "Parameters", "Arguments"}, where, problems)
    if reader.get("Resource") != _S3_GET_OBJECT:
        problems.unsupported.append(f"{where} Resource {reader.get('Resource')!r} (only {_S3_GET_OBJECT})")
    config = reader.get("ReaderConfig", {})
    if not isinstance(config, dict) or config.get("InputType") != "JSON":
        problems.unsupported.append(f"{where}: only ReaderConfig {{'InputType': 'JSON'}} is supported")
    else:
        _check_fields(config, {"InputType"}, {"InputType", "MaxItems", "MaxItemsPath", "CSVHeaderLocation",
                      "CSVHeaders", "CSVDelimiter", "ManifestType", "ItemsPointer"},
                      f"{where} ReaderConfig", problems)
    parameters = reader.get("Parameters")
    if not isinstance(parameters, dict):
        problems.invalid.append(f"{where} needs Parameters with Bucket and Key")
        return
    _check_template(parameters, f"{where} Parameters", problems)
    for key in ("Bucket", "Key"):
        if key not in parameters and f"{key}.$" not in parameters:
            problems.invalid.append(f"{where} Parameters needs {key}")


def _reachable(start: str, states: dict[str, Any]) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        name = todo.pop()
        if name in seen or name not in states or not isinstance(states[name], dict):
            continue
        seen.add(name)
        state = states[name]
        todo.extend(t for t in (state.get("Next"), state.get("Default")) if isinstance(t, str))
        for handlers in (state.get("Choices"), state.get("Catch")):
            if isinstance(handlers, list):
                todo.extend(h["Next"] for h in handlers if isinstance(h, dict) and isinstance(h.get("Next"), str))
    return seen


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _resources_of(machine: dict[str, Any]) -> Iterator[str]:
    for state in machine.get("States", {}).values():
        if state.get("Type") == "Task":
            yield state["Resource"]
        elif state.get("Type") == "Map":
            yield from _resources_of(state["ItemProcessor"])


def _uses_s3(machine: dict[str, Any]) -> bool:
    return any(state.get("Type") == "Map" and ("ItemReader" in state or "ResultWriter" in state
                                              or _uses_s3(state["ItemProcessor"]))
               for state in machine.get("States", {}).values())


# --------------------------------------------------------------------------------------
# Execution records
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class HistoryEvent:
    """One event of an execution's history (names follow Step Functions' event types)."""

    id: int
    timestamp: datetime
    type: str
    state: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class Execution:
    """The outcome of :meth:`StateMachineRunner.run`.

    ``invocations`` counts calls per resource ARN (retries included) and
    ``max_concurrency`` is the largest number of simultaneous calls seen per resource.
    """

    name: str
    status: str = "RUNNING"
    output: Any = None
    error: str | None = None
    cause: str | None = None
    history: list[HistoryEvent] = field(default_factory=list)
    invocations: dict[str, int] = field(default_factory=dict)
    max_concurrency: dict[str, int] = field(default_factory=dict)
    started: datetime | None = None
    stopped: datetime | None = None

    def events(self, type_: str) -> list[HistoryEvent]:
        """The history events of one type, in order."""
        return [event for event in self.history if event.type == type_]


class _Failure(Exception):
    """A state failed with a Step Functions error name and cause."""

    def __init__(self, error: str, cause: str) -> None:
        super().__init__(f"{error}: {cause}")
        self.error, self.cause = error, cause

    @property
    def terminal(self) -> bool:
        return self.error in _TERMINAL_ERRORS


def _matches(error_equals: list[str], error: str) -> bool:
    if error in _TERMINAL_ERRORS:
        return False
    return any(name == "States.ALL" or name == error or (name == "States.TaskFailed" and error != "States.Timeout")
               for name in error_equals)


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _json_copy(value: Any) -> Any:
    return json.loads(json.dumps(value))


def _check_size(value: Any, what: str) -> None:
    size = len(json.dumps(value, separators=(",", ":")).encode())
    if size > PAYLOAD_LIMIT_BYTES:
        raise _Failure("States.DataLimitExceeded",
                       f"The {what} has a size of {size} bytes, above the limit of {PAYLOAD_LIMIT_BYTES} bytes.")


# --------------------------------------------------------------------------------------
# The runner
# --------------------------------------------------------------------------------------
class StateMachineRunner:
    """Runs one definition against local callables.

    ``resources`` maps each Task's Resource ARN (after substitutions) to a callable
    ``(event, context) -> result`` with Lambda's handler signature; ``s3_client`` is a
    boto3 S3 client, needed when a Map has an ItemReader; ``retry_time_scale`` multiplies
    every retry sleep (0 makes retries immediate). The constructor raises
    :class:`UnsupportedASLError` or :class:`ASLValidationError` for a definition it
    cannot run faithfully.
    """

    def __init__(
        self,
        definition: Mapping[str, Any] | str,
        resources: Mapping[str, Resource],
        *,
        s3_client: Any = None,
        substitutions: Mapping[str, Any] | None = None,
        retry_time_scale: float = 0.01,
        name: str = "local",
    ) -> None:
        self.definition = _load(definition, substitutions)
        problems = _check(self.definition)
        if problems.unsupported:
            raise UnsupportedASLError(problems.all())
        if problems.invalid:
            raise ASLValidationError(problems.all())
        missing = sorted(set(_resources_of(self.definition)) - set(resources))
        if missing:
            raise UnsupportedASLError([f"no local callable for resource {arn!r}" for arn in missing])
        if s3_client is None and _uses_s3(self.definition):
            raise ASLValidationError(["the definition reads or writes S3 (ItemReader, ResultWriter) but no "
                                      "s3_client was given"])
        self.resources = dict(resources)
        self.s3_client = s3_client
        self.retry_time_scale = retry_time_scale
        self.name = name

    def run(self, input: Any = None, *, name: str | None = None) -> Execution:  # noqa: A002 - the ASL term
        """Execute the state machine once with ``input`` and return the finished execution.

        ``name`` is the execution's name (``$$.Execution.Name``; StartExecution's ``name``),
        a random one when not given. Input that is not JSON-serialisable raises
        ``TypeError`` (StartExecution would refuse it); every failure during the execution
        is reported in the result.
        """
        return _Run(self, name).execute({} if input is None else input)


class _Run:
    """The mutable state of one execution (history and counters are shared by threads)."""

    def __init__(self, runner: StateMachineRunner, name: str | None = None) -> None:
        self.runner = runner
        name = name or uuid.uuid4().hex
        machine_arn = f"arn:aws:states:{LOCAL_REGION}:{LOCAL_ACCOUNT_ID}:stateMachine:{runner.name}"
        self.machine_context = {"Id": machine_arn, "Name": runner.name}
        self.execution = Execution(name=name)
        self.execution_arn = f"arn:aws:states:{LOCAL_REGION}:{LOCAL_ACCOUNT_ID}:execution:{runner.name}:{name}"
        self.lock = threading.Lock()
        self.active: dict[str, int] = {}

    # -- bookkeeping --------------------------------------------------------------------
    def event(self, type_: str, state: str | None = None, **details: Any) -> None:
        with self.lock:
            history = self.execution.history
            history.append(HistoryEvent(len(history) + 1, _now(), type_, state, details))

    @contextmanager
    def tracking(self, resource: str) -> Iterator[None]:
        with self.lock:
            self.execution.invocations[resource] = self.execution.invocations.get(resource, 0) + 1
            self.active[resource] = self.active.get(resource, 0) + 1
            self.execution.max_concurrency[resource] = max(self.execution.max_concurrency.get(resource, 0),
                                                           self.active[resource])
        try:
            yield
        finally:
            with self.lock:
                self.active[resource] -= 1

    # -- execution ----------------------------------------------------------------------
    def execute(self, input_: Any) -> Execution:
        input_ = _json_copy(input_)  # like StartExecution, refuse input that is not JSON (TypeError)
        execution = self.execution
        execution.started = _now()
        self.event("ExecutionStarted", input=input_)
        try:
            _check_size(input_, "execution input")
            context = {"Execution": {"Id": self.execution_arn, "Name": execution.name, "Input": input_,
                                     "StartTime": _iso(execution.started)},
                       "StateMachine": self.machine_context}
            execution.output = self.run_machine(self.runner.definition, input_, context, path="")
            execution.status = "SUCCEEDED"
            self.event("ExecutionSucceeded", output=execution.output)
        except _Failure as failure:
            execution.status, execution.error, execution.cause = "FAILED", failure.error, failure.cause
            self.event("ExecutionFailed", error=failure.error, cause=failure.cause)
        execution.stopped = _now()
        return execution

    def run_machine(self, machine: dict[str, Any], data: Any, context: dict[str, Any], path: str) -> Any:
        name: str | None = machine["StartAt"]
        while name is not None:
            state = machine["States"][name]
            label = f"{path}{name}"
            entered = _now()
            self.event(f"{state['Type']}StateEntered", label, input=data)
            state_context = {**context, "State": {"Name": name, "EnteredTime": _iso(entered), "RetryCount": 0}}
            data, name = self.run_state(state, data, state_context, label)
            self.event(f"{state['Type']}StateExited", label, output=data)
        return data

    def run_state(self, state: dict[str, Any], raw: Any, context: dict[str, Any],
                  label: str) -> tuple[Any, str | None]:
        kind = state["Type"]
        if kind == "Fail":
            raise self.fail_state(state, raw, context)
        if kind == "Succeed":
            return self.output_path(state, self.input_path(state, raw, context), context), None
        if kind == "Choice":
            data = self.input_path(state, raw, context)
            return self.output_path(state, data, context), self.choose(state, data, context, label)
        try:
            if kind == "Pass":
                result = self.pass_result(state, raw, context)
            else:
                result = self.with_retry(state, raw, context, label)
            output = self.finish(state, raw, result, context)
        except _Failure as failure:
            catcher = self.catcher(state, failure)
            if catcher is None:
                raise
            self.event("CatchTriggered", label, error=failure.error, next=catcher["Next"])
            error_output = {"Error": failure.error, "Cause": failure.cause}
            return self.result_path(catcher.get("ResultPath", "$"), raw, error_output), catcher["Next"]
        return output, state.get("Next")

    # -- Task and Map with Retry -------------------------------------------------------
    def with_retry(self, state: dict[str, Any], raw: Any, context: dict[str, Any], label: str) -> Any:
        retriers = state.get("Retry", [])
        attempts = [0] * len(retriers)
        retry_count = 0
        while True:
            attempt_context = {**context, "State": {**context["State"], "RetryCount": retry_count}}
            try:
                data = self.input_path(state, raw, attempt_context)
                if state["Type"] == "Task":
                    return self.task(state, data, attempt_context, label)
                return self.map(state, data, attempt_context, label)
            except _Failure as failure:
                delay = self.retry_delay(retriers, attempts, failure)
                if delay is None:
                    raise
                retry_count += 1
                self.event("RetryScheduled", label, error=failure.error, attempt=retry_count, delay_seconds=delay)
                time.sleep(delay * self.runner.retry_time_scale)

    @staticmethod
    def retry_delay(retriers: list[dict[str, Any]], attempts: list[int], failure: _Failure) -> float | None:
        for index, retrier in enumerate(retriers):
            if not _matches(retrier["ErrorEquals"], failure.error):
                continue
            if attempts[index] >= retrier.get("MaxAttempts", 3):
                return None
            delay = retrier.get("IntervalSeconds", 1) * retrier.get("BackoffRate", 2.0) ** attempts[index]
            if "MaxDelaySeconds" in retrier:
                delay = min(delay, retrier["MaxDelaySeconds"])
            if retrier.get("JitterStrategy", "NONE") == "FULL":
                delay = random.uniform(0, delay)
            attempts[index] += 1
            return delay
        return None

    @staticmethod
    def catcher(state: dict[str, Any], failure: _Failure) -> dict[str, Any] | None:
        return next((c for c in state.get("Catch", []) if _matches(c["ErrorEquals"], failure.error)), None)

    def task(self, state: dict[str, Any], data: Any, context: dict[str, Any], label: str) -> Any:
        payload = self.template(state["Parameters"], data, context, "Parameters") if "Parameters" in state else data
        _check_size(payload, f"input of task {label!r}")
        resource = state["Resource"]
        timeout = state.get("TimeoutSeconds")
        self.event("TaskScheduled", label, resource=resource, input=payload)
        result = self.invoke(resource, _json_copy(payload), timeout, label)
        _check_size(result, f"result of task {label!r}")
        self.event("TaskSucceeded", label, resource=resource, output=result)
        return result

    def invoke(self, resource: str, event: Any, timeout: int | None, label: str) -> Any:
        function = self.runner.resources[resource]
        lambda_context = LambdaContext.for_arn(resource, timeout_seconds=timeout or DEFAULT_TASK_TIMEOUT_SECONDS)
        outcome: dict[str, Any] = {}

        def call() -> None:
            with self.tracking(resource):
                try:
                    outcome["result"] = function(event, lambda_context)
                except Exception as exc:  # noqa: BLE001 - every handler error becomes a task error
                    outcome["error"] = exc

        if timeout is None:
            call()
        else:
            worker = threading.Thread(target=call, name=f"task-{label}", daemon=True)
            worker.start()
            worker.join(timeout)
            if worker.is_alive():
                self.event("TaskTimedOut", label, resource=resource)
                raise _Failure("States.Timeout", f"Task {label!r} did not finish within {timeout} seconds.")
        if "error" in outcome:
            exc = outcome["error"]
            failure = _Failure(type(exc).__name__, json.dumps({
                "errorMessage": str(exc), "errorType": type(exc).__name__,
                "requestId": lambda_context.aws_request_id,
                "stackTrace": traceback.format_tb(exc.__traceback__),
            }))
            self.event("TaskFailed", label, resource=resource, error=failure.error, cause=failure.cause)
            raise failure
        try:
            return _json_copy(outcome["result"])
        except (TypeError, ValueError) as exc:
            failure = _Failure("Runtime.MarshalError", json.dumps({
                "errorMessage": f"Unable to marshal response: {exc}", "errorType": "Runtime.MarshalError",
                "requestId": lambda_context.aws_request_id, "stackTrace": []}))
            self.event("TaskFailed", label, resource=resource, error=failure.error, cause=failure.cause)
            raise failure from None

    def map(self, state: dict[str, Any], data: Any, context: dict[str, Any], label: str) -> list[Any]:
        processor = state["ItemProcessor"]
        mode = processor.get("ProcessorConfig", {}).get("Mode", "INLINE")
        items = self.read_items(state, data, context, label)
        selector = state.get("ItemSelector")
        inputs = []
        for index, item in enumerate(items):
            item_context = {**context, "Map": {"Item": {"Index": index, "Value": item}}}
            inputs.append(self.template(selector, data, item_context, "ItemSelector") if selector is not None
                          else item)
        if "ItemBatcher" in state:
            inputs = self.batch(state["ItemBatcher"], inputs, data, context)
        limit = state.get("MaxConcurrency", 0) or (
            INLINE_UNBOUNDED_CONCURRENCY if mode == "INLINE" else DISTRIBUTED_UNBOUNDED_CONCURRENCY)
        self.event("MapRunStarted" if mode == "DISTRIBUTED" else "MapStateStarted", label,
                   length=len(inputs), max_concurrency=limit)
        records: list[dict[str, Any]] | None = [] if "ResultWriter" in state else None
        results = self.iterate(processor, inputs, context, label, mode, limit, records)
        if records is not None:
            return self.write_results(state, records, data, context, label)
        _check_size(results, f"result of Map {label!r}")
        return results

    def batch(self, batcher: dict[str, Any], items: list[Any], data: Any, context: dict[str, Any]) -> list[Any]:
        """Consecutive items grouped as the ItemBatcher does: ``{"Items": [...], "BatchInput"}``."""
        extra = ({"BatchInput": self.template(batcher["BatchInput"], data, context, "ItemBatcher.BatchInput")}
                 if "BatchInput" in batcher else {})
        max_items = batcher.get("MaxItemsPerBatch", len(items) or 1)
        max_bytes = batcher.get("MaxInputBytesPerBatch", PAYLOAD_LIMIT_BYTES)
        batches: list[dict[str, Any]] = []
        current: list[Any] = []
        for item in items:
            grown = {"Items": [*current, item], **extra}
            if current and (len(current) >= max_items or len(json.dumps(grown).encode()) > max_bytes):
                batches.append({"Items": current, **extra})
                current = []
            current.append(item)
        if current:
            batches.append({"Items": current, **extra})
        return batches

    def write_results(self, state: dict[str, Any], records: list[dict[str, Any]], data: Any,
                      context: dict[str, Any], label: str) -> dict[str, Any]:
        """ResultWriter: the child executions and a manifest under ``{Prefix}/{map run id}/``."""
        parameters = self.template(state["ResultWriter"]["Parameters"], data, context, "ResultWriter.Parameters")
        run_id = uuid.uuid4().hex
        map_run_arn = (f"arn:aws:states:{LOCAL_REGION}:{LOCAL_ACCOUNT_ID}:mapRun:{self.runner.name}/"
                       f"{state.get('Label', label.rsplit('.', 1)[-1])}:{run_id}")
        folder = f"{str(parameters.get('Prefix', '')).rstrip('/')}/{run_id}".lstrip("/")
        bucket = parameters.get("Bucket")
        try:
            body = json.dumps(records).encode()
            self.runner.s3_client.put_object(Bucket=bucket, Key=f"{folder}/SUCCEEDED_0.json", Body=body)
            manifest = {"DestinationBucket": bucket, "MapRunArn": map_run_arn,
                        "ResultFiles": {"FAILED": [], "PENDING": [],
                                        "SUCCEEDED": [{"Key": f"{folder}/SUCCEEDED_0.json", "Size": len(body)}]}}
            self.runner.s3_client.put_object(Bucket=bucket, Key=f"{folder}/manifest.json",
                                             Body=json.dumps(manifest).encode())
        except Exception as exc:  # noqa: BLE001 - any write failure is the writer's failure
            raise _Failure("States.ResultWriterFailed",
                           f"Map {label!r} could not write its results to s3://{bucket}/{folder}/: {exc}") from None
        return {"MapRunArn": map_run_arn, "ResultWriterDetails": {"Bucket": bucket, "Key": f"{folder}/manifest.json"}}

    def read_items(self, state: dict[str, Any], data: Any, context: dict[str, Any], label: str) -> list[Any]:
        if "ItemReader" in state:
            parameters = self.template(state["ItemReader"]["Parameters"], data, context, "ItemReader.Parameters")
            try:
                body = self.runner.s3_client.get_object(Bucket=parameters["Bucket"], Key=parameters["Key"])["Body"]
                items = json.loads(body.read())
            except Exception as exc:  # noqa: BLE001 - any read or parse failure is the reader's failure
                raise _Failure("States.ItemReaderFailed",
                               f"Map {label!r} could not read s3://{parameters.get('Bucket')}/"
                               f"{parameters.get('Key')}: {exc}") from None
            if not isinstance(items, list):
                raise _Failure("States.ItemReaderFailed", f"Map {label!r}: the item source is not a JSON array")
            return items
        items = self.path_value(state.get("ItemsPath", "$"), data, context, "ItemsPath")
        if not isinstance(items, list):
            raise _Failure("States.Runtime", f"Map {label!r}: ItemsPath did not select an array")
        return items

    def iterate(self, processor: dict[str, Any], inputs: list[Any], context: dict[str, Any], label: str,
                mode: str, limit: int, records: list[dict[str, Any]] | None = None) -> list[Any]:
        """Run the iterations; ``records`` (DISTRIBUTED) collects each child execution as a
        ResultWriter reports it, in item order."""
        if not inputs:
            return []
        distributed = mode == "DISTRIBUTED"
        slots: list[dict[str, Any] | None] = [None] * len(inputs)

        def one(index: int) -> Any:
            child_context = {key: value for key, value in context.items() if key != "State"}
            if distributed:
                child_name = f"{self.execution.name}:{index}"
                child_context["Execution"] = {"Id": f"{self.execution_arn}/{label}:{index}", "Name": child_name,
                                              "Input": inputs[index], "StartTime": _iso(_now())}
            self.event("MapIterationStarted", label, index=index)
            try:
                output = self.run_machine(processor, inputs[index], child_context, path=f"{label}[{index}].")
            except _Failure as failure:
                self.event("MapIterationFailed", label, index=index, error=failure.error)
                raise
            self.event("MapIterationSucceeded", label, index=index)
            if records is not None:
                execution = child_context["Execution"]
                slots[index] = {"ExecutionArn": execution["Id"], "Name": execution["Name"],
                                "StateMachineArn": self.machine_context["Id"], "Status": "SUCCEEDED",
                                "Input": json.dumps(inputs[index]), "InputDetails": {"Included": True},
                                "Output": json.dumps(output), "OutputDetails": {"Included": True},
                                "StartDate": execution["StartTime"], "StopDate": _iso(_now())}
            return output

        with ThreadPoolExecutor(max_workers=min(limit, len(inputs)), thread_name_prefix=f"map-{label}") as pool:
            futures: list[Future[Any]] = [pool.submit(one, index) for index in range(len(inputs))]
            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            failed = next((f for f in futures if f in done and f.exception() is not None), None)
            if failed is not None:
                for future in futures:
                    future.cancel()
        if failed is None:
            if records is not None:
                records.extend(slots)
            return [future.result() for future in futures]
        failure = failed.exception()
        if not isinstance(failure, _Failure):
            raise failure  # a bug in the interpreter, not a state failure
        if distributed:
            raise _Failure("States.ExceedToleratedFailureThreshold",
                           f"The specified tolerated failure threshold was exceeded (child execution failed "
                           f"with {failure.error}: {failure.cause})")
        raise failure

    # -- other states --------------------------------------------------------------------
    def pass_result(self, state: dict[str, Any], raw: Any, context: dict[str, Any]) -> Any:
        data = self.input_path(state, raw, context)
        if "Parameters" in state:
            data = self.template(state["Parameters"], data, context, "Parameters")
        return deepcopy(state["Result"]) if "Result" in state else data

    def fail_state(self, state: dict[str, Any], raw: Any, context: dict[str, Any]) -> _Failure:
        error = state.get("Error", "") if "ErrorPath" not in state else \
            self.dynamic(state["ErrorPath"], raw, context, "ErrorPath")
        cause = state.get("Cause", "") if "CausePath" not in state else \
            self.dynamic(state["CausePath"], raw, context, "CausePath")
        return _Failure(str(error), str(cause))

    def choose(self, state: dict[str, Any], data: Any, context: dict[str, Any], label: str) -> str:
        for rule in state["Choices"]:
            if self.rule(rule, data, context):
                return rule["Next"]
        if "Default" in state:
            return state["Default"]
        raise _Failure("States.NoChoiceMatched", f"No Choice rule matched and Choice {label!r} has no Default.")

    def rule(self, rule: dict[str, Any], data: Any, context: dict[str, Any]) -> bool:
        if "And" in rule:
            return all(self.rule(r, data, context) for r in rule["And"])
        if "Or" in rule:
            return any(self.rule(r, data, context) for r in rule["Or"])
        if "Not" in rule:
            return not self.rule(rule["Not"], data, context)
        (op,) = set(rule) - {"Variable", "Next", "Comment"}
        expected = rule[op]
        path = _parse_path(rule["Variable"])
        try:
            value = _resolve(path, data, context)
        except _Missing:
            if op == "IsPresent":
                return expected is False
            raise _Failure("States.Runtime", f"Invalid path {rule['Variable']!r}: the Choice rule's Variable "
                                             f"does not resolve in the input.") from None
        if op.endswith("Path"):
            op, expected = op[:-4], self.path_value(expected, data, context, op)
        number = _is_number(value)
        checks: dict[str, Callable[[], bool]] = {
            "IsPresent": lambda: expected is True,
            "IsNull": lambda: (value is None) == expected,
            "IsNumeric": lambda: number == expected,
            "IsString": lambda: isinstance(value, str) == expected,
            "IsBoolean": lambda: isinstance(value, bool) == expected,
            "StringEquals": lambda: isinstance(value, str) and value == expected,
            "BooleanEquals": lambda: isinstance(value, bool) and value == expected,
            "NumericEquals": lambda: number and _is_number(expected) and value == expected,
            "NumericLessThan": lambda: number and value < expected,
            "NumericLessThanEquals": lambda: number and value <= expected,
            "NumericGreaterThan": lambda: number and value > expected,
            "NumericGreaterThanEquals": lambda: number and value >= expected,
        }
        return bool(checks[op]())

    # -- data flow -----------------------------------------------------------------------
    def finish(self, state: dict[str, Any], raw: Any, result: Any, context: dict[str, Any]) -> Any:
        """ResultSelector → ResultPath → OutputPath, then the payload check."""
        if "ResultSelector" in state:
            result = self.template(state["ResultSelector"], result, context, "ResultSelector")
        output = self.output_path(state, self.result_path(state.get("ResultPath", "$"), raw, result), context)
        _check_size(output, "state output")
        return output

    def input_path(self, state: dict[str, Any], raw: Any, context: dict[str, Any]) -> Any:
        if "InputPath" not in state:
            return raw
        return {} if state["InputPath"] is None else self.path_value(state["InputPath"], raw, context, "InputPath")

    def output_path(self, state: dict[str, Any], data: Any, context: dict[str, Any]) -> Any:
        if "OutputPath" not in state:
            return data
        return {} if state["OutputPath"] is None else self.path_value(state["OutputPath"], data, context, "OutputPath")

    @staticmethod
    def result_path(result_path: str | None, raw: Any, result: Any) -> Any:
        if result_path is None:
            return raw
        steps = _parse_path(result_path).steps
        if not steps:
            return result
        if not isinstance(raw, dict):
            raise _Failure("States.ResultPathMatchFailure",
                           f"Unable to apply ResultPath {result_path!r} to an input that is not an object.")
        output = deepcopy(raw)
        node = output
        for step in steps[:-1]:
            child = node.setdefault(step, {})
            if not isinstance(child, dict):
                raise _Failure("States.ResultPathMatchFailure",
                               f"Unable to apply ResultPath {result_path!r}: {step!r} is not an object.")
            node = child
        node[steps[-1]] = result
        return output

    def path_value(self, path_text: str, data: Any, context: dict[str, Any], what: str) -> Any:
        try:
            return _resolve(_parse_path(path_text), data, context)
        except _Missing:
            raise _Failure("States.Runtime", f"Invalid path {path_text!r} for {what}: it does not resolve in "
                                             f"{json.dumps(data)[:500]}") from None

    def template(self, template: Any, data: Any, context: dict[str, Any], what: str) -> Any:
        if isinstance(template, list):
            return [self.template(item, data, context, what) for item in template]
        if not isinstance(template, dict):
            return deepcopy(template)
        rendered = {}
        for key, value in template.items():
            if key.endswith(".$"):
                rendered[key[:-2]] = self.dynamic(value, data, context, f"{what} field {key!r}")
            else:
                rendered[key] = self.template(value, data, context, what)
        return rendered

    def dynamic(self, expression: str, data: Any, context: dict[str, Any], what: str) -> Any:
        if expression.startswith("$"):
            return deepcopy(self.path_value(expression, data, context, what))
        return self.call(_parse_intrinsic(expression), data, context, what)

    def call(self, call: _Call, data: Any, context: dict[str, Any], what: str) -> Any:
        args = []
        for arg in call.args:
            if isinstance(arg, _Call):
                args.append(self.call(arg, data, context, what))
            elif isinstance(arg, _Path):
                try:
                    args.append(deepcopy(_resolve(arg, data, context)))
                except _Missing:
                    raise _Failure("States.Runtime", f"{call.name} in {what}: a path argument does not "
                                                     f"resolve") from None
            else:
                args.append(arg.value)
        try:
            return _INTRINSIC_FUNCTIONS[call.name](*args)
        except (TypeError, ValueError) as exc:
            raise _Failure("States.IntrinsicFailure", f"{call.name} in {what}: {exc}") from None


def _format(template: str, *args: Any) -> str:
    pieces, values, pos = [], list(args), 0
    while pos < len(template):
        if template.startswith(("\\{", "\\}"), pos):
            pieces.append(template[pos + 1])
            pos += 2
        elif template.startswith("{}", pos):
            if not values:
                raise ValueError("more {} placeholders than arguments")
            value = values.pop(0)
            pieces.append(value if isinstance(value, str) else json.dumps(value, separators=(",", ":")))
            pos += 2
        else:
            pieces.append(template[pos])
            pos += 1
    if values:
        raise ValueError("more arguments than {} placeholders")
    return "".join(pieces)


def _string_to_json(text: str) -> Any:
    if not isinstance(text, str):
        raise TypeError("the argument must be a string")
    return json.loads(text)


_INTRINSIC_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "States.Format": _format,
    "States.StringToJson": _string_to_json,
    "States.JsonToString": lambda value: json.dumps(value, separators=(",", ":")),
    "States.Array": lambda *values: list(values),
}
