"""The real ingest and bulk-cutout state machines, run by the local ASL interpreter.

Toy Python callables stand in for the Lambda functions; the Distributed Map reads its
block list from the local S3 server, as Step Functions reads it from S3.
"""
from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any, Callable

import boto3
import pytest

from cubecut_infra.local.asl import (
    PAYLOAD_LIMIT_BYTES,
    ASLValidationError,
    StateMachineRunner,
    UnsupportedASLError,
    apply_substitutions,
    validate_definition,
)

ROOT = Path(__file__).resolve().parents[1]
INGEST = (ROOT / "infra" / "statemachines" / "ingest.asl.json").read_text()
CUTOUTS = (ROOT / "infra" / "statemachines" / "cutouts.asl.json").read_text()
ARN = "arn:aws:lambda:us-east-1:123456789012:function:"
PLAN, BLOCK, FINALIZE, ABORT = (ARN + name for name in ("plan", "block", "finalize", "abort"))
CUTOUT, ZIP = ARN + "cutout", ARN + "zip"
FAST = 0.001  # retry_time_scale: the ASL's 2 s .. 60 s backoffs become milliseconds


class StorageError(Exception):
    """Named like cubecut's retryable error, as Lambda reports it (errorType)."""


class FFIError(Exception):
    """Named like one of cubecut's deterministic input errors."""


class OutsideCubeError(Exception):
    """Named like cubecut's error for a target that is not on the cube."""


#: Lambda's own throttling error name contains a dot, which a class name may too.
Throttled = type("Lambda.TooManyRequestsException", (Exception,), {})


def fail_first_attempt(fn: Callable[[Any, Any], Any], error_cls: type[Exception]) -> Callable[[Any, Any], Any]:
    """Wrap a resource so that its first call (of all calls) raises ``error_cls``."""
    lock, state = threading.Lock(), {"failed": False}

    def wrapped(event: Any, context: Any) -> Any:
        with lock:
            first, state["failed"] = not state["failed"], True
        if first:
            raise error_cls("killed on purpose (first attempt)")
        return fn(event, context)

    return wrapped


class ToyIngest:
    """Plan/Block/Finalize/Abort with the real contracts, recording what they were asked."""

    def __init__(self, s3: Any, bucket: str, nblocks: int, block_seconds: float = 0.03) -> None:
        self.s3, self.bucket, self.nblocks, self.block_seconds = s3, bucket, nblocks, block_seconds
        self.parts: dict[int, str] = {}
        self.plan_output: dict[str, Any] | None = None
        self.finalize_inputs: list[dict[str, Any]] = []
        self.abort_inputs: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def plan(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        assert context.function_name == "plan" and context.get_remaining_time_in_millis() > 0
        key = "cubes/c.fits.ingest/p1/blocks.json"
        items = [{"block": i} for i in range(self.nblocks)]
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=json.dumps(items).encode())
        self.plan_output = {"plan": f"s3://{self.bucket}/cubes/c.fits.ingest/p1/plan.json", "cube": event["cube"],
                            "upload_id": "upload-1", "blocks": {"Bucket": self.bucket, "Key": key},
                            "nblocks": self.nblocks}
        return self.plan_output

    def block(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        assert set(event) == {"plan", "block"} and event["plan"] == self.plan_output["plan"]
        time.sleep(self.block_seconds)
        part = event["block"] + 1
        with self.lock:
            self.parts[part] = f"etag-{part}"
        return {"part": part, "etag": f"etag-{part}", "size": 100}

    def finalize(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        self.finalize_inputs.append(event)
        assert sorted(self.parts) == list(range(1, self.nblocks + 1)), "finalize before every part was written"
        return {"cube": event["cube"], "index": event["cube"] + ".index.json", "etag": "cube-etag",
                "size": 100 * self.nblocks}

    def abort(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        self.abort_inputs.append(event)
        return {"aborted": True}

    def resources(self, **overrides: Callable[[Any, Any], Any]) -> dict[str, Callable[[Any, Any], Any]]:
        resources = {PLAN: self.plan, BLOCK: self.block, FINALIZE: self.finalize, ABORT: self.abort}
        resources.update({ARN + name: fn for name, fn in overrides.items()})
        return resources


def ingest_runner(resources: dict[str, Any], s3: Any, max_concurrency: int = 4) -> StateMachineRunner:
    return StateMachineRunner(INGEST, resources, s3_client=s3, retry_time_scale=FAST, substitutions={
        "PlanFunctionArn": PLAN, "BlockFunctionArn": BLOCK, "FinalizeFunctionArn": FINALIZE,
        "AbortFunctionArn": ABORT, "MaxConcurrency": max_concurrency})


INGEST_INPUT = {"ffis": ["s3://somewhere/a.fits", "s3://somewhere/b.fits"], "cube": "s3://out/cubes/c.fits"}


@pytest.fixture
def s3(s3_endpoint: str) -> Any:
    return boto3.client("s3", endpoint_url=s3_endpoint)


# ---------------------------------------------------------------------------- ingest
def test_every_block_is_written_once_with_bounded_parallelism(s3: Any, bucket: str) -> None:
    toy = ToyIngest(s3, bucket, nblocks=12)
    execution = ingest_runner(toy.resources(), s3, max_concurrency=4).run(INGEST_INPUT)

    assert execution.status == "SUCCEEDED", execution.cause
    assert execution.output == {"cube": "s3://out/cubes/c.fits", "index": "s3://out/cubes/c.fits.index.json",
                                "etag": "cube-etag", "size": 1200}
    assert execution.invocations[BLOCK] == 12
    assert 1 < execution.max_concurrency[BLOCK] <= 4
    assert sorted(toy.parts) == list(range(1, 13))
    assert execution.invocations[PLAN] == execution.invocations[FINALIZE] == 1 and ABORT not in execution.invocations
    # ResultPath null: Finalize gets exactly Plan's output, however many blocks there were.
    assert toy.finalize_inputs == [toy.plan_output]
    assert len(execution.events("MapIterationSucceeded")) == 12


def test_history_is_ordered_and_timestamped(s3: Any, bucket: str) -> None:
    execution = ingest_runner(ToyIngest(s3, bucket, nblocks=3).resources(), s3).run(INGEST_INPUT)
    assert [event.id for event in execution.history] == list(range(1, len(execution.history) + 1))
    stamps = [event.timestamp for event in execution.history]
    assert stamps == sorted(stamps) and all(stamp.tzinfo is not None for stamp in stamps)
    assert execution.history[0].type == "ExecutionStarted" and execution.history[-1].type == "ExecutionSucceeded"
    assert execution.started <= execution.stopped


@pytest.mark.parametrize("error_cls", [StorageError, Throttled])
def test_a_killed_first_attempt_of_one_block_is_retried(s3: Any, bucket: str, error_cls: type[Exception]) -> None:
    toy = ToyIngest(s3, bucket, nblocks=6)
    resources = toy.resources(block=fail_first_attempt(toy.block, error_cls))
    execution = ingest_runner(resources, s3).run(INGEST_INPUT)

    assert execution.status == "SUCCEEDED", execution.cause
    assert execution.invocations[BLOCK] == 7
    retries = execution.events("RetryScheduled")
    assert [(event.details["error"], event.details["attempt"]) for event in retries] == [(error_cls.__name__, 1)]
    assert sorted(toy.parts) == list(range(1, 7))


def test_a_persistent_transient_error_is_retried_six_times_then_aborted(s3: Any, bucket: str) -> None:
    toy = ToyIngest(s3, bucket, nblocks=1)

    def always_failing(event: Any, context: Any) -> Any:
        raise StorageError("S3 is down")

    execution = ingest_runner(toy.resources(block=always_failing), s3).run(INGEST_INPUT)
    assert execution.invocations[BLOCK] == 7  # 1 attempt + MaxAttempts 6
    assert execution.status == "FAILED" and len(toy.abort_inputs) == 1


def test_a_failed_block_aborts_the_upload_and_fails_with_the_error(s3: Any, bucket: str) -> None:
    toy = ToyIngest(s3, bucket, nblocks=8)

    def block(event: dict[str, Any], context: Any) -> dict[str, Any]:
        if event["block"] == 5:
            raise FFIError("ffi 5 is truncated")
        return toy.block(event, context)

    execution = ingest_runner(toy.resources(block=block), s3).run(INGEST_INPUT)

    # A Distributed Map reports a failed child execution as exceeding the tolerated failures.
    assert execution.status == "FAILED"
    assert execution.error == "States.ExceedToleratedFailureThreshold"
    assert "FFIError" in execution.cause and "ffi 5 is truncated" in execution.cause
    assert len(toy.abort_inputs) == 1
    abort_input = toy.abort_inputs[0]
    assert {k: v for k, v in abort_input.items() if k != "error"} == toy.plan_output
    assert abort_input["error"]["Error"] == "States.ExceedToleratedFailureThreshold"
    assert FINALIZE not in execution.invocations
    # Deterministic input errors are not retried.
    failed_attempts = [e for e in execution.events("TaskFailed") if e.details["error"] == "FFIError"]
    assert len(failed_attempts) == 1 and not execution.events("RetryScheduled")


def test_a_failed_finalize_aborts_and_the_execution_reports_its_error(s3: Any, bucket: str) -> None:
    toy = ToyIngest(s3, bucket, nblocks=2)

    def finalize(event: Any, context: Any) -> Any:
        raise RuntimeError("index write refused")

    execution = ingest_runner(toy.resources(finalize=finalize), s3).run(INGEST_INPUT)
    assert (execution.status, execution.error) == ("FAILED", "RuntimeError")
    cause = json.loads(execution.cause)  # Lambda's error JSON, passed through by the Fail state
    assert cause["errorType"] == "RuntimeError" and cause["errorMessage"] == "index write refused"
    assert toy.abort_inputs[0]["upload_id"] == "upload-1"


def test_a_failed_abort_still_fails_with_the_original_error(s3: Any, bucket: str) -> None:
    toy = ToyIngest(s3, bucket, nblocks=2)

    def finalize(event: Any, context: Any) -> Any:
        raise RuntimeError("index write refused")

    def abort(event: Any, context: Any) -> Any:
        raise RuntimeError("abort refused too")

    execution = ingest_runner(toy.resources(finalize=finalize, abort=abort), s3).run(INGEST_INPUT)
    assert (execution.status, execution.error) == ("FAILED", "RuntimeError")
    assert "index write refused" in execution.cause


def test_a_failed_plan_fails_without_abort(s3: Any, bucket: str) -> None:
    toy = ToyIngest(s3, bucket, nblocks=2)

    def plan(event: Any, context: Any) -> Any:
        raise FFIError("not a FITS file")

    execution = ingest_runner(toy.resources(plan=plan), s3).run(INGEST_INPUT)
    assert (execution.status, execution.error) == ("FAILED", "FFIError")
    assert execution.invocations == {PLAN: 1}


def test_a_missing_block_list_fails_the_map_and_aborts(s3: Any, bucket: str) -> None:
    toy = ToyIngest(s3, bucket, nblocks=2)

    def plan(event: Any, context: Any) -> Any:
        return {**toy.plan(event, context), "blocks": {"Bucket": bucket, "Key": "nowhere.json"}}

    execution = ingest_runner(toy.resources(plan=plan), s3).run(INGEST_INPUT)
    assert (execution.status, execution.error) == ("FAILED", "States.ItemReaderFailed")
    assert len(toy.abort_inputs) == 1


# ---------------------------------------------------------------------------- bulk cutouts
def test_bulk_cutouts_record_bad_targets_and_zip_the_rest() -> None:
    calls: list[dict[str, Any]] = []

    def cutout(event: dict[str, Any], context: Any) -> dict[str, Any]:
        calls.append(event)
        if event["ra"] < 0:
            raise OutsideCubeError("not on this cube")
        return {"key": f"results/job/{event['index']}.fits"}

    def zip_(event: dict[str, Any], context: Any) -> dict[str, Any]:
        assert set(event) == {"job", "results"}
        return {"zip": event["job"] + "all.zip", "n": len(event["results"])}

    runner = StateMachineRunner(CUTOUTS, {CUTOUT: cutout, ZIP: zip_}, retry_time_scale=FAST, substitutions={
        "CutoutFunctionArn": CUTOUT, "ZipFunctionArn": ZIP, "MaxConcurrency": 2})
    targets = [{"ra": 10.0, "dec": 5.0, "size": [5, 5]}, {"ra": -1.0, "dec": 5.0, "size": [5, 5]},
               {"ra": 11.0, "dec": 6.0, "size": [3, 4]}]
    execution = runner.run({"job": "s3://b/results/job/", "cube": "s3://b/cubes/c.fits", "targets": targets})

    assert execution.status == "SUCCEEDED", execution.cause
    assert execution.output == {"zip": "s3://b/results/job/all.zip", "n": 3}
    assert sorted(call["index"] for call in calls) == [0, 1, 2]
    assert {k: calls[0][k] for k in ("cube", "job")} == {"cube": "s3://b/cubes/c.fits", "job": "s3://b/results/job/"}
    assert execution.max_concurrency[CUTOUT] <= 2
    zip_input = execution.events("TaskScheduled")[-1].details["input"]
    assert zip_input["results"][0] == {"key": "results/job/0.fits"}
    assert zip_input["results"][1]["error"]["Error"] == "OutsideCubeError"


# ---------------------------------------------------------------------------- semantics
def run_inline(definition: dict[str, Any], resources: dict[str, Any] | None = None, input_: Any = None) -> Any:
    return StateMachineRunner(definition, resources or {}, retry_time_scale=0).run(input_)


def test_paths_payload_templates_intrinsics_and_choice() -> None:
    definition = {
        "StartAt": "Shape",
        "States": {
            "Shape": {"Type": "Pass", "InputPath": "$.req",
                      "Parameters": {"n.$": "$.n", "label.$": "States.Format('cube {} of {}', $.n, $.name)",
                                     "list.$": "States.Array($.n, 'x')", "doc.$": "States.StringToJson($.raw)",
                                     "text.$": "States.JsonToString($.obj)", "fixed": {"deep.$": "$.name"},
                                     "state.$": "$$.State.Name"},
                      "ResultPath": "$.shaped", "Next": "Pick"},
            "Pick": {"Type": "Choice", "Choices": [
                {"And": [{"Variable": "$.shaped.n", "NumericGreaterThan": 2},
                         {"Not": {"Variable": "$.shaped.label", "StringEquals": "nope"}}], "Next": "Big"},
                {"Variable": "$.missing", "IsPresent": False, "Next": "Small"}], "Default": "Small"},
            "Big": {"Type": "Pass", "Result": {"big": True}, "ResultPath": "$.verdict", "OutputPath": "$.verdict",
                    "End": True},
            "Small": {"Type": "Succeed"},
        },
    }
    execution = run_inline(definition, input_={"req": {"n": 3, "name": "s1", "raw": "{\"a\": [1]}",
                                                       "obj": {"b": 2}}})
    assert execution.status == "SUCCEEDED", execution.cause
    assert execution.output == {"big": True}
    shaped = execution.events("PassStateExited")[0].details["output"]["shaped"]
    assert shaped == {"n": 3, "label": "cube 3 of s1", "list": [3, "x"], "doc": {"a": [1]}, "text": "{\"b\":2}",
                      "fixed": {"deep": "s1"}, "state": "Shape"}


def test_inline_map_with_item_selector_result_selector_and_output_path() -> None:
    def double(event: dict[str, Any], context: Any) -> dict[str, Any]:
        return {"value": event["x"] * 2, "noise": "dropped"}

    definition = {
        "StartAt": "Each",
        "States": {"Each": {
            "Type": "Map", "ItemsPath": "$.xs", "MaxConcurrency": 2,
            "ItemSelector": {"x.$": "$$.Map.Item.Value", "i.$": "$$.Map.Item.Index", "tag.$": "$.tag"},
            "ItemProcessor": {"StartAt": "Double", "States": {"Double": {
                "Type": "Task", "Resource": ARN + "double", "ResultSelector": {"v.$": "$.value"},
                "ResultPath": "$.out", "OutputPath": "$.out.v", "End": True}}},
            "ResultPath": "$.doubled", "End": True}},
    }
    execution = run_inline(definition, {ARN + "double": double}, {"xs": [1, 2, 3], "tag": "t"})
    assert execution.output == {"xs": [1, 2, 3], "tag": "t", "doubled": [2, 4, 6]}
    assert execution.invocations[ARN + "double"] == 3 and execution.max_concurrency[ARN + "double"] <= 2


def test_catch_result_path_and_task_failed_wildcard() -> None:
    def boom(event: Any, context: Any) -> Any:
        raise KeyError("k")

    definition = {"StartAt": "T", "States": {
        "T": {"Type": "Task", "Resource": ARN + "boom",
              "Retry": [{"ErrorEquals": ["States.Timeout"], "MaxAttempts": 5}],
              "Catch": [{"ErrorEquals": ["States.TaskFailed"], "ResultPath": "$.err", "Next": "Fail"}], "End": True},
        "Fail": {"Type": "Fail", "ErrorPath": "$.err.Error", "CausePath": "States.Format('wrapped: {}', $.err.Cause)"}}}
    execution = run_inline(definition, {ARN + "boom": boom}, {"keep": 1})
    assert (execution.status, execution.error) == ("FAILED", "KeyError")
    assert execution.cause.startswith("wrapped: {") and execution.invocations[ARN + "boom"] == 1


def test_task_timeout() -> None:
    def slow(event: Any, context: Any) -> Any:
        time.sleep(1.3)
        return {}

    definition = {"StartAt": "T", "States": {"T": {"Type": "Task", "Resource": ARN + "slow", "TimeoutSeconds": 1,
                                                   "End": True}}}
    execution = run_inline(definition, {ARN + "slow": slow})
    assert (execution.status, execution.error) == ("FAILED", "States.Timeout")


def test_runtime_and_data_limit_errors_cannot_be_caught() -> None:
    def big(event: Any, context: Any) -> Any:
        return {"blob": "x" * PAYLOAD_LIMIT_BYTES}

    catch_all = [{"ErrorEquals": ["States.ALL"], "Next": "Handled"}]
    for task, error in (({"Parameters": {"a.$": "$.not_there"}, "Resource": ARN + "big"}, "States.Runtime"),
                        ({"Resource": ARN + "big"}, "States.DataLimitExceeded")):
        definition = {"StartAt": "T", "States": {
            "T": {"Type": "Task", **task, "Retry": [{"ErrorEquals": ["States.ALL"]}], "Catch": catch_all,
                  "End": True},
            "Handled": {"Type": "Succeed"}}}
        execution = run_inline(definition, {ARN + "big": big}, {})
        assert (execution.status, execution.error) == ("FAILED", error)


def test_a_result_that_is_not_json_is_a_marshal_error() -> None:
    definition = {"StartAt": "T", "States": {"T": {"Type": "Task", "Resource": ARN + "bad", "End": True}}}
    execution = run_inline(definition, {ARN + "bad": lambda event, context: {"when": object()}})
    assert execution.error == "Runtime.MarshalError"


# ---------------------------------------------------------------------------- validation
def test_the_real_definitions_are_valid() -> None:
    for text, names in ((INGEST, ("PlanFunctionArn", "BlockFunctionArn", "FinalizeFunctionArn",
                                  "AbortFunctionArn")),
                        (CUTOUTS, ("CutoutFunctionArn", "ZipFunctionArn"))):
        substitutions = {name: ARN + name for name in names} | {"MaxConcurrency": 10}
        assert validate_definition(json.loads(apply_substitutions(text, substitutions))) == []


GOOD = {"StartAt": "A", "States": {"A": {"Type": "Pass", "Next": "B"}, "B": {"Type": "Succeed"}}}


def broken(**changes: Any) -> dict[str, Any]:
    definition = json.loads(json.dumps(GOOD))
    for path, value in changes.items():
        node = definition
        *parents, last = path.split("__")
        for key in parents:
            node = node[key]
        node[last] = value
    return definition


@pytest.mark.parametrize("definition, problem", [
    (broken(StartAt="Nope"), "StartAt 'Nope' is not a state"),
    (broken(States__A__Next="Nowhere"), "Next 'Nowhere' is not a state"),
    (broken(States__C={"Type": "Succeed"}), "'C' is unreachable"),
    (broken(States__B={"Type": "Pass", "Next": "A"}), "no terminal state"),
    (broken(States__A__End=True), "exactly one of Next and End"),
    (broken(States__A={"Type": "Choice", "Choices": [{"Variable": "$.x", "StringEquals": 1}], "Default": "B"}),
     "wrong type"),
    (broken(States__A={"Type": "Choice", "Choices": [{"Variable": "$.x", "NumericEquals": 1}]}),
     "Next None is not a state"),
    (broken(States__A={"Type": "Choice", "Choices": [{"And": [{"Variable": "$.x", "IsNull": True, "Next": "B"}],
                                                      "Next": "B"}]}), "nested rule cannot have Next"),
    (broken(States__A={"Type": "Task", "Resource": "r", "Next": "B",
                       "Retry": [{"ErrorEquals": ["States.ALL"]}, {"ErrorEquals": ["X"]}]}), "States.ALL must appear"),
    (broken(States__A={"Type": "Task", "Resource": "r", "Next": "B",
                       "Retry": [{"ErrorEquals": ["X"], "BackoffRate": 0.5}]}), "BackoffRate"),
    (broken(States__A={"Type": "Task", "Resource": "r", "Next": "B",
                       "Catch": [{"ErrorEquals": ["States.Bogus"], "Next": "B"}]}), "unknown error name"),
    (broken(States__A__Nxt="B"), "unknown field 'Nxt'"),
])
def test_validation_rejects_broken_definitions(definition: dict[str, Any], problem: str) -> None:
    problems = validate_definition(definition)
    assert any(problem in text for text in problems), problems
    with pytest.raises(ASLValidationError):
        StateMachineRunner(definition, {"r": lambda e, c: e})


def _map_state(**extra: Any) -> dict[str, Any]:
    return {"Type": "Map", "ItemsPath": "$.xs", "Next": "B", **extra,
            "ItemProcessor": {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}}


@pytest.mark.parametrize("definition, problem", [
    (broken(States__A=_map_state(ItemSelector={}, ItemBatcher={"MaxItemsPerBatch": 10})),
     "ItemSelector together with ItemBatcher"),
    (broken(States__A=_map_state(ResultWriter={"Resource": "arn:aws:states:::s3:putObject",
                                               "WriterConfig": {"OutputType": "JSONL"}})), "'WriterConfig'"),
    (broken(States__A=_map_state(ToleratedFailurePercentage=5)), "'ToleratedFailurePercentage'"),
    (broken(States__A={"Type": "Parallel", "Branches": [], "Next": "B"}), "Type 'Parallel'"),
    (broken(States__A={"Type": "Wait", "Seconds": 1, "Next": "B"}), "Type 'Wait'"),
    (broken(States__A={"Type": "Pass", "Parameters": {"h.$": "States.Hash($.x, 'SHA-1')"}, "Next": "B"}),
     "intrinsic function States.Hash"),
    (broken(States__A={"Type": "Pass", "Parameters": {"all.$": "$.items[*].id"}, "Next": "B"}),
     "not a reference path"),
    (broken(States__A={"Type": "Choice", "Choices": [{"Variable": "$.x", "StringMatches": "a*", "Next": "B"}]}),
     "comparison operator StringMatches"),
    (broken(QueryLanguage="JSONata"), "'QueryLanguage'"),
])
def test_unsupported_parts_are_rejected_before_running(definition: dict[str, Any], problem: str) -> None:
    assert any(problem in text and text.startswith("unsupported") for text in validate_definition(definition))
    with pytest.raises(UnsupportedASLError, match="unsupported"):
        StateMachineRunner(definition, {})


def test_runner_refuses_missing_resources_and_substitutions(s3: Any) -> None:
    with pytest.raises(UnsupportedASLError, match="no local callable"):
        StateMachineRunner(INGEST, {PLAN: print}, s3_client=s3, substitutions={
            "PlanFunctionArn": PLAN, "BlockFunctionArn": BLOCK, "FinalizeFunctionArn": FINALIZE,
            "AbortFunctionArn": ABORT, "MaxConcurrency": 3})
    with pytest.raises(ASLValidationError, match=r"no substitution for \$\{MaxConcurrency\}"):
        StateMachineRunner(INGEST, {}, substitutions={"PlanFunctionArn": PLAN})
    with pytest.raises(ASLValidationError, match="no s3_client"):
        ingest_runner(ToyIngest(s3, "unused", 1).resources(), None)
