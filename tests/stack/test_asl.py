"""The real ingest and bulk-cutout state machines, executed by moto's ASL engine.

Toy Python functions stand in for the Lambda handlers, served by our Lambda Invoke
endpoint (:mod:`cubecut_infra.local.lambda_invoke`) exactly as the real ones are: the
engine invokes them over HTTP and sees their exceptions as Lambda function errors. The
Distributed Map reads its block list from the local S3 server, as Step Functions reads it
from S3. To keep the suite fast, :func:`quick_retries` shortens every retrier to 1 s
intervals with no backoff; the error names, attempts and jitter are the definitions' own.
"""
from __future__ import annotations

import inspect
import json
import re
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

import boto3
import pytest
import yaml
from botocore.exceptions import ClientError

from cubecut import errors, storage
from cubecut_infra.local.sfn import ExecutionResult, LocalStepFunctions
from cubecut_infra.local.template import _Loader, apply_substitutions

ROOT = Path(__file__).resolve().parents[2]
INGEST = (ROOT / "infra" / "statemachines" / "ingest.asl.json").read_text()


class StorageError(Exception):
    """Named like cubecut's retryable error, as Lambda reports it (errorType)."""


class FFIError(Exception):
    """Named like one of cubecut's deterministic input errors."""


class OutsideCubeError(Exception):
    """Named like cubecut's error for a target that is not on the cube."""


#: Lambda's own throttling error name contains a dot, which a class name may too.
Throttled = type("Lambda.TooManyRequestsException", (Exception,), {})


def quick_retries(text: str) -> str:
    """The definition with every retrier's IntervalSeconds 1 and BackoffRate 1."""
    def shorten(node: Any) -> Any:
        if isinstance(node, dict):
            for retrier in node.get("Retry", []):
                retrier.update(IntervalSeconds=1, BackoffRate=1.0)
            return {key: shorten(value) for key, value in node.items()}
        if isinstance(node, list):
            return [shorten(item) for item in node]
        return node

    return json.dumps(shorten(json.loads(text)))


class Engine:
    """One local Step Functions endpoint with toy functions registered by name."""

    def __init__(self, sfn: LocalStepFunctions) -> None:
        self.sfn, self.names = sfn, []

    def function(self, name: str, handler: Callable[[Any, Any], Any], timeout_s: float = 60) -> str:
        self.names.append(name)
        return self.sfn.lambdas.add(name, handler, timeout_s=timeout_s)

    def run(self, definition: str, payload: Any) -> ExecutionResult:
        return self.sfn.run(self.sfn.register(f"test-{uuid.uuid4().hex[:8]}", definition), payload, timeout=120)

    def events(self, execution: ExecutionResult, kind: str) -> list[dict[str, Any]]:
        history = self.sfn.client().get_execution_history(executionArn=execution.arn, maxResults=1000)["events"]
        return [event for event in history if event["type"] == kind]


@pytest.fixture
def engine(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    sfn = LocalStepFunctions()
    for key, value in sfn.environment().items():
        monkeypatch.setenv(key, value)
    sfn.start()
    toys = Engine(sfn)
    yield toys
    for name in toys.names:
        sfn.lambdas.remove(name)
    sfn.stop()


@pytest.fixture
def s3(s3_endpoint: str) -> Any:
    return boto3.client("s3", endpoint_url=s3_endpoint)


class ToyIngest:
    """Plan/Block/Finalize/Abort with the real contracts, recording what they were asked."""

    def __init__(self, engine: Engine, s3: Any, bucket: str, nblocks: int, block_seconds: float = 0.05) -> None:
        self.engine, self.s3, self.bucket, self.nblocks, self.block_seconds = engine, s3, bucket, nblocks, block_seconds
        self.parts: dict[int, str] = {}
        self.plan_output: dict[str, Any] | None = None
        self.block_calls: list[int] = []
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

    def run(self, max_concurrency: int = 4, timeouts: dict[str, float] | None = None,
            edit: Callable[[str], str] = lambda text: text, **overrides: Callable[[Any, Any], Any]) -> ExecutionResult:
        """``timeouts``: function timeouts (s) by name (default 60); ``edit``: a change to the
        definition's text before it runs."""
        handlers = {"plan": self.plan, "block": self.block, "finalize": self.finalize, "abort": self.abort,
                    **overrides}
        counted = handlers["block"]

        def block(event: dict[str, Any], context: Any) -> Any:
            with self.lock:
                self.block_calls.append(event["block"])
            return counted(event, context)

        handlers["block"] = block
        arns = {f"{name.title()}FunctionArn": self.engine.function(name, fn, (timeouts or {}).get(name, 60))
                for name, fn in handlers.items()}
        definition = edit(apply_substitutions(INGEST, {**arns, "MaxConcurrency": max_concurrency}))
        return self.engine.run(quick_retries(definition), INGEST_INPUT)


INGEST_INPUT = {"ffis": ["s3://somewhere/a.fits", "s3://somewhere/b.fits"], "cube": "s3://out/cubes/c.fits"}
ARN = "arn:aws:lambda:us-east-1:123456789012:function:"


# ---------------------------------------------------------------------------- ingest
def test_every_block_is_written_once_with_bounded_parallelism(engine: Engine, s3: Any, bucket: str) -> None:
    toy = ToyIngest(engine, s3, bucket, nblocks=12, block_seconds=0.3)
    execution = toy.run(max_concurrency=4)

    assert execution.status == "SUCCEEDED", execution.cause
    assert execution.output == {"cube": "s3://out/cubes/c.fits", "index": "s3://out/cubes/c.fits.index.json",
                                "etag": "cube-etag", "size": 1200}
    assert sorted(toy.block_calls) == list(range(12)) and sorted(toy.parts) == list(range(1, 13))
    assert execution.invocations[ARN + "block"] == 12
    assert 1 < execution.max_concurrency[ARN + "block"] <= 4, "concurrent, bounded by MaxConcurrency"
    assert execution.invocations[ARN + "plan"] == execution.invocations[ARN + "finalize"] == 1
    assert ARN + "abort" not in execution.invocations
    # ResultPath null: Finalize gets exactly Plan's output, however many blocks there were.
    assert toy.finalize_inputs == [toy.plan_output]


@pytest.mark.parametrize("error_cls", [StorageError, Throttled])
def test_a_killed_first_attempt_of_one_block_is_retried(engine: Engine, s3: Any, bucket: str,
                                                         error_cls: type[Exception]) -> None:
    toy = ToyIngest(engine, s3, bucket, nblocks=6)
    state = {"failed": False}

    def block(event: Any, context: Any) -> Any:
        if event["block"] == 3 and not state["failed"]:
            state["failed"] = True
            raise error_cls("killed on purpose (first attempt)")
        return toy.block(event, context)

    execution = toy.run(block=block)
    assert execution.status == "SUCCEEDED", execution.cause
    assert sorted(toy.block_calls) == [0, 1, 2, 3, 3, 4, 5]
    assert sorted(toy.parts) == list(range(1, 7))


def test_a_persistent_transient_error_is_retried_six_times_then_aborted(engine: Engine, s3: Any,
                                                                         bucket: str) -> None:
    toy = ToyIngest(engine, s3, bucket, nblocks=1)

    def always_failing(event: Any, context: Any) -> Any:
        raise StorageError("S3 is down")

    execution = toy.run(block=always_failing)
    assert toy.block_calls == [0] * 7, "1 attempt + MaxAttempts 6"
    assert execution.status == "FAILED" and len(toy.abort_inputs) == 1


def test_a_failed_block_aborts_the_upload_and_fails_with_the_error(engine: Engine, s3: Any, bucket: str) -> None:
    toy = ToyIngest(engine, s3, bucket, nblocks=8)

    def block(event: dict[str, Any], context: Any) -> dict[str, Any]:
        if event["block"] == 5:
            raise FFIError("ffi 5 is truncated")
        return toy.block(event, context)

    execution = toy.run(block=block)
    # A Distributed Map reports a failed child execution as exceeding the tolerated failures.
    assert execution.status == "FAILED"
    assert execution.error == "States.ExceedToleratedFailureThreshold"
    assert len(toy.abort_inputs) == 1
    abort_input = toy.abort_inputs[0]
    # the request stays beside Plan's output (ResultPath $.planned): Abort knows the manifest
    assert {k: v for k, v in abort_input.items() if k != "error"} == {**INGEST_INPUT, "planned": toy.plan_output}
    assert abort_input["error"]["Error"] == "States.ExceedToleratedFailureThreshold"
    assert toy.finalize_inputs == []
    assert toy.block_calls.count(5) == 1, "deterministic input errors are not retried"


def test_a_failed_finalize_aborts_and_the_execution_reports_its_error(engine: Engine, s3: Any, bucket: str) -> None:
    toy = ToyIngest(engine, s3, bucket, nblocks=2)

    def finalize(event: Any, context: Any) -> Any:
        raise RuntimeError("index write refused")

    execution = toy.run(finalize=finalize)
    assert (execution.status, execution.error) == ("FAILED", "RuntimeError")
    cause = json.loads(execution.cause)  # Lambda's error document, passed through by the Fail state
    assert cause["errorType"] == "RuntimeError" and cause["errorMessage"] == "index write refused"
    assert cause["stackTrace"] and "finalize" in "".join(cause["stackTrace"])
    assert toy.abort_inputs[0]["planned"]["upload_id"] == "upload-1"


def test_a_failed_abort_still_fails_with_the_original_error(engine: Engine, s3: Any, bucket: str) -> None:
    toy = ToyIngest(engine, s3, bucket, nblocks=2)

    def finalize(event: Any, context: Any) -> Any:
        raise RuntimeError("index write refused")

    def abort(event: Any, context: Any) -> Any:
        raise RuntimeError("abort refused too")

    execution = toy.run(finalize=finalize, abort=abort)
    assert (execution.status, execution.error) == ("FAILED", "RuntimeError")
    assert "index write refused" in execution.cause


def test_a_failed_plan_goes_to_abort_once_and_fails_with_its_error(engine: Engine, s3: Any, bucket: str) -> None:
    """Abort reports a manifest's failure beside it; FFIError is not retried."""
    toy = ToyIngest(engine, s3, bucket, nblocks=2)

    def plan(event: Any, context: Any) -> Any:
        raise FFIError("not a FITS file")

    execution = toy.run(plan=plan)
    assert (execution.status, execution.error) == ("FAILED", "FFIError")
    assert execution.invocations == {ARN + "plan": 1, ARN + "abort": 1}


def test_a_missing_block_list_fails_the_map_and_aborts(engine: Engine, s3: Any, bucket: str) -> None:
    toy = ToyIngest(engine, s3, bucket, nblocks=2)

    def plan(event: Any, context: Any) -> Any:
        return {**toy.plan(event, context), "blocks": {"Bucket": bucket, "Key": "nowhere.json"}}

    execution = toy.run(plan=plan)
    assert execution.status == "FAILED" and len(toy.abort_inputs) == 1
    assert toy.block_calls == []


def _slow_first_attempt(toy: ToyIngest, seconds: float) -> Callable[[Any, Any], Any]:
    """Block 0's first attempt outlives its timeout (then finishes, as a thread must)."""
    tried: list[int] = []

    def block(event: dict[str, Any], context: Any) -> dict[str, Any]:
        if event["block"] == 0 and not tried:
            tried.append(0)
            time.sleep(seconds)
        return toy.block(event, context)

    return block


def test_a_block_that_outlives_its_function_timeout_is_retried(engine: Engine, s3: Any, bucket: str) -> None:
    """Lambda answers a timed-out invocation with Sandbox.Timedout; Block retries it."""
    toy = ToyIngest(engine, s3, bucket, nblocks=3)
    execution = toy.run(block=_slow_first_attempt(toy, 3.0), timeouts={"block": 1.0})
    assert execution.status == "SUCCEEDED", execution.cause
    assert sorted(toy.block_calls) == [0, 0, 1, 2] and toy.abort_inputs == []


def test_a_block_that_outlives_its_task_timeout_is_retried(engine: Engine, s3: Any, bucket: str) -> None:
    """The Task's own TimeoutSeconds (States.Timeout) is the backstop, retried too."""
    toy = ToyIngest(engine, s3, bucket, nblocks=3)
    execution = toy.run(block=_slow_first_attempt(toy, 3.0),
                        edit=lambda text: text.replace('"TimeoutSeconds": 660', '"TimeoutSeconds": 1'))
    assert execution.status == "SUCCEEDED", execution.cause
    assert sorted(toy.block_calls) == [0, 0, 1, 2] and toy.abort_inputs == []


# ---------------------------------------------------------------------------- definitions
def test_the_engine_rejects_a_broken_definition(engine: Engine) -> None:
    broken = {"StartAt": "A", "States": {"A": {"Type": "Pass", "Nxt": "B"}, "B": {"Type": "Succeed"}}}
    with pytest.raises(ClientError, match="ASLParserException"):  # moto's InvalidDefinition
        engine.sfn.register("broken", json.dumps(broken))


def _objects(node: Any) -> Iterator[dict[str, Any]]:
    """Every JSON object in a definition, nested ones included (states, retriers, ...)."""
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _objects(value)
    elif isinstance(node, list):
        for item in node:
            yield from _objects(item)


def _error_names(definition: Any) -> Iterator[str]:
    for node in _objects(definition):
        for handler in node.get("Retry", []) + node.get("Catch", []):
            yield from handler["ErrorEquals"]


@pytest.mark.parametrize("path", ["ingest.asl.json", "bulk.asl.json"])
def test_every_error_name_in_the_definitions_is_an_exception_class(path: str) -> None:
    """Retry and Catch match Lambda's errorType, the exception's class name: a renamed or
    misspelt class would silently stop matching."""
    text = (ROOT / "infra" / "statemachines" / path).read_text()
    definition = json.loads(re.sub(r"\$\{\w+\}", "1", text))  # every placeholder: 1 or "1"
    ours = {name for name in _error_names(definition)
            if not name.startswith(("States.", "Lambda.", "Runtime.", "Sandbox."))}
    classes = {name for module in (errors, storage) for name, value in vars(module).items()
               if inspect.isclass(value) and issubclass(value, Exception)}
    assert ours, "the definition names some of our errors"
    assert ours <= classes, f"not exception classes of cubecut.errors or cubecut.storage: {sorted(ours - classes)}"


#: Task TimeoutSeconds is the function's own timeout plus this: Lambda's timeout
#: (``Sandbox.Timedout``) comes first, the Task's (``States.Timeout``) is the backstop.
TASK_TIMEOUT_MARGIN = 60
TIMEOUT_ERRORS = {"Sandbox.Timedout", "Lambda.Unknown", "States.Timeout"}


def _tasks(definition: Any) -> Iterator[dict[str, Any]]:
    return (node for node in _objects(definition) if node.get("Type") == "Task")


@pytest.mark.parametrize("machine", ["IngestStateMachine", "BulkStateMachine"])
def test_every_task_outlives_its_function_and_retries_a_timeout(machine: str) -> None:
    """A Task without TimeoutSeconds never raises States.Timeout; every task here is safe to
    run again, so a timed-out attempt (as Lambda or as Step Functions reports it) is retried."""
    template = yaml.load((ROOT / "template.yaml").read_text(), Loader=_Loader)
    properties = template["Resources"][machine]["Properties"]
    functions = {f"${{{name}}}": value["Fn::GetAtt"][0] for name, value in properties["DefinitionSubstitutions"].items()
                 if isinstance(value, dict) and "Fn::GetAtt" in value}
    text = (ROOT / properties["DefinitionUri"]).read_text()
    definition = json.loads(re.sub(r"\$\{MaxConcurrency\}", "1", text))
    tasks = [task for task in _tasks(definition) if task["Resource"] in functions]
    assert tasks
    for task in tasks:
        timeout = template["Resources"][functions[task["Resource"]]]["Properties"]["Timeout"]
        assert task["TimeoutSeconds"] == timeout + TASK_TIMEOUT_MARGIN, task["Resource"]
        retried = {name for retrier in task["Retry"] if retrier.get("MaxAttempts", 3) > 0
                   for name in retrier["ErrorEquals"]}
        assert TIMEOUT_ERRORS <= retried or "States.TaskFailed" in retried and "States.Timeout" in retried, \
            task["Resource"]
