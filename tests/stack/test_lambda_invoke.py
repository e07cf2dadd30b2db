"""Our Lambda Invoke endpoint, driven by boto3's real Lambda client, answers as Lambda does;
and the local stack's function settings are template.yaml's."""
from __future__ import annotations

import json
import threading
import time
from typing import Any, Iterator

import boto3
import pytest
import yaml

from cubecut_infra.local.sfn import LocalStepFunctions
from cubecut_infra.local.template import TEMPLATE_PATH, load_template


class ShardError(Exception):
    pass


@pytest.fixture
def lambdas() -> Iterator[tuple[Any, LocalStepFunctions]]:
    sfn = LocalStepFunctions()
    sfn.start()
    client = boto3.client("lambda", endpoint_url=sfn.endpoint, region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    yield client, sfn
    for name in ("echo", "broken", "unmarshallable", "slow"):
        sfn.lambdas.remove(name)
    sfn.stop()


def test_a_result_and_the_context_are_lambdas(lambdas: tuple[Any, LocalStepFunctions]) -> None:
    client, sfn = lambdas
    seen: list[Any] = []

    def echo(event: Any, context: Any) -> Any:
        seen.append(context)
        return {"got": event}

    arn = sfn.lambdas.add("echo", echo, memory_mb=1769, timeout_s=600)
    for name in ("echo", arn, "123456789012:function:echo", arn + ":$LATEST"):
        answer = client.invoke(FunctionName=name, Payload=json.dumps({"a": [1, 2]}).encode())
        assert answer["StatusCode"] == 200 and "FunctionError" not in answer
        assert json.loads(answer["Payload"].read()) == {"got": {"a": [1, 2]}}
    context = seen[0]
    assert (context.function_name, context.invoked_function_arn, context.memory_limit_in_mb) == ("echo", arn, "1769")
    assert 590_000 < context.get_remaining_time_in_millis() <= 600_000
    assert len({c.aws_request_id for c in seen}) == 4, "a fresh context per invocation"


def test_a_handler_exception_is_a_function_error_named_by_its_class(lambdas: tuple[Any, LocalStepFunctions]) -> None:
    client, sfn = lambdas

    def broken(event: Any, context: Any) -> Any:
        raise ShardError("shard 3 is gone")

    sfn.lambdas.add("broken", broken)
    answer = client.invoke(FunctionName="broken", Payload=b"{}")
    assert answer["StatusCode"] == 200 and answer["FunctionError"] == "Unhandled"
    error = json.loads(answer["Payload"].read())
    assert (error["errorType"], error["errorMessage"]) == ("ShardError", "shard 3 is gone")
    assert any("in broken" in frame for frame in error["stackTrace"])


def test_a_result_that_is_not_json_is_a_marshal_error(lambdas: tuple[Any, LocalStepFunctions]) -> None:
    client, sfn = lambdas
    sfn.lambdas.add("unmarshallable", lambda event, context: {"when": object()})
    answer = client.invoke(FunctionName="unmarshallable")
    assert answer["FunctionError"] == "Unhandled"
    assert json.loads(answer["Payload"].read())["errorType"] == "Runtime.MarshalError"


def test_service_errors(lambdas: tuple[Any, LocalStepFunctions]) -> None:
    client, sfn = lambdas
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.invoke(FunctionName="nobody")
    sfn.lambdas.add("echo", lambda event, context: event)
    with pytest.raises(client.exceptions.InvalidRequestContentException):
        client.invoke(FunctionName="echo", Payload=b"{not json")


def test_reserved_concurrency_throttles_the_excess(lambdas: tuple[Any, LocalStepFunctions]) -> None:
    client, sfn = lambdas
    inside, release = threading.Barrier(3), threading.Event()

    def slow(event: Any, context: Any) -> Any:
        inside.wait(timeout=30)
        release.wait(timeout=30)
        return "done"

    sfn.lambdas.add("slow", slow, reserved_concurrency=2, timeout_s=60)
    results: list[Any] = []
    callers = [threading.Thread(target=lambda: results.append(client.invoke(FunctionName="slow"))) for _ in range(2)]
    for caller in callers:
        caller.start()
    inside.wait(timeout=30)  # both are running
    with pytest.raises(client.exceptions.TooManyRequestsException):
        client.invoke(FunctionName="slow")
    release.set()
    for caller in callers:
        caller.join()
    assert [json.loads(r["Payload"].read()) for r in results] == ["done", "done"]


def test_local_function_settings_are_the_templates() -> None:
    """Read with a plain YAML parser that ignores the CloudFormation tags."""
    class Loader(yaml.SafeLoader):
        pass

    Loader.add_multi_constructor("!", lambda loader, suffix, node: None)
    template = yaml.load(TEMPLATE_PATH.read_text(), Loader=Loader)
    resources = template["Resources"]
    local = load_template(stack_name="cubecut", bucket="b").functions
    declared = {logical: r["Properties"] for logical, r in resources.items()
                if r["Type"] == "AWS::Serverless::Function"}
    assert set(local) == set(declared)
    for logical, properties in declared.items():
        spec = local[logical]
        assert (spec.memory_mb, spec.timeout_s, spec.handler) == (
            properties["MemorySize"], properties["Timeout"], properties["Handler"]), logical
    reserved = template["Parameters"]["ApiReservedConcurrency"]["Default"]
    assert local["ApiFunction"].reserved_concurrency == reserved  # a !Ref to the parameter
    assert local["OnUploadFunction"].environment["STATE_MACHINE_ARN"].endswith(":stateMachine:cubecut-ingest")
    assert {spec.environment.get("CUBECUT_BUCKET") for name, spec in local.items() if name != "OnUploadFunction"} == {"b"}


def test_the_local_stack_without_a_checkout_says_so_in_one_line(tmp_path):
    from cubecut.errors import CubecutError
    from cubecut_infra.local.template import load_template

    with pytest.raises(CubecutError, match="run it from a clone") as caught:
        load_template(stack_name="s", bucket="b", path=tmp_path / "template.yaml")
    assert "\n" not in str(caught.value)


def test_a_handler_outliving_its_timeout_is_lambdas_timeout_error(lambdas: tuple[Any, LocalStepFunctions]) -> None:
    client, sfn = lambdas
    release = threading.Event()
    sfn.lambdas.add("sleepy", lambda event, context: release.wait(30), timeout_s=0.5)
    started = time.monotonic()
    answer = client.invoke(FunctionName="sleepy", Payload=b"{}")
    waited = time.monotonic() - started
    release.set()
    error = json.loads(answer["Payload"].read())
    assert answer["FunctionError"] == "Unhandled" and error["errorType"] == "Sandbox.Timedout"
    assert error["errorMessage"] == "Task timed out after 0.50 seconds" and waited < 30
