"""Local Step Functions: moto's ASL engine, with our Lambda Invoke API in front of it.

moto (5.2) executes state machines with its ASL engine (``moto.stepfunctions.parser``,
derived from LocalStack's) once its ``stepfunctions.execute_state_machine`` setting is on
(switched on here, for the process, through moto's ``/moto-api/config`` endpoint). The
engine's Lambda tasks call the Lambda Invoke API of "the moto server",
``http://localhost:$MOTO_PORT``; this module serves moto's application and
:class:`~cubecut_infra.local.lambda_invoke.LambdaInvokeApp` on one port and
:meth:`LocalStepFunctions.environment` gives ``MOTO_PORT`` that port, so the engine's
invocations reach the real handlers and everything else (the Distributed Map's S3
ItemReader included) reaches moto. Clients use the same port through
``AWS_ENDPOINT_URL_SFN`` and ``AWS_ENDPOINT_URL_LAMBDA``. moto's application is served
as it is; its ASL engine is patched in three places by
:func:`~cubecut_infra.local.engine_shim.install`, which :class:`LocalStepFunctions` calls
(see there: a Distributed Map fails on failed items, a Fail state may raise a ``States.*``
name, a ResultWriter reads the state input and lists its result files).

moto's state is per process: the S3 server of :class:`~cubecut_infra.local.s3server.LocalS3`
and this one see the same buckets.

Known differences from AWS, measured on moto 5.2.5: an error of the Lambda *service*
(e.g. 429 ``TooManyRequestsException``) reaches the engine's Retry/Catch as ``Exception``,
not ``Lambda.TooManyRequestsException``; function errors (``X-Amz-Function-Error``) keep
their ``errorType`` as on AWS; a missing ItemReader object fails the Map with
``States.Runtime``, not ``States.ItemReaderFailed``.
"""
from __future__ import annotations

import json
import logging
import time
import urllib.request
from dataclasses import dataclass, field
from typing import Any

import boto3
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import make_server

from . import engine_shim
from .lambda_context import LOCAL_ACCOUNT_ID, LOCAL_REGION
from .lambda_invoke import LambdaInvokeApp
from .serving import BackgroundServer

__all__ = ["ExecutionResult", "LocalStepFunctions"]

_ROLE = f"arn:aws:iam::{LOCAL_ACCOUNT_ID}:role/cubecut-local-state-machine"


@dataclass
class ExecutionResult:
    """A finished execution as DescribeExecution reports it (``output`` parsed), with the
    Lambda invocations counted until then (per function ARN since it was registered, in
    total and at most at once)."""

    arn: str
    status: str
    output: Any
    error: str | None
    cause: str | None
    invocations: dict[str, int] = field(default_factory=dict)
    max_concurrency: dict[str, int] = field(default_factory=dict)


class LocalStepFunctions(BackgroundServer):
    """moto's Step Functions and our Lambda functions on ``host``:``port`` (0: a free port),
    serving from construction; :meth:`start` switches the ASL engine on."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        engine_shim.install()
        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no access log per request
        self.lambdas = LambdaInvokeApp(DomainDispatcherApplication(create_backend_app))
        self._machines: list[str] = []
        super().__init__(make_server(host, port, self.lambdas, threaded=True, request_handler=MotoRequestHandler),
                         "local-sfn")

    def environment(self) -> dict[str, str]:
        """What the engine (``MOTO_PORT``) and clients need to reach this endpoint."""
        return {"MOTO_PORT": str(self._server.server_address[1]), "AWS_ENDPOINT_URL_SFN": self.endpoint,
                "AWS_ENDPOINT_URL_LAMBDA": self.endpoint}

    def client(self) -> Any:
        return boto3.client("stepfunctions", endpoint_url=self.endpoint, region_name=LOCAL_REGION,
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    def stop(self) -> None:
        sfn = self.client()
        for arn in self._machines:
            sfn.delete_state_machine(stateMachineArn=arn)
        super().stop()

    def start(self) -> None:
        """Switch moto's ASL engine on. The setting is process-wide and moto's API does not
        report it back, so it stays on: moto then executes every state machine it holds."""
        request = urllib.request.Request(f"{self.endpoint}/moto-api/config", method="POST",
                                         data=json.dumps({"stepfunctions": {"execute_state_machine": True}}).encode())
        urllib.request.urlopen(request, timeout=30).close()

    def register(self, name: str, definition: str) -> str:
        """Create state machine ``name`` (replacing one of that name); returns its ARN.
        moto's parser validates the definition here, as CreateStateMachine does on AWS."""
        sfn = self.client()
        arn = f"arn:aws:states:{LOCAL_REGION}:{LOCAL_ACCOUNT_ID}:stateMachine:{name}"
        if any(m["stateMachineArn"] == arn for m in sfn.list_state_machines()["stateMachines"]):
            sfn.delete_state_machine(stateMachineArn=arn)
        sfn.create_state_machine(name=name, definition=definition, roleArn=_ROLE)
        self._machines.append(arn)
        return arn

    def wait(self, execution_arn: str, timeout: float = 600.0, poll: float = 0.1) -> ExecutionResult:
        """Poll DescribeExecution until the execution is no longer RUNNING."""
        sfn = self.client()
        deadline = time.monotonic() + timeout
        while (answer := sfn.describe_execution(executionArn=execution_arn))["status"] == "RUNNING":
            if time.monotonic() > deadline:
                raise TimeoutError(f"{execution_arn} still running after {timeout:.0f} s")
            time.sleep(poll)
        output = answer.get("output")
        invocations, max_concurrency = self.lambdas.counts()
        return ExecutionResult(execution_arn, answer["status"], None if output is None else json.loads(output),
                               answer.get("error"), answer.get("cause"), invocations, max_concurrency)

    def run(self, state_machine_arn: str, payload: Any, timeout: float = 600.0) -> ExecutionResult:
        """Start an execution with ``payload`` as its input and wait for it."""
        started = self.client().start_execution(stateMachineArn=state_machine_arn, input=json.dumps(payload))
        return self.wait(started["executionArn"], timeout)
