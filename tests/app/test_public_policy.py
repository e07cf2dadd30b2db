"""Who may do what (issue 25, finding 2, and the in-flight caps of finding 1), on the local
stack under each RequireAuth mode: every route answers anonymous and authenticated callers
as docs/api.md ("Who may do what") says; a bulk job is its owner's, or its token holder's.
"""
from __future__ import annotations

import base64
import json
import threading
import urllib.error
import urllib.request

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from cubecut_app.app import ROUTE_METHODS
from cubecut_infra.local.stack import LocalStack

pytestmark = pytest.mark.slow
CATALOG = "ra,dec\n10,20\n11,21\n"
GATE = threading.Event()


def _held_plan(name, handler):
    """Bulk Plans wait for GATE, so the test's jobs stay RUNNING while it counts them."""
    if name != "BulkPlan":
        return handler

    def held(event, context):
        GATE.wait(60)
        return handler(event, context)

    return held


def _jwt(sub: str, iss: str = "https://issuer.example", aud: str = "cubecut") -> str:
    def part(value: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    return f"{part({'alg': 'none'})}.{part({'sub': sub, 'iss': iss, 'aud': aud})}.c2ln"


def _headers(mode: str, who: str | None, method: str, url: str, data: bytes | None) -> dict[str, str]:
    headers = {"Content-Type": "application/json"}
    if who is None or mode == "none":
        return headers
    if mode == "jwt":
        return {**headers, "Authorization": f"Bearer {_jwt(who)}"}
    request = AWSRequest(method=method, url=url, data=data or b"", headers=headers)
    SigV4Auth(Credentials(f"AKIA{who.upper()}", "secret"), "execute-api", "us-east-1").add_auth(request)
    return dict(request.headers.items())


def call(stack: LocalStack, method: str, path: str, who: str | None = None,
         payload: dict | None = None) -> tuple[int, dict]:
    url = stack.api_url + path
    data = None if payload is None else json.dumps(payload).encode()
    mode = stack.template.parameters["RequireAuth"]
    request = urllib.request.Request(url, data=data, method=method, headers=_headers(mode, who, method, url, data))
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            status, body = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, body = error.code, error.read()
    try:
        return status, json.loads(body)
    except ValueError:
        return status, {}


@pytest.fixture(scope="module", params=["none", "iam", "jwt"])
def stack(request):
    GATE.clear()
    parameters = {"RequireAuth": request.param, "JwtIssuer": "https://issuer.example", "JwtAudience": "cubecut"}
    with LocalStack(bucket=f"cubecut-policy-{request.param}", parameters=parameters, wrap=_held_plan) as running:
        yield running
        GATE.set()


def test_every_route_answers_each_caller_as_the_mode_says(stack):
    """none: everyone reaches every route; iam/jwt: the gateway refuses anonymous callers
    (403 / 401) on every route and passes authenticated ones to the app."""
    mode = stack.template.parameters["RequireAuth"]
    refusal = {"iam": 403, "jwt": 401}.get(mode)
    for path, methods in sorted(ROUTE_METHODS.items()):
        for method in sorted(methods - {"HEAD", "OPTIONS"}):
            anonymous, _ = call(stack, method, path)
            known, _ = call(stack, method, path, who="alice")
            if path == "/v1/bulk" and method == "POST":
                continue  # below
            assert known not in (401, 403), (method, path, known)
            assert anonymous == (refusal or known), (method, path, anonymous, known)


def test_starting_a_bulk_job_needs_an_identity_unless_opened(stack, monkeypatch):
    mode = stack.template.parameters["RequireAuth"]
    status, answer = call(stack, "POST", "/v1/bulk", payload={"catalog": CATALOG})
    if mode == "none":
        assert status == 403 and "authenticated caller" in answer["message"], answer
        monkeypatch.setenv("CUBECUT_BULK_ANONYMOUS", "true")  # BulkAllowAnonymous=true
        status, answer = call(stack, "POST", "/v1/bulk", payload={"catalog": CATALOG})
        assert status == 202, answer
    else:
        assert status == {"iam": 403, "jwt": 401}[mode]
        assert call(stack, "POST", "/v1/bulk", who="alice", payload={"catalog": CATALOG})[0] == 202


def test_a_job_is_its_owners_or_its_token_holders(stack, monkeypatch):
    mode = stack.template.parameters["RequireAuth"]
    monkeypatch.setenv("CUBECUT_BULK_ANONYMOUS", "true")
    monkeypatch.setenv("CUBECUT_BULK_MAX_PER_CALLER", "10")
    owner = None if mode == "none" else "bob"
    status, started = call(stack, "POST", "/v1/bulk", who=owner, payload={"catalog": CATALOG})
    assert status == 202, started
    job, token = started["job"], started["token"]
    assert len(base64.urlsafe_b64decode(token + "=")) == 32  # 256 random bits
    assert started["status_url"] == f"/v1/bulk?job={job}&token={token}"
    assert call(stack, "GET", started["status_url"], who="mallory")[0] == 200  # the capability
    status, answer = call(stack, "GET", f"/v1/bulk?job={job}", who="mallory")
    assert status == 404 and "of yours" in answer["message"], answer  # the id alone is not enough
    wrong = "A" * 43
    assert call(stack, "GET", f"/v1/bulk?job={job}&token={wrong}", who="mallory")[0] == 404
    if owner is not None:
        assert call(stack, "GET", f"/v1/bulk?job={job}", who="bob")[0] == 200  # the owner needs no token


def test_jobs_in_flight_are_capped_globally_and_per_caller(stack, monkeypatch):
    mode = stack.template.parameters["RequireAuth"]
    monkeypatch.setenv("CUBECUT_BULK_ANONYMOUS", "true")
    running = len(stack.sfn.client().list_executions(stateMachineArn=stack.bulk_state_machine_arn,
                                                     statusFilter="RUNNING")["executions"])
    if mode != "none":
        monkeypatch.setenv("CUBECUT_BULK_MAX_PER_CALLER", "1")
        assert call(stack, "POST", "/v1/bulk", who="carol", payload={"catalog": CATALOG})[0] == 202
        status, answer = call(stack, "POST", "/v1/bulk", who="carol", payload={"catalog": CATALOG})
        assert status == 429 and "1 of your bulk jobs are running, the most one caller may run at once is 1" \
            in answer["message"], answer
        running += 1
        assert call(stack, "POST", "/v1/bulk", who="dave", payload={"catalog": CATALOG})[0] == 202
        running += 1
    monkeypatch.setenv("CUBECUT_BULK_MAX_IN_FLIGHT", str(running))
    status, answer = call(stack, "POST", "/v1/bulk", who="erin", payload={"catalog": CATALOG})
    assert status == 429 and f"{running} bulk jobs are running, the most this service runs at once is {running}" \
        in answer["message"], answer


def test_the_resolver_route_holds_to_its_schema(stack):
    """``name`` is an array of at most 100 items (its OpenAPI maxItems): 101 is a 400."""
    names = "&".join(f"name={i}%2C%201" for i in range(101))
    status, answer = call(stack, "GET", f"/Santa-war/query?{names}", who="alice")
    assert status == 400 and "at most 100 times" in answer["msg"], answer
    status, answer = call(stack, "GET", f"/Santa-war/query?{names.rsplit('&', 1)[0]}", who="alice")
    assert status == 200 and len(answer["resolvedCoordinate"]) == 100
