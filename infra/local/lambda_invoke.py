"""Lambda's Invoke API for local functions, in front of moto's server.

:class:`LambdaInvokeApp` is a WSGI application that answers the public REST contract
``POST /2015-03-31/functions/{FunctionName}/invocations`` (what ``boto3.client("lambda")
.invoke`` and Step Functions' Lambda tasks send) by calling the registered Python handler
with a fresh :class:`~cubecut_infra.local.lambda_context.LambdaContext`, and hands every
other request to moto's application. It answers as Lambda does:

* success: 200, the handler's result as JSON, ``X-Amz-Executed-Version: $LATEST``;
* a handler exception: 200 with ``X-Amz-Function-Error: Unhandled`` and the Python
  runtime's error document ``{errorMessage, errorType, requestId, stackTrace}``, where
  ``errorType`` is the exception's class name (what a Retrier's ``ErrorEquals`` matches);
* a result that is not JSON: ``Runtime.MarshalError``; one above 6 MB:
  ``Function.ResponseSizeTooLarge`` (both as function errors, like Lambda);
* unknown function 404 ``ResourceNotFoundException``, a payload that is not JSON 400
  ``InvalidRequestContentException``, more invocations at once than the function's
  reserved concurrency 429 ``TooManyRequestsException``; an invocation type other than
  ``RequestResponse`` 400 ``InvalidParameterValueException`` (not needed locally).

Functions are registered per process, as moto keeps its state: every endpoint in the
process serves all of them, because moto's engine reaches "the" moto server through one
process-wide ``MOTO_PORT`` (see :mod:`~cubecut_infra.local.sfn`). Names must therefore be
unique among the stacks running in one process.

* a handler still running at the function's timeout: the function error Lambda reports,
  ``Sandbox.Timedout`` ("Task timed out after N seconds"), and the slot is free again.

Not emulated: the timed-out handler is not stopped (a thread cannot be killed: it runs on,
and its result is dropped); there is no sandbox, so all functions share this process and
its environment.
"""
from __future__ import annotations

import json
import re
import threading
import traceback
from dataclasses import dataclass
from typing import Any, Callable, Iterable
from urllib.parse import unquote

from werkzeug.wrappers import Request, Response

from .lambda_context import LOCAL_ACCOUNT_ID, LOCAL_REGION, LambdaContext

__all__ = ["LambdaInvokeApp", "MAX_RESPONSE_BYTES", "TIMEOUT_ERROR"]

Handler = Callable[[Any, LambdaContext], Any]
WSGIApp = Callable[[dict, Callable], Iterable[bytes]]
#: Lambda's limit on a synchronous invocation's response payload.
MAX_RESPONSE_BYTES = 6 * 1024 * 1024
#: The errorType of an invocation that outlived the function's timeout, as Lambda reports it.
TIMEOUT_ERROR = "Sandbox.Timedout"
_INVOKE_PATH = re.compile(r"^/2015-03-31/functions/([^/]+)/invocations$")


@dataclass
class _Function:
    name: str
    arn: str
    handler: Handler
    memory_mb: int
    timeout_s: float
    reserved_concurrency: int | None
    running: int = 0
    invocations: int = 0
    max_running: int = 0


_FUNCTIONS: dict[str, _Function] = {}
_LOCK = threading.Lock()


class LambdaInvokeApp:
    """The Invoke API for the process's registered functions, ``fallback`` for the rest."""

    def __init__(self, fallback: WSGIApp) -> None:
        self._fallback = fallback

    def add(self, name: str, handler: Handler, *, memory_mb: int = 128, timeout_s: float = 3.0,
            reserved_concurrency: int | None = None) -> str:
        """Register (or replace, with fresh counts) function ``name``; returns its ARN."""
        arn = f"arn:aws:lambda:{LOCAL_REGION}:{LOCAL_ACCOUNT_ID}:function:{name}"
        with _LOCK:
            _FUNCTIONS[name] = _Function(name, arn, handler, memory_mb, timeout_s, reserved_concurrency)
        return arn

    def remove(self, name: str) -> None:
        with _LOCK:
            _FUNCTIONS.pop(name, None)

    def counts(self) -> tuple[dict[str, int], dict[str, int]]:
        """Per function ARN, invoked at least once: invocations, and the most running at once."""
        with _LOCK:
            invoked = [f for f in _FUNCTIONS.values() if f.invocations]
            return {f.arn: f.invocations for f in invoked}, {f.arn: f.max_running for f in invoked}

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        match = _INVOKE_PATH.match(environ.get("PATH_INFO", ""))
        if match is None or environ.get("REQUEST_METHOD") != "POST":
            return self._fallback(environ, start_response)
        request = Request(environ)
        status, headers, body = self.invoke(unquote(match.group(1)), request.get_data(),
                                            request.headers.get("X-Amz-Invocation-Type", "RequestResponse"))
        return Response(body, status, headers, content_type="application/json")(environ, start_response)

    def invoke(self, function_name: str, payload: bytes,
               invocation_type: str = "RequestResponse") -> tuple[int, dict[str, str], bytes]:
        """One invocation: ``(HTTP status, headers, body)`` as Lambda's API answers it.
        ``function_name`` is a name, a full or partial ARN, with or without a qualifier."""
        parts = function_name.split(":")
        function = _FUNCTIONS.get(parts[parts.index("function") + 1] if "function" in parts[:-1] else parts[0])
        if function is None:
            return _service_error(404, "ResourceNotFoundException", f"Function not found: {function_name}")
        if invocation_type != "RequestResponse":
            return _service_error(400, "InvalidParameterValueException",
                                  f"invocation type {invocation_type} is not served locally")
        try:
            event = json.loads(payload) if payload.strip() else {}
        except ValueError as exc:
            return _service_error(400, "InvalidRequestContentException",
                                  f"Could not parse request body into json: {exc}")
        with _LOCK:
            if function.reserved_concurrency is not None and function.running >= function.reserved_concurrency:
                return _service_error(429, "TooManyRequestsException", "Rate Exceeded.",
                                      Reason="ReservedFunctionConcurrentInvocationLimitExceeded")
            function.running += 1
            function.invocations += 1
            function.max_running = max(function.max_running, function.running)
        try:
            return self._run(function, event)
        finally:
            with _LOCK:
                function.running -= 1

    def _run(self, function: _Function, event: Any) -> tuple[int, dict[str, str], bytes]:
        context = LambdaContext(function.name, memory_mb=function.memory_mb, timeout_seconds=function.timeout_s,
                                invoked_function_arn=function.arn)
        headers = {"X-Amz-Executed-Version": "$LATEST", "x-amzn-RequestId": context.aws_request_id}
        outcome: dict[str, Any] = {}

        def call() -> None:
            try:
                outcome["result"] = function.handler(event, context)
            except Exception as exc:  # noqa: BLE001 - every handler error becomes Lambda's error document
                outcome["error"] = exc

        worker = threading.Thread(target=call, daemon=True, name=f"lambda-{function.name}")
        worker.start()
        worker.join(function.timeout_s)
        stack: list[str] = []
        if worker.is_alive():
            error_type, message = TIMEOUT_ERROR, f"Task timed out after {function.timeout_s:.2f} seconds"
        elif "error" in outcome:
            exc = outcome["error"]
            error_type, message = type(exc).__name__, str(exc)
            stack = traceback.format_list(traceback.extract_tb(exc.__traceback__))
        else:
            try:
                body = json.dumps(outcome["result"]).encode()
            except (TypeError, ValueError) as exc:
                error_type, message = "Runtime.MarshalError", f"Unable to marshal response: {exc}"
            else:
                if len(body) <= MAX_RESPONSE_BYTES:
                    return 200, headers, body
                error_type = "Function.ResponseSizeTooLarge"
                message = f"Response payload size exceeded maximum allowed payload size ({MAX_RESPONSE_BYTES} bytes)."
        document = {"errorMessage": message, "errorType": error_type, "requestId": context.aws_request_id,
                    "stackTrace": stack}
        return 200, {**headers, "X-Amz-Function-Error": "Unhandled"}, json.dumps(document).encode()


def _service_error(status: int, code: str, message: str, **extra: str) -> tuple[int, dict[str, str], bytes]:
    return status, {"x-amzn-ErrorType": code}, json.dumps({"Type": "User", "message": message, **extra}).encode()
