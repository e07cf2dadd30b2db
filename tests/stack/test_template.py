"""template.yaml: SAM transform, cfn-lint, and the security and sizing rules it must keep."""
from __future__ import annotations

import copy
import json
import os
import re
from pathlib import Path
from typing import Any, Iterator

import pytest
from cfnlint.api import lint
from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser
from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

from cubecut_infra.local.template import apply_substitutions

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_TEXT = (ROOT / "template.yaml").read_text()
#: AWS managed policies SAM attaches, the only IAM with Resource "*": X-Ray's write API
#: has no resource-level permissions, and the Lambda basic role is SAM's logging default.
ALLOWED_MANAGED_POLICIES = {
    "AWSLambdaBasicExecutionRole": "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
    "AWSXrayWriteOnlyAccess": "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess",
}
#: What Step Functions needs to deliver its logs: these actions have no resource-level
#: permissions, so they are the only inline grants with Resource "*".
LOG_DELIVERY_ACTIONS = {"logs:CreateLogDelivery", "logs:GetLogDelivery", "logs:UpdateLogDelivery",
                        "logs:DeleteLogDelivery", "logs:ListLogDeliveries", "logs:PutResourcePolicy",
                        "logs:DescribeResourcePolicies", "logs:DescribeLogGroups"}
HANDLERS = {
    "PlanFunction": "ingest.plan_handler", "BlockFunction": "ingest.block_handler",
    "FinalizeFunction": "ingest.finalize_handler", "AbortFunction": "ingest.abort_handler",
    "OnUploadFunction": "on_upload.handler", "ApiFunction": "api.handler",
    "BulkPlanFunction": "bulk.plan_handler", "BulkBatchFunction": "bulk.batch_handler",
    "BulkFinishFunction": "bulk.finish_handler",
}


class OfflinePolicyLoader:
    """Stands in for samtranslator's IAM-backed ManagedPolicyLoader (no network)."""

    def load(self) -> dict[str, str]:
        return dict(ALLOWED_MANAGED_POLICIES)


def packaged(template: dict[str, Any]) -> dict[str, Any]:
    """What ``sam package`` hands to CloudFormation: local paths become S3 locations."""
    template = copy.deepcopy(template)
    sections = [r.get("Properties", {}) for r in template["Resources"].values()]
    sections.append(template["Globals"]["Function"])
    for properties in sections:
        for key in ("CodeUri", "ContentUri", "DefinitionUri"):
            if isinstance(properties.get(key), str):
                local = ROOT / properties[key]
                assert local.exists(), f"{key} {properties[key]} does not exist"
                properties[key] = f"s3://artifacts/{properties[key].rstrip('/')}"
    return template


@pytest.fixture(scope="module")
def sam() -> dict[str, Any]:
    return yaml_parse(TEMPLATE_TEXT)


@pytest.fixture(scope="module")
def cfn(sam: dict[str, Any]) -> dict[str, Any]:
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    return transform(packaged(sam), {}, OfflinePolicyLoader())


def resources(template: dict[str, Any], type_: str) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in template["Resources"].items() if r["Type"] == type_}


def statements(cfn: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every Allow a role gets: its own policies', and the data bucket policy's grants to it
    (named by the role's logical id)."""
    for name, role in resources(cfn, "AWS::IAM::Role").items():
        for policy in role["Properties"].get("Policies", []):
            for statement in policy["PolicyDocument"]["Statement"]:
                yield name, statement
    for statement in cfn["Resources"]["DataBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]:
        if statement["Effect"] == "Allow":
            yield statement["Principal"]["AWS"]["Fn::GetAtt"][0], statement


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def lint_errors(text: str) -> list[str]:
    return [f"{m.rule.id} {m.message} (line {m.linenumber})" for m in lint(text, regions=["us-east-1"])]


# ---------------------------------------------------------------------------- transform and lint
def test_template_transforms(cfn: dict[str, Any]) -> None:
    assert "Transform" not in cfn and resources(cfn, "AWS::Lambda::Function")
    assert {"ApiUrl", "BucketName", "StateMachineArn"} <= set(cfn["Outputs"])


def test_cfn_lint_finds_nothing_in_the_template_or_its_transform(cfn: dict[str, Any]) -> None:
    # No warnings either, so none needs justifying.
    assert lint_errors(TEMPLATE_TEXT) == []
    assert lint_errors(json.dumps(cfn)) == []


# ---------------------------------------------------------------------------- functions
def test_functions_have_justified_memory_and_timeouts(sam: dict[str, Any], cfn: dict[str, Any]) -> None:
    functions = resources(sam, "AWS::Serverless::Function")
    assert {name: f["Properties"]["Handler"] for name, f in functions.items()} == HANDLERS
    for name, function in functions.items():
        properties = function["Properties"]
        assert 128 <= properties["MemorySize"] <= 10240 and 1 <= properties["Timeout"] <= 900, name
        block = re.search(rf"\n  {name}:\n(.*?)\n  \w", TEMPLATE_TEXT, re.S).group(1)
        assert re.search(r"#.*\n\s+MemorySize:", block), f"{name}: MemorySize needs a justifying comment"
    assert functions["ApiFunction"]["Properties"]["Timeout"] <= 30
    assert functions["ApiFunction"]["Properties"]["MemorySize"] == 3008
    deployed = resources(cfn, "AWS::Lambda::Function")
    for name, function in deployed.items():
        properties = function["Properties"]
        assert properties["Runtime"] == "python3.13" and properties["Architectures"] == ["arm64"]
        assert properties["TracingConfig"] == {"Mode": "Active"}
        # OnUploadFunction takes the bucket from its S3 event; naming it would make a cycle.
        wanted = {"POWERTOOLS_SERVICE_NAME", "CUBECUT_CUBE_PREFIX"} | (
            set() if name == "OnUploadFunction" else {"CUBECUT_BUCKET"})
        assert wanted <= set(properties["Environment"]["Variables"]), name
        assert properties["Layers"] and "CubecutLayer" in json.dumps(properties["Layers"])


def test_manifest_uploads_trigger_on_upload(cfn: dict[str, Any]) -> None:
    notification = cfn["Resources"]["DataBucket"]["Properties"]["NotificationConfiguration"]
    (config,) = notification["LambdaConfigurations"]
    assert config["Event"] == "s3:ObjectCreated:*"
    assert config["Function"] == {"Fn::GetAtt": ["OnUploadFunction", "Arn"]}
    assert config["Filter"]["S3Key"]["Rules"] == [{"Name": "prefix", "Value": {"Ref": "IngestPrefix"}},
                                                  {"Name": "suffix", "Value": "manifest.json"}]


def test_bucket_is_versioned_with_bounded_noncurrent_versions(cfn: dict[str, Any]) -> None:
    """A replaced or deleted cube stays recoverable for NoncurrentVersionDays, then expires."""
    bucket = cfn["Resources"]["DataBucket"]["Properties"]
    assert bucket["VersioningConfiguration"] == {"Status": "Enabled"}
    rules = {rule["Id"]: rule for rule in bucket["LifecycleConfiguration"]["Rules"]}
    noncurrent = rules["ExpireNoncurrentVersions"]
    assert noncurrent["Status"] == "Enabled" and "Prefix" not in noncurrent and "Filter" not in noncurrent
    assert noncurrent["NoncurrentVersionExpiration"] == {"NoncurrentDays": {"Ref": "NoncurrentVersionDays"}}
    assert noncurrent["ExpiredObjectDeleteMarker"] is True


def test_failed_s3_events_go_to_a_dead_letter_queue(cfn: dict[str, Any]) -> None:
    """S3 invokes OnUploadFunction asynchronously: after Lambda's retries a failed event
    goes to IngestFailuresQueue instead of being dropped."""
    configs = [r for r in resources(cfn, "AWS::Lambda::EventInvokeConfig").values()
               if r["Properties"]["FunctionName"] == {"Ref": "OnUploadFunction"}]
    (config,) = configs
    assert config["Properties"]["MaximumRetryAttempts"] == 2
    destination = config["Properties"]["DestinationConfig"]["OnFailure"]["Destination"]
    assert destination == {"Fn::GetAtt": ["IngestFailuresQueue", "Arn"]}
    queue = cfn["Resources"]["IngestFailuresQueue"]["Properties"]
    assert queue["MessageRetentionPeriod"] == 14 * 86400 and queue["SqsManagedSseEnabled"] is True


def test_http_api_routes_and_conditional_auth(cfn: dict[str, Any]) -> None:
    routes = resources(cfn, "AWS::ApiGatewayV2::Route")
    assert sorted(r["Properties"]["RouteKey"] for r in routes.values()) == ["ANY /", "ANY /{proxy+}"]
    for route in routes.values():
        assert "Fn::If" in route["Properties"]["AuthorizationType"]
    assert cfn["Resources"]["JwtAuthorizer"]["Condition"] == "UseJwtAuth"
    (integration,) = resources(cfn, "AWS::ApiGatewayV2::Integration").values()
    assert integration["Properties"]["PayloadFormatVersion"] == "2.0"
    assert integration["Properties"]["TimeoutInMillis"] <= 30000


# ---------------------------------------------------------------------------- bucket
def test_bucket_is_private_encrypted_and_cleans_up_uploads(cfn: dict[str, Any]) -> None:
    bucket = cfn["Resources"]["DataBucket"]["Properties"]
    assert bucket["PublicAccessBlockConfiguration"] == {"BlockPublicAcls": True, "BlockPublicPolicy": True,
                                                        "IgnorePublicAcls": True, "RestrictPublicBuckets": True}
    rule = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]
    assert rule["SSEAlgorithm"] in {"AES256", "aws:kms"}
    assert bucket["OwnershipControls"] == {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}
    aborts = [r for r in bucket["LifecycleConfiguration"]["Rules"] if "AbortIncompleteMultipartUpload" in r]
    assert aborts and aborts[0]["Status"] == "Enabled" and "Prefix" not in aborts[0]
    assert aborts[0]["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 1}
    from cubecut.ingest.plan import STAGING_TAGS

    staging = [r for r in bucket["LifecycleConfiguration"]["Rules"] if r.get("Id") == "ExpireIngestStaging"]
    assert staging and staging[0]["TagFilters"] == [{"Key": k, "Value": v} for k, v in STAGING_TAGS.items()]


def test_bucket_policy_denies_plain_http(cfn: dict[str, Any]) -> None:
    (policy,) = resources(cfn, "AWS::S3::BucketPolicy").values()
    assert policy["Properties"]["Bucket"] == {"Ref": "DataBucket"}
    (deny,) = [s for s in policy["Properties"]["PolicyDocument"]["Statement"] if s["Effect"] == "Deny"]
    assert deny["Principal"] == "*" and deny["Action"] == "s3:*"
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert {"Fn::GetAtt": ["DataBucket", "Arn"]} in deny["Resource"]


# ---------------------------------------------------------------------------- IAM
def test_iam_grants_no_wildcard_resources_or_actions(cfn: dict[str, Any]) -> None:
    seen = 0
    for role, statement in statements(cfn):
        assert statement["Effect"] == "Allow", role
        for action in as_list(statement["Action"]):
            assert "*" not in action, f"{role}: wildcard action {action}"
        for resource in as_list(statement["Resource"]):
            assert resource != "*" or set(as_list(statement["Action"])) <= LOG_DELIVERY_ACTIONS, \
                f"{role}: Resource * in {statement}"
            seen += 1
    assert seen > 20
    for name, role in resources(cfn, "AWS::IAM::Role").items():
        assert set(role["Properties"].get("ManagedPolicyArns", [])) <= set(ALLOWED_MANAGED_POLICIES.values()), name


def test_s3_permissions_are_scoped_to_the_bucket_and_prefixes(cfn: dict[str, Any]) -> None:
    bucket_arn = {"Fn::GetAtt": ["DataBucket", "Arn"]}
    # Narrower patterns within a prefix: staging objects, the sidecars Abort may publish,
    # the failure reports written beside manifests.
    prefixes = {"${CubePrefix}*", "${IngestPrefix}*", "${ResultsPrefix}*", "${CubePrefix}*.ingest/*",
                "${CubePrefix}*.index.json", "${IngestPrefix}*manifest.error.json"}
    for role, statement in statements(cfn):
        if not any(action.startswith("s3:") for action in as_list(statement["Action"])):
            continue
        for resource in as_list(statement["Resource"]):
            if resource in ({"Ref": "ExternalFfiObjects"}, {"Ref": "ExternalFfiBuckets"}):
                continue
            if as_list(statement["Action"]) == ["s3:ListBucket"]:
                assert resource == bucket_arn, role
            else:
                arn = resource["Fn::Sub"]
                assert arn.startswith("${DataBucket.Arn}/") and arn.split("/", 1)[1] in prefixes, (role, arn)
    granted = {(role, statement.get("Sid")) for role, statement in statements(cfn)}
    assert {("OnUploadFunctionRole", "OnUploadReadsManifests"),
            ("OnUploadFunctionRole", "OnUploadReportsFailedManifests")} <= granted


def test_state_machine_role_can_run_the_distributed_map(cfn: dict[str, Any]) -> None:
    granted = {action for role, s in statements(cfn) if role == "IngestStateMachineRole"
               for action in as_list(s["Action"])}
    assert {"lambda:InvokeFunction", "s3:GetObject", "states:StartExecution", "states:DescribeExecution",
            "states:StopExecution"} <= granted
    invoked = {json.dumps(s["Resource"]) for role, s in statements(cfn)
               if role == "IngestStateMachineRole" and s["Action"] == ["lambda:InvokeFunction"]}
    for function in ("PlanFunction", "BlockFunction", "FinalizeFunction", "AbortFunction"):
        assert any(f'"Ref": "{function}"' in resource for resource in invoked), function


# ---------------------------------------------------------------------------- state machines
STATE_MACHINES = {"IngestStateMachine": "infra/statemachines/ingest.asl.json",
                  "BulkStateMachine": "infra/statemachines/bulk.asl.json"}


@pytest.mark.parametrize("logical_id", sorted(STATE_MACHINES))
def test_asl_files_are_valid_once_substituted(sam: dict[str, Any], logical_id: str) -> None:
    properties = sam["Resources"][logical_id]["Properties"]
    assert properties["DefinitionUri"] == STATE_MACHINES[logical_id]
    text = (ROOT / STATE_MACHINES[logical_id]).read_text()
    placeholders = set(re.findall(r"\$\{(\w+)\}", text))
    assert placeholders == set(properties["DefinitionSubstitutions"])
    # CloudFormation substitutes text: the ARNs sit in JSON strings, while MaxConcurrency
    # must stay unquoted to become the integer Step Functions requires (a quoted
    # placeholder would become the string "200" and fail SCHEMA_VALIDATION).
    assert re.findall(r'"MaxConcurrency":\s*\$\{MaxConcurrency\}', text)
    values = {name: f"arn:aws:lambda:us-east-1:123456789012:function:{name}" for name in placeholders}
    values["MaxConcurrency"] = 200
    if "BulkTilesPerBatch" in values:  # tiles per bulk batch: a number too
        values["BulkTilesPerBatch"] = 10
    definition = json.loads(apply_substitutions(text, values))
    AmazonStateLanguageParser.parse(json.dumps(definition))  # the local engine's parser accepts it
    # cfn-lint's own Step Functions schema (rule E3601) agrees.
    probe = {"AWSTemplateFormatVersion": "2010-09-09", "Resources": {"Machine": {
        "Type": "AWS::StepFunctions::StateMachine",
        "Properties": {"RoleArn": "arn:aws:iam::123456789012:role/machine", "Definition": definition}}}}
    assert lint_errors(json.dumps(probe)) == []


# ---------------------------------------------------------------------------- operations
def test_every_function_and_state_machine_logs_with_a_retention(cfn: dict[str, Any]) -> None:
    groups = resources(cfn, "AWS::Logs::LogGroup")
    named = {json.dumps(g["Properties"]["LogGroupName"]) for g in groups.values()}
    assert all(g["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}
               for name, g in groups.items() if name != "ApiAccessLogs")
    for function in HANDLERS:
        assert json.dumps({"Fn::Sub": f"/aws/lambda/${{{function}}}"}) in named, function
    for machine in ("IngestStateMachine", "BulkStateMachine"):
        properties = cfn["Resources"][machine]["Properties"]
        assert properties["LoggingConfiguration"]["Level"] == "ERROR"
        assert properties["LoggingConfiguration"]["IncludeExecutionData"] is False
        assert properties["TracingConfiguration"] == {"Enabled": True}


def test_alarms_watch_every_function_machine_queue_and_the_api(cfn: dict[str, Any]) -> None:
    alarms = resources(cfn, "AWS::CloudWatch::Alarm").values()
    watched = {(a["Properties"]["MetricName"], json.dumps(a["Properties"]["Dimensions"][0]["Value"])) for a in alarms}
    for function in HANDLERS:
        for metric in ("Errors", "Throttles"):
            assert (metric, json.dumps({"Ref": function})) in watched, (function, metric)
    for machine in ("IngestStateMachine", "BulkStateMachine"):
        for metric in ("ExecutionsFailed", "ExecutionsTimedOut"):
            assert (metric, json.dumps({"Ref": machine})) in watched, (machine, metric)
    assert ("ApproximateNumberOfMessagesVisible", json.dumps({"Fn::GetAtt": ["IngestFailuresQueue", "QueueName"]})) \
        in watched
    assert ("5xx", json.dumps({"Ref": "HttpApi"})) in watched
    assert all(a["Properties"]["AlarmActions"] == a["Properties"]["OKActions"] == [{"Ref": "AlarmTopic"}]
               and a["Properties"]["Threshold"] == 0 and a["Properties"]["Period"] == 300 for a in alarms)


def test_default_reserved_concurrency_fits_the_default_account_quota(sam: dict[str, Any]) -> None:
    """Lambda keeps 100 of an account's concurrency (1,000 by default) unreserved, so the
    reservations' defaults must add up to at most 900 for a first deploy to succeed."""
    parameters = sam["Parameters"]
    reserved = [f["Properties"]["ReservedConcurrentExecutions"]
                for f in resources(sam, "AWS::Serverless::Function").values()
                if "ReservedConcurrentExecutions" in f["Properties"]]
    total = sum(parameters[r["Ref"]]["Default"] if isinstance(r, dict) else r for r in reserved)
    assert 0 < total <= 900, total
