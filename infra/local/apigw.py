"""A local stand-in for an API Gateway HTTP API with a Lambda proxy integration.

:class:`ApiGatewayServer` listens on 127.0.0.1, turns every HTTP request into the event
that an HTTP API sends with payload format 2.0, calls the Lambda handler with a Lambda
context, and turns the handler's result into the HTTP response the way API Gateway
does. The event (:func:`build_event`) has ``cookies`` only when the request has a Cookie
header (which is then left out of ``headers``), lower-cased ``headers`` with repeated
headers joined by commas, ``queryStringParameters`` only when there is a query string
(repeated keys joined by commas, values percent-decoded, ``+`` kept as is), ``body`` only
when there is one (base64 with ``isBase64Encoded`` true unless the Content-Type is
textual), no ``pathParameters`` (the $default route has none) and no ``stageVariables``.
With an :class:`~.authorizers.Authorizer` other than ``none`` (template.yaml RequireAuth),
requests without credentials are refused as the HTTP API refuses them and the event gets
``requestContext.authorizer`` (see :mod:`.authorizers`: locally, signatures are not verified).

Responses: a result with ``statusCode`` is used as given (``headers``, ``cookies`` as
``Set-Cookie`` headers, ``body`` base64-decoded when ``isBase64Encoded``); any other
JSON result is the format-2.0 shorthand (200, ``application/json``, the JSON text as
body). ``multiValueHeaders`` is not part of format 2.0 and API Gateway ignores it, so it
is ignored here too (with a warning in the log).

Failures are answered as an HTTP API answers them, which differs from REST APIs:

* handler exception, a result that is not JSON or not a valid response, or a response
  above Lambda's 6 MB invocation payload limit → 500 ``{"message":"Internal Server Error"}``
  (AWS documents this body for HTTP API Lambda integration errors; REST APIs answer 502
  ``Internal server error``);
* no answer within the integration timeout (default 30 s, the HTTP API maximum) → 503
  ``{"message":"Service Unavailable"}`` (what HTTP APIs answer on an integration
  timeout; REST APIs answer 504 ``Endpoint request timed out``). The handler thread
  cannot be killed and runs on in the background, as a Lambda would until its timeout;
* a request body above API Gateway's 10 MB payload limit → 413
  ``{"message":"Request Entity Too Large"}``; an event above Lambda's 6 MB invocation
  limit is refused the same way (the exact status AWS gives for that case is not
  documented).

Requests the gateway never passes on are answered here, always as JSON ``{"message"}``
(never the HTML pages of :mod:`http.server`): a method outside the ones an HTTP API
routes (:data:`ROUTED_METHODS`, e.g. TRACE, CONNECT, QUERY) → 405 with ``Allow``; a
malformed request line, header block, ``Content-Length`` (negative, not a number) or
chunk size → 400. Every socket read has a time-out (:data:`READ_TIMEOUT_SECONDS`), so a
client that stops sending mid-request loses its connection instead of holding a thread.
"""
from __future__ import annotations

import base64
import contextlib
import json
import logging
import secrets
import threading
import time
from datetime import datetime, timezone
from http.server import ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import unquote

from .authorizers import Authorizer
from .lambda_context import LOCAL_ACCOUNT_ID, LambdaContext
from .serving import BackgroundServer, BodyTooLarge, MalformedRequest, RequestHandler

__all__ = ["ApiGatewayServer", "build_event", "MAX_API_PAYLOAD_BYTES", "MAX_LAMBDA_PAYLOAD_BYTES"]

LOGGER = logging.getLogger(__name__)

#: API Gateway's request and response payload limit.
MAX_API_PAYLOAD_BYTES = 10 * 1024 * 1024
#: Lambda's limit on a synchronous invocation's request and response payload.
MAX_LAMBDA_PAYLOAD_BYTES = 6 * 1024 * 1024
#: API Gateway HTTP APIs give up on an integration after at most 30 s.
DEFAULT_INTEGRATION_TIMEOUT_SECONDS = 30.0

#: Seconds any one read from a client socket may wait.
READ_TIMEOUT_SECONDS = 30.0
#: The methods an HTTP API's routes (ANY included) match.
ROUTED_METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")

_INTERNAL_ERROR = (500, {"message": "Internal Server Error"})
_BAD_REQUEST = (400, {"message": "Bad Request"})
_TIMED_OUT = (503, {"message": "Service Unavailable"})
_TOO_LARGE = (413, {"message": "Request Entity Too Large"})
_TEXT_TYPES = ("application/json", "application/javascript", "application/xml", "application/x-yaml",
               "application/yaml")

Handler = Callable[[dict[str, Any], LambdaContext], Any]


class _InvalidResponse(ValueError):
    """The handler's result is not a response API Gateway can send."""


def _is_text(content_type: str | None) -> bool:
    """Whether a body of this Content-Type reaches Lambda as text rather than base64."""
    if not content_type:
        return False
    media = content_type.split(";", 1)[0].strip().lower()
    return media.startswith("text/") or media in _TEXT_TYPES or media.endswith(("+json", "+xml"))


def build_event(
    *,
    method: str,
    target: str,
    protocol: str,
    headers: list[tuple[str, str]],
    body: bytes,
    source_ip: str,
    api_id: str = "local",
    account_id: str = LOCAL_ACCOUNT_ID,
    authorizer: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The payload-format-2.0 event for one request (``target`` is the path plus query;
    ``authorizer``: what the route's authorizer established, see :mod:`.authorizers`)."""
    raw_path, _, raw_query = target.partition("?")
    joined: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in headers:
        name = name.lower()
        if name == "cookie":
            cookies.extend(part.strip() for part in value.split(";") if part.strip())
            continue
        joined[name] = f"{joined[name]},{value}" if name in joined else value
    host = joined.get("host", "localhost")
    now = datetime.now(timezone.utc)
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": raw_path,
        "rawQueryString": raw_query,
    }
    if cookies:
        event["cookies"] = cookies
    event["headers"] = joined
    if raw_query:
        query: dict[str, str] = {}
        for key, _, value in (pair.partition("=") for pair in raw_query.split("&") if pair):
            key, value = unquote(key), unquote(value)
            query[key] = f"{query[key]},{value}" if key in query else value
        event["queryStringParameters"] = query
    event["requestContext"] = {
        "accountId": account_id,
        "apiId": api_id,
        "domainName": host,
        "domainPrefix": host.split(".", 1)[0],
        "http": {
            "method": method,
            "path": raw_path,
            "protocol": protocol,
            "sourceIp": source_ip,
            "userAgent": joined.get("user-agent", ""),
        },
        "requestId": base64.b64encode(secrets.token_bytes(10)).decode().rstrip("="),
        "routeKey": "$default",
        "stage": "$default",
        "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
        "timeEpoch": int(now.timestamp() * 1000),
    }
    if authorizer is not None:
        event["requestContext"]["authorizer"] = authorizer
    text = _is_text(joined.get("content-type"))
    if body:
        event["body"] = body.decode("utf-8", errors="replace") if text else base64.b64encode(body).decode()
    event["isBase64Encoded"] = bool(body) and not text
    return event


def _response_parts(result: Any) -> tuple[int, list[tuple[str, str]], bytes]:
    """Status, headers and body bytes of a handler result, as API Gateway reads them."""
    if not (isinstance(result, dict) and "statusCode" in result):
        return 200, [("content-type", "application/json")], json.dumps(result).encode()
    status = result["statusCode"]
    if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
        raise _InvalidResponse(f"statusCode must be an integer HTTP status, not {status!r}")
    headers = result.get("headers") or {}
    cookies = result.get("cookies") or []
    if not isinstance(headers, dict) or not isinstance(cookies, list):
        raise _InvalidResponse("headers must be an object and cookies a list")
    if "multiValueHeaders" in result:
        LOGGER.warning("multiValueHeaders is not part of payload format 2.0; API Gateway ignores it")
    pairs = [(str(name), str(value)) for name, value in headers.items()]
    pairs += [("set-cookie", str(cookie)) for cookie in cookies]
    body = result.get("body")
    if body is None:
        return status, pairs, b""
    if not isinstance(body, str):
        raise _InvalidResponse("body must be a string")
    if result.get("isBase64Encoded"):
        try:
            return status, pairs, base64.b64decode(body, validate=True)
        except ValueError as exc:
            raise _InvalidResponse(f"body is not valid base64: {exc}") from None
    return status, pairs, body.encode()


class ApiGatewayServer(BackgroundServer):
    """An HTTP server on ``host`` that calls ``handler(event, context)`` for every request;
    serving from construction until :meth:`~.serving.BackgroundServer.stop` (or the end of a
    ``with`` block), at :attr:`~.serving.BackgroundServer.endpoint`.

    ``timeout_seconds`` is the integration timeout; ``function_name`` and ``memory_mb``
    describe the function in the Lambda context. ``one_at_a_time`` gives the handler one
    event at a time, as a Lambda execution environment does (AWS meets concurrent requests
    with more environments, each its own process; here they would share the handler's
    module globals, and powertools' resolver keeps the current event on the app object, so
    concurrent calls would see each other's requests); the wait counts against the
    integration timeout.
    """

    def __init__(
        self,
        handler: Handler,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        timeout_seconds: float = DEFAULT_INTEGRATION_TIMEOUT_SECONDS,
        function_name: str = "cubecut-api",
        memory_mb: int = 3008,
        api_id: str = "local",
        read_timeout_seconds: float = READ_TIMEOUT_SECONDS,
        one_at_a_time: bool = False,
        authorizer: Authorizer | None = None,
    ) -> None:
        self.handler = handler
        self.authorizer = authorizer or Authorizer()
        self._environment = threading.Lock() if one_at_a_time else contextlib.nullcontext()
        self.timeout_seconds = timeout_seconds
        self.function_name, self.memory_mb, self.api_id = function_name, memory_mb, api_id
        super().__init__(ThreadingHTTPServer((host, port), self._request_handler_class(read_timeout_seconds)), "apigw")

    # -- one request ---------------------------------------------------------------------
    def invoke(self, event: dict[str, Any]) -> tuple[int, list[tuple[str, str]], bytes]:
        """Run the handler on an event like the integration does; return status, headers, body."""
        payload = json.dumps(event)
        if len(payload.encode()) > MAX_LAMBDA_PAYLOAD_BYTES:
            return self._error(_TOO_LARGE)
        context = LambdaContext(self.function_name, memory_mb=self.memory_mb, timeout_seconds=self.timeout_seconds)
        outcome: dict[str, Any] = {}

        def call() -> None:
            try:
                with self._environment:
                    outcome["result"] = json.dumps(self.handler(json.loads(payload), context))
            except Exception:  # noqa: BLE001 - a crashing handler is an integration error
                LOGGER.exception("handler %s failed (request %s)", self.function_name, context.aws_request_id)
                outcome["failed"] = True

        worker = threading.Thread(target=call, name=f"lambda-{context.aws_request_id}", daemon=True)
        worker.start()
        worker.join(self.timeout_seconds)
        if worker.is_alive():
            LOGGER.error("handler %s did not answer within %.1f s", self.function_name, self.timeout_seconds)
            return self._error(_TIMED_OUT)
        if outcome.get("failed") or len(outcome["result"].encode()) > MAX_LAMBDA_PAYLOAD_BYTES:
            return self._error(_INTERNAL_ERROR)
        try:
            return _response_parts(json.loads(outcome["result"]))
        except _InvalidResponse as exc:
            LOGGER.error("handler %s returned an invalid response: %s", self.function_name, exc)
            return self._error(_INTERNAL_ERROR)

    @staticmethod
    def _error(error: tuple[int, dict[str, str]]) -> tuple[int, list[tuple[str, str]], bytes]:
        status, body = error
        return status, [("content-type", "application/json")], json.dumps(body).encode()

    def _request_handler_class(self, read_timeout_seconds: float) -> type[RequestHandler]:
        gateway = self

        class _Handler(RequestHandler):
            timeout = read_timeout_seconds  # applied to the socket by StreamRequestHandler

            def _send(self, status: int, headers: list[tuple[str, str]], payload: bytes) -> None:
                self.send_response(status)
                for name, value in headers:
                    if name.lower() not in {"content-length", "connection", "transfer-encoding"}:
                        self.send_header(name, value)
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)

            def _serve(self) -> None:
                started = time.monotonic()
                try:
                    body = self.read_body(MAX_API_PAYLOAD_BYTES)
                except MalformedRequest as exc:
                    LOGGER.debug("apigw: %s", exc)
                    self.close_connection = True
                    self._send(*gateway._error(_BAD_REQUEST))
                    return
                except BodyTooLarge:
                    self._send(*gateway._error(_TOO_LARGE))
                    return
                identity, refusal = gateway.authorizer.authorize(
                    {name.lower(): value for name, value in self.headers.items()})
                if refusal is not None:
                    self._send(*gateway._error(refusal))
                    return
                event = build_event(method=self.command, target=self.path, protocol=self.request_version,
                                    headers=list(self.headers.items()), body=body,
                                    source_ip=self.client_address[0], api_id=gateway.api_id, authorizer=identity)
                status, headers, payload = gateway.invoke(event)
                self._send(status, [*headers, ("apigw-requestid", event["requestContext"]["requestId"])], payload)
                LOGGER.debug("%s %s -> %d in %.3f s", self.command, self.path, status, time.monotonic() - started)

            do_DELETE = do_GET = do_HEAD = do_OPTIONS = do_PATCH = do_POST = do_PUT = _serve

            def __getattr__(self, name: str) -> Any:
                """``do_TRACE``, ``do_QUERY``, ...: methods no HTTP API route matches."""
                if name.startswith("do_"):
                    return self._not_routed
                raise AttributeError(name)

            def _not_routed(self) -> None:
                self.close_connection = True  # its body, if any, is left unread
                self._send(405, [("content-type", "application/json"), ("allow", ", ".join(ROUTED_METHODS))],
                           json.dumps({"message": "Method Not Allowed"}).encode())

            def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
                """http.server's own errors (bad request line, headers too long ...) as JSON."""
                self.close_connection = True
                if self.request_version == "HTTP/0.9":  # an unparsed request line: answer with a status line
                    self.request_version = "HTTP/1.1"
                text = message or self.responses.get(code, ("Error",))[0]
                with contextlib.suppress(OSError):
                    self._send(code, [("content-type", "application/json")], json.dumps({"message": text}).encode())

        return _Handler
