"""The local API Gateway (HTTP API, payload 2.0) adapter, driven over real HTTP."""
from __future__ import annotations

import base64
import http.client
import json
import time
import urllib.error
import urllib.request
from typing import Any, Iterator

import pytest
from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response

from cubecut_infra.local.apigw import MAX_API_PAYLOAD_BYTES, MAX_LAMBDA_PAYLOAD_BYTES, ApiGatewayServer

app = APIGatewayHttpResolver()
logger = Logger(service="apigw-test")
EVENTS: list[dict[str, Any]] = []
TIMEOUT = 0.5


@app.get("/echo")
def echo() -> dict[str, Any]:
    event = app.current_event
    return {"query": event.query_string_parameters, "raw": event.raw_query_string,
            "a": event.get_query_string_value("a"), "cookies": event.cookies}


@app.post("/reverse")
def reverse() -> Response:
    event = app.current_event
    # Powertools' decoded_body assumes UTF-8 text; binary bodies are decoded by hand.
    data = base64.b64decode(event.body) if event.is_base64_encoded else event.body.encode()
    return Response(200, "application/octet-stream", data[::-1])


@app.get("/boom")
def boom() -> dict[str, Any]:
    raise RuntimeError("handler bug")


@app.get("/slow")
def slow() -> dict[str, Any]:
    time.sleep(TIMEOUT * 3)
    return {}


@app.get("/huge")
def huge() -> Response:
    return Response(200, "text/plain", "x" * MAX_LAMBDA_PAYLOAD_BYTES)


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    EVENTS.append(event)
    if event["rawPath"] == "/shorthand":
        return {"plain": "dict", "n": 1}
    if event["rawPath"] == "/cookies":
        return {"statusCode": 201, "headers": {"x-one": "1"}, "cookies": ["a=1; Path=/", "b=2"], "body": "made"}
    return app.resolve(event, context)


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    with ApiGatewayServer(handler, timeout_seconds=TIMEOUT) as server:
        yield server.endpoint


def get(url: str, **kwargs: Any) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, **kwargs)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers.items()), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers.items()), error.read()


def test_query_strings_with_repeated_keys(base_url: str) -> None:
    status, _, body = get(f"{base_url}/echo?a=1&a=2&b=x%20y&c=1%2B1&empty=")
    assert status == 200
    assert json.loads(body) == {"query": {"a": "1,2", "b": "x y", "c": "1+1", "empty": ""},
                                "raw": "a=1&a=2&b=x%20y&c=1%2B1&empty=", "a": "1,2", "cookies": []}


def test_event_shape(base_url: str) -> None:
    status, _, _ = get(f"{base_url}/echo", headers={"Cookie": "s=1; t=2", "User-Agent": "tester/1", "X-Trace": "abc"})
    assert status == 200
    event = EVENTS[-1]
    assert event["version"] == "2.0" and event["routeKey"] == "$default"
    assert event["rawPath"] == "/echo" and event["rawQueryString"] == ""
    assert event["cookies"] == ["s=1", "t=2"] and "cookie" not in event["headers"]
    assert event["headers"]["x-trace"] == "abc" and all(name == name.lower() for name in event["headers"])
    assert "queryStringParameters" not in event and "body" not in event and "pathParameters" not in event
    assert event["isBase64Encoded"] is False
    context = event["requestContext"]
    assert context["http"] == {"method": "GET", "path": "/echo", "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1",
                               "userAgent": "tester/1"}
    assert context["stage"] == "$default" and context["routeKey"] == "$default"
    assert abs(context["timeEpoch"] / 1000 - time.time()) < 60 and context["time"].endswith("+0000")
    assert {"accountId", "apiId", "domainName", "domainPrefix", "requestId"} <= set(context)


def test_repeated_headers_are_comma_joined(base_url: str) -> None:
    host, port = base_url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    connection.putrequest("GET", "/echo")
    connection.putheader("X-Tag", "one")
    connection.putheader("X-Tag", "two")
    connection.endheaders()
    assert connection.getresponse().status == 200
    connection.close()
    assert EVENTS[-1]["headers"]["x-tag"] == "one,two"


def test_binary_bodies_travel_as_base64(base_url: str) -> None:
    payload = bytes(range(256)) * 4
    status, headers, body = get(f"{base_url}/reverse", data=payload,
                                headers={"Content-Type": "application/octet-stream"})
    assert status == 200 and body == payload[::-1]
    assert headers["Content-Type"] == "application/octet-stream"
    event = EVENTS[-1]
    assert event["isBase64Encoded"] is True and base64.b64decode(event["body"]) == payload


def test_text_bodies_travel_as_text(base_url: str) -> None:
    status, _, body = get(f"{base_url}/reverse", data=b'{"k": "v"}', headers={"Content-Type": "application/json"})
    assert status == 200 and body == b'}"v" :"k"{'
    assert EVENTS[-1]["isBase64Encoded"] is False and EVENTS[-1]["body"] == '{"k": "v"}'


def test_shorthand_response_and_cookies(base_url: str) -> None:
    status, headers, body = get(f"{base_url}/shorthand")
    assert (status, headers["content-type"], json.loads(body)) == (200, "application/json", {"plain": "dict", "n": 1})
    host, port = base_url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    connection.request("GET", "/cookies")
    response = connection.getresponse()
    assert (response.status, response.read()) == (201, b"made")
    assert response.getheader("x-one") == "1" and response.headers.get_all("set-cookie") == ["a=1; Path=/", "b=2"]
    connection.close()


def test_handler_exception_is_an_internal_server_error(base_url: str) -> None:
    status, headers, body = get(f"{base_url}/boom")
    assert (status, json.loads(body)) == (500, {"message": "Internal Server Error"})
    assert "handler bug" not in body.decode()


def test_integration_timeout(base_url: str) -> None:
    started = time.monotonic()
    status, _, body = get(f"{base_url}/slow")
    assert (status, json.loads(body)) == (503, {"message": "Service Unavailable"})
    assert time.monotonic() - started < TIMEOUT * 3


def test_payload_limits(base_url: str) -> None:
    status, _, body = get(f"{base_url}/reverse", data=b"x" * (MAX_API_PAYLOAD_BYTES + 1),
                          headers={"Content-Type": "text/plain"})
    assert (status, json.loads(body)) == (413, {"message": "Request Entity Too Large"})
    status, _, body = get(f"{base_url}/huge")  # above Lambda's 6 MB response limit
    assert (status, json.loads(body)) == (500, {"message": "Internal Server Error"})


def _raw(base_url: str, request: bytes, timeout: float = 10) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes; the status, headers and body of the answer (read to the end)."""
    import socket

    host, port = base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(request)
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
            head, _, rest = data.partition(b"\r\n\r\n")
            lengths = [int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")]
            if lengths and len(rest) >= lengths[0]:
                break
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in header_lines)}
    return int(status_line.split()[1]), headers, body


def test_unknown_route_is_json_404(base_url: str) -> None:
    status, headers, body = get(f"{base_url}/no/such/route")
    assert status == 404 and headers["Content-Type"] == "application/json"
    assert "message" in json.loads(body)


@pytest.mark.parametrize("method", ["TRACE", "QUERY", "CONNECT", "BREW"])
def test_methods_no_route_matches_are_json_405_with_allow(base_url: str, method: str) -> None:
    status, headers, body = _raw(base_url, f"{method} /echo HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert status == 405 and headers["content-type"] == "application/json"
    assert json.loads(body) == {"message": "Method Not Allowed"}
    assert set(headers["allow"].split(", ")) == {"DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT"}


@pytest.mark.parametrize("framing", [b"Content-Length: -1\r\n", b"Content-Length: abc\r\n",
                                     b"Transfer-Encoding: chunked\r\n"], ids=["negative", "text", "bad chunk"])
def test_bad_framing_is_json_400_at_once(base_url: str, framing: bytes) -> None:
    body = b"zz\r\nhello\r\n0\r\n\r\n" if b"chunked" in framing else b""
    started = time.monotonic()
    status, headers, answer = _raw(base_url, b"POST /reverse HTTP/1.1\r\nHost: x\r\n" + framing + b"\r\n" + body)
    assert (status, json.loads(answer)) == (400, {"message": "Bad Request"})
    assert headers["content-type"] == "application/json" and time.monotonic() - started < 5


def test_malformed_request_line_is_json(base_url: str) -> None:
    status, headers, body = _raw(base_url, b"GET /echo HTTP/1.1 extra\r\nHost: x\r\n\r\n")
    assert status == 400 and headers["content-type"] == "application/json" and "message" in json.loads(body)


def test_reads_time_out_instead_of_holding_the_connection() -> None:
    """A client that promises 100 bytes and sends 10 loses the connection after the read
    time-out; the server keeps answering others."""
    import socket

    with ApiGatewayServer(handler, read_timeout_seconds=0.5) as server:
        host, port = server.endpoint.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(b"POST /reverse HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789")
            started = time.monotonic()
            try:
                while sock.recv(65536):  # a 400, then the close, or the close alone
                    pass
            except ConnectionResetError:
                pass
            assert time.monotonic() - started < 5
        with socket.create_connection((host, int(port)), timeout=10) as idle:  # sends nothing at all
            started = time.monotonic()
            assert idle.recv(65536) == b"" and time.monotonic() - started < 5
        assert get(f"{server.endpoint}/echo")[0] == 200


@pytest.mark.parametrize("one_at_a_time", [True, False])
def test_one_event_at_a_time_like_a_lambda_environment(one_at_a_time: bool) -> None:
    """With ``one_at_a_time`` (the local stack's API) the handler never runs two events at
    once, as one Lambda execution environment never does; without it requests overlap."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    lock, running, most = threading.Lock(), [0], [0]

    def counting(event: dict[str, Any], context: Any) -> dict[str, Any]:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.2)
        with lock:
            running[0] -= 1
        return {"statusCode": 200, "body": "ok"}

    with ApiGatewayServer(counting, one_at_a_time=one_at_a_time) as server:
        with ThreadPoolExecutor(4) as pool:
            statuses = list(pool.map(lambda _: get(f"{server.endpoint}/x")[0], range(4)))
    assert statuses == [200] * 4
    assert most[0] == 1 if one_at_a_time else most[0] > 1
