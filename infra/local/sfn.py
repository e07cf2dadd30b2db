"""A local Step Functions endpoint: the real API over HTTP, executing our ASL runner.

Handlers start executions the way they do in AWS, with
``boto3.client("stepfunctions").start_execution(...)``; pointing ``AWS_ENDPOINT_URL_SFN``
here makes that call reach :class:`LocalStepFunctions`, which runs the definition with
:class:`~cubecut_infra.local.asl.StateMachineRunner` in a background thread. Implemented
operations (AWS JSON 1.0 protocol): StartExecution (with AWS's name idempotency:
``ExecutionAlreadyExists`` for a reused name with different input), DescribeExecution
and ListExecutions.
"""
from __future__ import annotations

import json
import threading
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Mapping

from .asl import Execution, StateMachineRunner
from .lambda_context import LOCAL_ACCOUNT_ID, LOCAL_REGION


def state_machine_arn(name: str) -> str:
    return f"arn:aws:states:{LOCAL_REGION}:{LOCAL_ACCOUNT_ID}:stateMachine:{name}"


class _Run:
    """One execution: its input, its thread and, once finished, the runner's result."""

    def __init__(self, arn: str, name: str, machine_arn: str, input_text: str) -> None:
        self.arn, self.name, self.machine_arn, self.input_text = arn, name, machine_arn, input_text
        self.started = datetime.now(timezone.utc)
        self.result: Execution | None = None
        self.done = threading.Event()

    def describe(self) -> dict[str, Any]:
        answer: dict[str, Any] = {"executionArn": self.arn, "stateMachineArn": self.machine_arn, "name": self.name,
                                  "status": "RUNNING", "startDate": self.started.timestamp(),
                                  "input": self.input_text}
        if self.result is not None:
            answer["status"] = self.result.status
            answer["stopDate"] = datetime.now(timezone.utc).timestamp()
            if self.result.output is not None:
                answer["output"] = json.dumps(self.result.output)
            if self.result.error:
                answer["error"], answer["cause"] = self.result.error, self.result.cause or ""
        return answer


class LocalStepFunctions:
    """State machines by name, served over HTTP on 127.0.0.1 (port 0 picks a free one)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._machines: dict[str, Callable[[], StateMachineRunner]] = {}
        self._runs: dict[str, _Run] = {}
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer((host, port), self._handler_class())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True, name="local-sfn")

    @property
    def endpoint(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def register(self, name: str, definition: str, resources: Mapping[str, Callable], *,
                 substitutions: Mapping[str, Any], s3_client: Any) -> str:
        """Add a state machine; returns its ARN. The definition is validated now."""
        def make() -> StateMachineRunner:
            return StateMachineRunner(definition, resources, substitutions=substitutions, s3_client=s3_client,
                                      name=name)

        make()  # validate before anything can start it
        arn = state_machine_arn(name)
        self._machines[arn] = make
        return arn

    def start(self) -> str:
        self._thread.start()
        return self.endpoint

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def runs(self) -> list[_Run]:
        with self._lock:
            return list(self._runs.values())

    def wait(self, execution_arn: str, timeout: float | None = None) -> Execution | None:
        run = self._runs[execution_arn]
        run.done.wait(timeout)
        return run.result

    # -- the API ----------------------------------------------------------------------------
    def start_execution(self, body: dict[str, Any]) -> dict[str, Any]:
        machine = body.get("stateMachineArn", "")
        if machine not in self._machines:
            raise _ApiError("StateMachineDoesNotExist", f"State Machine Does Not Exist: '{machine}'")
        name = body.get("name") or datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%f")
        arn = machine.replace(":stateMachine:", ":execution:") + f":{name}"
        input_text = body.get("input", "{}")
        with self._lock:
            existing = self._runs.get(arn)
            if existing is not None:
                if existing.input_text != input_text:
                    raise _ApiError("ExecutionAlreadyExists", f"Execution Already Exists: '{arn}'")
                return {"executionArn": arn, "startDate": existing.started.timestamp()}
            run = self._runs[arn] = _Run(arn, name, machine, input_text)
        runner = self._machines[machine]()

        def execute() -> None:
            try:
                run.result = runner.run(json.loads(input_text), name=name)
            finally:
                run.done.set()

        threading.Thread(target=execute, daemon=True, name=f"execution-{name}").start()
        return {"executionArn": arn, "startDate": run.started.timestamp()}

    def describe_execution(self, body: dict[str, Any]) -> dict[str, Any]:
        run = self._runs.get(body.get("executionArn", ""))
        if run is None:
            raise _ApiError("ExecutionDoesNotExist", f"Execution Does Not Exist: '{body.get('executionArn')}'")
        return run.describe()

    def list_executions(self, body: dict[str, Any]) -> dict[str, Any]:
        runs = [r for r in self.runs() if r.machine_arn == body.get("stateMachineArn")]
        return {"executions": [{k: v for k, v in r.describe().items() if k not in ("input", "output")}
                               for r in runs]}

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        operations = {"StartExecution": self.start_execution, "DescribeExecution": self.describe_execution,
                      "ListExecutions": self.list_executions}

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                target = self.headers.get("X-Amz-Target", "").rsplit(".", 1)[-1]
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                try:
                    if target not in operations:
                        raise _ApiError("UnknownOperationException", f"{target} is not implemented locally")
                    status, answer = 200, operations[target](body)
                except _ApiError as exc:
                    status, answer = 400, {"__type": exc.code, "message": str(exc)}
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/x-amz-json-1.0")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
                return

        return Handler


class _ApiError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
