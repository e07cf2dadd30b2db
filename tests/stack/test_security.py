"""Security of the template and the code: storage, IAM, presigned URLs, keys, SSRF, auth, logs.

The template rules follow checkov's CloudFormation checks (IDs in the test names; checkov
itself is not a dependency: with this project's pins pip resolves it to a 2022 release
and ~35 extra packages). They run on the template as CloudFormation sees it, after the
SAM transform, so policies SAM generates are checked too. The code checks drive the
local API over HTTP on 127.0.0.1 and watch every connection and S3 request it makes.
"""
from __future__ import annotations

import copy
import io
import json
import logging
import os
import re
import socket
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import parse_qs, quote, urlencode, urlparse

import boto3
import pytest
from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

from test_template import LOG_DELIVERY_ACTIONS
from test_template import as_list as _list
from test_template import resources as _of_type
from test_template import statements as _statements

from cubecut import storage
from cubecut.cutout import clear_cache
from cubecut.ingest.run import ingest
from test_faults import MIB, ROOT, synth_ffis, targets

TEMPLATE = yaml_parse((ROOT / "template.yaml").read_text())
MANAGED = {"AWSLambdaBasicExecutionRole": "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
           "AWSXrayWriteOnlyAccess": "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess"}
#: The only managed policies allowed (their Resource "*" is AWS's: X-Ray's write API and
#: CloudWatch Logs' CreateLogGroup have no resource-level permissions for these uses).
ALLOWED_MANAGED_ARNS = set(MANAGED.values())
SECRET = "canary-Secret-Key-0123456789abcdef"
TOKEN = "canary-Session-Token-FwoGZXIvYXdzE"


class _OfflinePolicies:
    def load(self) -> dict[str, str]:
        return dict(MANAGED)


@pytest.fixture(scope="module")
def cfn() -> dict[str, Any]:
    """The template after the SAM transform (code locations faked as ``sam package`` would)."""
    template = copy.deepcopy(TEMPLATE)
    for section in [r.get("Properties", {}) for r in template["Resources"].values()] + [template["Globals"]["Function"]]:
        for key in ("CodeUri", "ContentUri", "DefinitionUri"):
            if isinstance(section.get(key), str):
                section[key] = f"s3://artifacts/{section[key].rstrip('/')}"
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    return transform(template, {}, _OfflinePolicies())


def _text(value: Any) -> str:
    """An ARN expression as text: ``!Sub`` strings as written, ``!Ref`` as ``${Name}``."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and "Fn::Sub" in value:
        sub = value["Fn::Sub"]
        return sub if isinstance(sub, str) else sub[0]
    if isinstance(value, dict) and "Ref" in value:
        return "${" + value["Ref"] + "}"
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        attr = value["Fn::GetAtt"]
        return "${" + (attr if isinstance(attr, str) else ".".join(attr)) + "}"
    return json.dumps(value)


# ----------------------------------------------------------------------------- the bucket
def test_ckv_aws_53_to_56_bucket_blocks_all_public_access():
    block = TEMPLATE["Resources"]["DataBucket"]["Properties"]["PublicAccessBlockConfiguration"]
    assert block == {"BlockPublicAcls": True, "BlockPublicPolicy": True, "IgnorePublicAcls": True,
                     "RestrictPublicBuckets": True}
    owner = TEMPLATE["Resources"]["DataBucket"]["Properties"]["OwnershipControls"]["Rules"][0]
    assert owner["ObjectOwnership"] == "BucketOwnerEnforced", "ACLs disabled"


def test_ckv_aws_19_bucket_encrypts_at_rest():
    rules = TEMPLATE["Resources"]["DataBucket"]["Properties"]["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rules and all(r["ServerSideEncryptionByDefault"]["SSEAlgorithm"] in ("AES256", "aws:kms", "aws:kms:dsse")
                         for r in rules)


def test_bucket_policy_denies_requests_without_tls():
    policies = [r for r in TEMPLATE["Resources"].values() if r["Type"] == "AWS::S3::BucketPolicy"]
    assert len(policies) == 1 and policies[0]["Properties"]["Bucket"] == {"Ref": "DataBucket"}
    denies = [s for s in policies[0]["Properties"]["PolicyDocument"]["Statement"] if s["Effect"] == "Deny"
              and s.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport") in ("false", False)]
    assert denies, "a Deny on aws:SecureTransport = false"
    (deny,) = denies
    assert deny["Principal"] in ("*", {"AWS": "*"}) and _list(deny["Action"]) in (["s3:*"], ["*"])
    resources = {_text(r) for r in _list(deny["Resource"])}
    assert resources == {"${DataBucket.Arn}", "${DataBucket.Arn}/*"}, "the bucket and every object"


def test_no_bucket_or_object_is_public_by_acl_or_policy(cfn):
    for bucket in _of_type(cfn, "AWS::S3::Bucket").values():
        assert "AccessControl" not in bucket["Properties"]
    for policy in _of_type(cfn, "AWS::S3::BucketPolicy").values():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            if statement["Effect"] == "Allow":
                assert statement.get("Principal") not in ("*", {"AWS": "*"}), statement


# ----------------------------------------------------------------------------- IAM
def test_ckv_aws_1_49_62_63_no_wildcard_actions(cfn):
    for role, statement in _statements(cfn):
        if statement["Effect"] != "Allow":
            continue
        for action in _list(statement["Action"]):
            assert action != "*" and not action.endswith(":*"), f"{role}: {action}"
            assert not action.lower().startswith("iam:"), f"{role} may not change IAM: {action}"


def test_ckv_aws_111_108_no_wildcard_resources(cfn):
    """Every inline statement names its resources: the data bucket with a key prefix, the
    bucket itself for ListBucket, our state machines and functions, or the external FFI
    parameters (which must carry a key prefix themselves)."""
    for role, statement in _statements(cfn):
        for resource in _list(statement["Resource"]):
            text = _text(resource)
            if text == "*":
                # Step Functions' log delivery API has no resource-level permissions.
                assert set(_list(statement["Action"])) <= LOG_DELIVERY_ACTIONS, f"{role}: {statement}"
                continue
            assert text not in ("arn:aws:s3:::*", "arn:${AWS::Partition}:s3:::*"), f"{role}: {statement}"
            if "DataBucket" in text:
                bucket_only = text == "${DataBucket.Arn}"
                actions = set(_list(statement["Action"]))
                if bucket_only:
                    assert actions <= {"s3:ListBucket"}, f"{role}: bucket-level {actions}"
                else:
                    assert re.search(r"^\$\{DataBucket\.Arn\}/\$\{(IngestPrefix|CubePrefix|ResultsPrefix)\}\*(\.ingest/\*|\.index\.json|manifest\.error\.json)?$", text), \
                        f"{role}: object access without a prefix: {text}"
            elif "${External" in text:
                pass
            elif ":s3:::" in text:
                pytest.fail(f"{role}: access to another bucket: {text}")
    external = TEMPLATE["Parameters"]["ExternalFfiObjects"]["Default"]
    assert all(re.match(r"^arn:aws:s3:::[a-z0-9.-]+/.+\*$", arn) for arn in external.split(",")), external


def test_delete_object_only_where_ingest_staging_lives(cfn):
    """Nothing may delete a cube, its sidecar, an FFI or a result: DeleteObject is granted
    only on the staging prefix ``{cube}.ingest/{plan id}/`` (layers/cubecut/ingest/plan.py)."""
    granted = 0
    for role, statement in _statements(cfn):
        if statement["Effect"] == "Allow" and "s3:DeleteObject" in _list(statement["Action"]):
            granted += 1
            assert _list(statement["Action"]) == ["s3:DeleteObject"], role
            assert all(_text(r) == "${DataBucket.Arn}/${CubePrefix}*.ingest/*" for r in _list(statement["Resource"])), role
    assert granted == 3, "Plan, Finalize and Abort clean up staging"


def test_api_role_holds_only_what_its_routes_use(cfn):
    """The API reads cubes and results, lists the bucket, writes results, and starts,
    describes and lists (counts) executions of the bulk state machine only; nothing else."""
    (role,) = [name for name in _of_type(cfn, "AWS::IAM::Role") if name.startswith("ApiFunction")]
    statements = [s for name, s in _statements(cfn) if name == role]
    actions = {a for s in statements for a in _list(s["Action"])}
    assert actions == {"s3:GetObject", "s3:ListBucket", "s3:PutObject", "states:StartExecution",
                       "states:DescribeExecution", "states:ListExecutions"}, actions
    for statement in statements:
        resources = [_text(r) for r in _list(statement["Resource"])]
        for action in ("states:StartExecution", "states:ListExecutions"):
            if action in _list(statement["Action"]):
                assert _list(statement["Action"]) == [action] and resources == ["${BulkStateMachine}"]
        if "states:DescribeExecution" in _list(statement["Action"]):
            assert _list(statement["Action"]) == ["states:DescribeExecution"]
            assert resources == ["arn:${AWS::Partition}:states:${AWS::Region}:${AWS::AccountId}:execution:"
                                 "${AWS::StackName}-bulk:*"], resources


def test_block_writer_has_reserved_concurrency():
    properties = TEMPLATE["Resources"]["BlockFunction"]["Properties"]
    assert properties["ReservedConcurrentExecutions"] == {"Ref": "BlockReservedConcurrency"}
    parameter = TEMPLATE["Parameters"]["BlockReservedConcurrency"]
    assert parameter["Default"] >= TEMPLATE["Parameters"]["MaxConcurrency"]["Default"]
    assert parameter["MaxValue"] + TEMPLATE["Parameters"]["ApiReservedConcurrency"]["MaxValue"] <= 1900


def test_bulk_workers_have_reserved_concurrency():
    """All bulk jobs together run at most BulkBatchReservedConcurrency workers, at least the
    Map's MaxConcurrency by default, and the reserved functions leave 100 of the account's
    default 1,000 unreserved."""
    properties = TEMPLATE["Resources"]["BulkBatchFunction"]["Properties"]
    assert properties["ReservedConcurrentExecutions"] == {"Ref": "BulkBatchReservedConcurrency"}
    defaults = {name: TEMPLATE["Parameters"][name]["Default"] for name in (
        "BulkBatchReservedConcurrency", "BlockReservedConcurrency", "ApiReservedConcurrency", "MaxConcurrency")}
    assert defaults["BulkBatchReservedConcurrency"] >= defaults["MaxConcurrency"]
    assert defaults["BulkBatchReservedConcurrency"] + defaults["BlockReservedConcurrency"] \
        + defaults["ApiReservedConcurrency"] <= 900


def test_api_access_logs_are_on_and_hold_no_query_strings_or_headers():
    settings = TEMPLATE["Resources"]["ApiStage"]["Properties"]["AccessLogSettings"]
    assert settings["DestinationArn"] == {"Fn::GetAtt": ["ApiAccessLogs", "Arn"]}
    fields = json.loads(settings["Format"])
    assert {"requestId", "ip", "method", "path", "status"} <= set(fields)
    text = settings["Format"].lower()
    for leak in ("querystring", "$request.", "header", "authorizer", "$context.identity.user"):
        assert leak not in text, leak
    retention = TEMPLATE["Resources"]["ApiAccessLogs"]["Properties"]["RetentionInDays"]
    assert retention == {"Ref": "ApiAccessLogRetentionDays"}


def test_only_the_two_justified_managed_policies(cfn):
    for name, role in _of_type(cfn, "AWS::IAM::Role").items():
        arns = set(role["Properties"].get("ManagedPolicyArns", []))
        assert arns <= ALLOWED_MANAGED_ARNS, f"{name}: {arns - ALLOWED_MANAGED_ARNS}"
        trust = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        principals = {p for s in trust for p in _list(s["Principal"].get("Service", []))}
        assert principals <= {"lambda.amazonaws.com", "states.amazonaws.com"}, f"{name}: {principals}"


def test_presign_expiry_parameter_is_bounded_by_sigv4():
    expiry = TEMPLATE["Parameters"]["PresignExpirySeconds"]
    assert 60 <= expiry["MinValue"] and expiry["MaxValue"] <= 7 * 24 * 3600 and expiry["Default"] <= 24 * 3600


def test_require_auth_parameter_switches_every_route(cfn):
    assert TEMPLATE["Parameters"]["RequireAuth"]["AllowedValues"] == ["none", "iam", "jwt"]
    conditions = TEMPLATE["Conditions"]
    assert conditions["UseJwtAuth"] == {"Fn::Equals": [{"Ref": "RequireAuth"}, "jwt"]}
    assert conditions["UseIamAuth"] == {"Fn::Equals": [{"Ref": "RequireAuth"}, "iam"]}
    routes = _of_type(cfn, "AWS::ApiGatewayV2::Route")
    assert routes
    for name, route in routes.items():
        assert route["Properties"]["AuthorizationType"] == {
            "Fn::If": ["UseJwtAuth", "JWT", {"Fn::If": ["UseIamAuth", "AWS_IAM", "NONE"]}]}, name
        assert route["Properties"]["AuthorizerId"]["Fn::If"][1] == {"Ref": "JwtAuthorizer"}
    authorizer = cfn["Resources"]["JwtAuthorizer"]
    assert authorizer["Condition"] == "UseJwtAuth" and authorizer["Properties"]["AuthorizerType"] == "JWT"
    assert _of_type(cfn, "AWS::ApiGatewayV2::Api"), "no other (unauthenticated) API"
    assert not _of_type(cfn, "AWS::Lambda::Url"), "no function URL around the authorizer"


# ----------------------------------------------------------------------------- the live API
class Watch:
    """Every socket connection and every S3 request the process makes while active."""

    def __init__(self) -> None:
        self.connections: list[tuple] = []
        self.s3_urls: list[str] = []
        self.lock = threading.Lock()

    def s3_request(self, request, **_kwargs) -> None:
        with self.lock:
            self.s3_urls.append(request.url)


@pytest.fixture(scope="module")
def api(tmp_path_factory) -> Iterator[dict]:
    from cubecut_infra.local.stack import LocalStack

    saved = {k: os.environ.get(k) for k in ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")}
    os.environ.update(AWS_SECRET_ACCESS_KEY=SECRET, AWS_SESSION_TOKEN=TOKEN)
    ffis = synth_ffis(tmp_path_factory)
    stack = LocalStack(bucket="cubecut-security").start()
    try:
        storage.reset_clients()
        clear_cache()
        ingest([str(p) for p in ffis], f"s3://{stack.bucket}/cubes/tess-s0007-2-1-cube.fits", block_bytes=5 * MIB)
        yield {"stack": stack, "url": stack.api_url, "targets": targets(2)}
    finally:
        stack.stop()
        for key, value in saved.items():
            os.environ.pop(key, None) if value is None else os.environ.__setitem__(key, value)
        storage.reset_clients()
        clear_cache()


def _call(url: str, payload: Any = None, method: str = "POST") -> tuple[int, dict | bytes, dict]:
    data = None if payload is None else (payload if isinstance(payload, bytes) else json.dumps(payload).encode())
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            body, status, headers = response.read(), response.status, dict(response.headers)
    except urllib.error.HTTPError as error:
        body, status, headers = error.read(), error.code, dict(error.headers)
    try:
        return status, json.loads(body), headers
    except ValueError:
        return status, body, headers


@pytest.fixture
def watch(monkeypatch) -> Iterator[Watch]:
    seen = Watch()
    real_connect = socket.socket.connect

    def connect(sock, address):
        with seen.lock:
            seen.connections.append(address)
        if isinstance(address, tuple) and address[0] not in ("127.0.0.1", "localhost", "::1"):
            raise OSError(f"test: outbound connection to {address} refused")
        return real_connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    client = storage.s3_client()
    client.meta.events.register("before-send.s3", seen.s3_request)
    try:
        yield seen
    finally:
        client.meta.events.unregister("before-send.s3", seen.s3_request)


@pytest.mark.slow
def test_presigned_urls_are_sigv4_with_bounded_expiry(api, monkeypatch):
    from cubecut.storage import presigned_url as presign
    from cubecut_functions.api import settings

    ra, dec = api["targets"][0]
    status, answer, _ = _call(f"{api['url']}/v1/cutouts", {"cube": "tess-s0007-2-1", "ra": ra, "dec": dec, "size": 5})
    assert status == 200, answer
    query = parse_qs(urlparse(answer["url"]).query)
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
    assert int(query["X-Amz-Expires"][0]) == answer["expires_in"] <= 7 * 24 * 3600
    assert query["X-Amz-SignedHeaders"] == ["host"] and len(query["X-Amz-Signature"][0]) == 64
    assert "AWSAccessKeyId" not in query, "no SigV2"
    for configured, expected in (("10", 60), ("3600", 3600), (str(10 ** 9), 7 * 24 * 3600)):
        monkeypatch.setenv("CUBECUT_PRESIGN_EXPIRY", configured)
        assert settings().presign_expiry == expected
    url = presign(f"s3://{api['stack'].bucket}/results/x.fits", settings().presign_expiry)
    assert parse_qs(urlparse(url).query)["X-Amz-Expires"] == [str(7 * 24 * 3600)]


SSRF = ["s3://other-bucket/cubes/tess-s0007-2-1-cube.fits", "http://169.254.169.254/latest/meta-data/",
        "https://example.com/cube.fits", "file:///etc/passwd", "/etc/passwd",
        "s3://cubecut-security/cubes/../../other/tess-s0007-2-1-cube.fits", "cubes/../../etc/passwd",
        "s3://cubecut-security/results/", "tess-s0007-2-1/../../x", "\u2024\u2024/x", "x" * 5000]


@pytest.mark.slow
def test_cube_locations_are_limited_to_the_catalog(api, watch):
    """No user-supplied location is dereferenced: 4xx, and no connection or S3 request to it."""
    ra, dec = api["targets"][0]
    for cube in SSRF:
        status, answer, _ = _call(f"{api['url']}/v1/cutouts", {"cube": cube, "ra": ra, "dec": dec, "size": 5})
        assert 400 <= status < 500, (cube, status, answer)
    for where in ("http://169.254.169.254/latest/meta-data/", "s3://other-bucket/x.fits"):
        for path in (f"/tesscut/api/v0.1/astrocut?ra={ra}&dec={dec}&y=5&x=5&cube={quote(where)}",
                     f"/tesscut/api/v0.1/ffi_wcs?sector=7&camera=2&ccd=1&cube={quote(where)}",
                     f"/v1/quicklook?cube={quote(where)}&ra={ra}&dec={dec}"):
            status, _, _ = _call(api["url"] + path, method="GET")
            assert status < 500, (path, status)
    hosts = {address[0] for address in watch.connections if isinstance(address, tuple)}
    assert hosts <= {"127.0.0.1"}, hosts
    buckets = {urlparse(u).path.split("/")[1] for u in watch.s3_urls}
    assert buckets <= {api["stack"].bucket}, buckets


@pytest.mark.slow
def test_request_derived_keys_stay_under_the_results_prefix(api):
    ra, dec = api["targets"][1]
    hostile = [{"cube": "tess-s0007-2-1", "ra": ra, "dec": dec, "size": 5, "name": "../../cubes/evil.fits"},
               {"cube": "tess-s0007-2-1", "ra": f"{ra}", "dec": f"{dec}", "size": [5, 3]},
               {"cube": "tess-s0007-2-1", "ra": ra, "dec": dec, "size": 5, "units": "px/../../x"},
               {"cube": "tess-s0007-2-1", "ra": "1/../../x", "dec": dec}]
    for payload in hostile:
        status, answer, _ = _call(f"{api['url']}/v1/cutouts", payload)
        assert status in (200, 400, 404), (payload, status, answer)
    query = urlencode({"ra": ra, "dec": dec, "x": 4, "y": 4, "sector": "7/../../x"})
    _call(f"{api['url']}/tesscut/api/v0.1/astrocut?{query}", method="GET")
    query = urlencode({"ra": ra, "dec": dec, "x": 4, "y": 4})
    status, _, _ = _call(f"{api['url']}/tesscut/api/v0.1/astrocut?{query}", method="GET")
    assert status == 200
    s3 = api["stack"].s3.client("s3")
    results = [o["Key"] for o in s3.list_objects_v2(Bucket=api["stack"].bucket).get("Contents", [])
               if not o["Key"].startswith(("cubes/tess-s0007-2-1-cube.fits", "ingest/"))]
    assert results, "cutouts were stored"
    pattern = re.compile(r"^results/(v1/[0-9a-f]{64}/[A-Za-z0-9._-]+\.fits|tesscut/[0-9a-f]{64}\.[a-z]+)$")
    assert all(pattern.match(key) for key in results), results


@pytest.mark.slow
def test_logs_hold_no_secrets_or_presigned_query_strings(api, capsys):
    from cubecut_functions import api as api_module

    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(api_module.logger.registered_formatter)
    root = logging.getLogger()
    previous = (api_module.logger.log_level, root.level)
    api_module.logger.addHandler(handler)
    api_module.logger.setLevel("DEBUG")
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        ra, dec = api["targets"][0]
        status, answer, _ = _call(f"{api['url']}/v1/cutouts", {"cube": "tess-s0007-2-1", "ra": ra, "dec": dec,
                                                               "size": 7})
        assert status == 200 and "X-Amz-Signature" in answer["url"], answer
        query = urlencode({"ra": ra, "dec": dec, "x": 6, "y": 6})
        status, _, headers = _call(f"{api['url']}/tesscut/api/v0.1/astrocut?{query}", method="GET")
        assert status == 200, status
        query = urlencode({"ra": ra, "dec": dec, "x": 60, "y": 60})  # > 4 MiB: 303 to a presigned URL
        _call(f"{api['url']}/tesscut/api/v0.1/astrocut?{query}", method="GET")
        _call(f"{api['url']}/v1/cutouts", {"cube": "nope", "ra": ra, "dec": dec})
        _call(f"{api['url']}/v1/cutouts", b"{not json")
    finally:
        api_module.logger.removeHandler(handler)
        root.removeHandler(handler)
        api_module.logger.setLevel(previous[0])
        root.setLevel(previous[1])
    logs = buffer.getvalue() + capsys.readouterr().out
    assert "astrocut" in logs and '"message":"cutout"' in logs, "requests were logged"
    for secret in ("X-Amz-Signature", "X-Amz-Credential", "X-Amz-Security-Token", "AWS_SECRET", SECRET, TOKEN):
        assert secret not in logs, f"{secret!r} in the logs"


@pytest.mark.slow
def test_v1_cutout_succeeds_when_info_is_logged(api):
    """Regression: logging a reserved LogRecord key ('name') as an extra made every POST
    /v1/cutouts answer 500 at INFO, powertools' default level in Lambda (the local stack
    logs at WARNING, which hid it)."""
    from cubecut_functions import api as api_module

    previous = api_module.logger.log_level
    api_module.logger.setLevel("INFO")
    try:
        ra, dec = api["targets"][0]
        status, answer, _ = _call(f"{api['url']}/v1/cutouts", {"cube": "tess-s0007-2-1", "ra": ra, "dec": dec,
                                                               "size": 5})
    finally:
        api_module.logger.setLevel(previous)
    assert status == 200, answer


def test_handlers_do_not_log_api_events():
    """API events carry the caller's headers (Authorization, cookies): never log them whole."""
    text = (ROOT / "functions" / "api.py").read_text()
    assert "log_event=True" not in text
    for path in (ROOT / "functions").glob("*.py"):
        for line in path.read_text().splitlines():
            if "log_event=True" in line:
                assert path.name == "on_upload.py", f"{path.name} logs whole events"
