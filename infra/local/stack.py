"""The whole serverless system on one machine: S3, the S3 event trigger, Step Functions,
the Lambda handlers and the HTTP API, all on 127.0.0.1 with no Docker.

* S3 (and SQS): moto's server (:class:`~cubecut_infra.local.s3server.LocalS3`).
* S3 events: ``ObjectCreated`` matching ``OnUploadFunction``'s event filter in template.yaml
  go to an SQS queue; a pump thread hands each ``{"Records": [...]}`` event to ``on_upload.handler``.
* Step Functions: moto's ASL engine executes the real ``ingest.asl.json`` and
  ``bulk.asl.json``; their Lambda tasks reach the real handlers through our Lambda
  Invoke endpoint (:mod:`~cubecut_infra.local.sfn`, :mod:`~cubecut_infra.local.lambda_invoke`).
* API Gateway (HTTP API, payload v2): :class:`~cubecut_infra.local.apigw.ApiGatewayServer`
  in front of ``api.handler``.

Every function's memory, timeout, reserved concurrency and environment, the state machines'
names, definitions and substitutions and MaxConcurrency come from template.yaml
(:mod:`~cubecut_infra.local.template`). What differs locally, on purpose: the bucket, the
block size (``block_mib``, small so that a demo-sized sector fans out) and, when given,
``max_concurrency``; tracing and metrics are off. Handlers read their configuration from the
environment, as in Lambda; the stack sets it (``AWS_ENDPOINT_URL`` for S3,
``AWS_ENDPOINT_URL_SFN`` for Step Functions, the template's variables) before importing them.
All functions share this process, so their variables are merged (they never disagree).
"""
from __future__ import annotations

import importlib
import json
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .apigw import ApiGatewayServer
from .authorizers import Authorizer
from .persist import restore, save
from .s3server import LocalS3
from .sfn import ExecutionResult, LocalStepFunctions
from .template import FunctionSpec, LocalTemplate, load_template

Handler = Callable[[Any, Any], Any]
Wrap = Callable[[str, Handler], Handler]


#: Where handler modules are imported from: ``cubecut_functions`` (functions/ of this checkout),
#: or, when set to the empty string, top-level modules found on ``sys.path`` as Lambda imports
#: them, e.g. from a ``sam build`` folder on PYTHONPATH (tests/stack/test_build.py serves the build).
HANDLER_PACKAGE = os.environ.get("CUBECUT_LOCAL_HANDLER_PACKAGE", "cubecut_functions")


def _handler(spec: FunctionSpec) -> Handler:
    """The function ``spec.handler`` (``module.attribute`` in functions/) names."""
    module, attribute = spec.handler.rsplit(".", 1)
    return getattr(importlib.import_module(f"{HANDLER_PACKAGE}.{module}" if HANDLER_PACKAGE else module), attribute)


def _merged_environment(template: LocalTemplate) -> dict[str, str]:
    merged: dict[str, str] = {}
    for spec in template.functions.values():
        for key, value in spec.environment.items():
            if merged.setdefault(key, value) != value:
                raise ValueError(f"functions disagree on {key} ({merged[key]!r} vs {value!r}); "
                                 "they share one process locally")
    return merged


@dataclass
class LocalStack:
    """Start with :meth:`start`, stop with :meth:`stop` (or use as a context manager).
    The bucket names the stack (``<bucket>-ingest``, ``<bucket>-block`` ...), so stacks
    running at once in one process need different buckets.

    ``wrap(name, handler)`` may wrap every handler the Lambda endpoint runs, i.e. what the
    state machines and the S3 event invoke (``name`` is the template's logical id without
    ``Function``: ``Plan``, ``Block``, ``OnUpload``, ``Cutout`` ...; the API adapter calls
    ``api.handler`` directly); tests use it to inject faults or count calls; ``block_mib`` sets the ingest block size and
    ``max_concurrency`` the Maps' MaxConcurrency (default: the template's).
    """

    bucket: str = "cubecut-local"
    api_port: int = 0
    s3_port: int = 0
    block_mib: float = 8.0
    max_concurrency: int | None = None
    bulk_tiles_per_batch: int | None = None
    #: template.yaml parameters to override (e.g. ``{"RequireAuth": "iam"}``).
    parameters: dict[str, Any] | None = None
    wrap: Wrap | None = None
    #: A folder the bucket is restored from at start and saved into at stop (:mod:`.persist`).
    data_dir: str | None = None
    s3: LocalS3 | None = field(default=None, init=False)
    sfn: LocalStepFunctions | None = field(default=None, init=False)
    api: ApiGatewayServer | None = field(default=None, init=False)
    template: LocalTemplate | None = field(default=None, init=False)
    api_url: str = field(default="", init=False)
    state_machine_arn: str = field(default="", init=False)
    bulk_state_machine_arn: str = field(default="", init=False)
    _stop: threading.Event = field(default_factory=threading.Event, init=False)
    _pump: threading.Thread | None = field(default=None, init=False)
    _seen: set = field(default_factory=set, init=False)
    _saved_environment: dict = field(default_factory=dict, init=False)

    @property
    def cube_root(self) -> str:
        return f"s3://{self.bucket}/{self.template.parameters['CubePrefix']}"

    @property
    def ingest_prefix(self) -> str:
        """Where FFIs and manifests go; a manifest here starts an ingest."""
        return self.template.upload_filter[0]

    def environment(self) -> dict[str, str]:
        """What another shell needs to join this stack (``cubecut bulk --stack`` included:
        the Step Functions endpoint and the bulk state machine's ARN)."""
        return {"AWS_ENDPOINT_URL": self.s3.endpoint, "CUBECUT_API_URL": self.api_url,
                "CUBECUT_CUBES": self.cube_root, "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
                "AWS_ENDPOINT_URL_SFN": self.sfn.endpoint,
                "CUBECUT_BULK_JOBS_STATE_MACHINE_ARN": self.bulk_state_machine_arn}

    def start(self) -> "LocalStack":
        overrides: dict[str, Any] = {} if self.max_concurrency is None else {"MaxConcurrency": self.max_concurrency}
        if self.bulk_tiles_per_batch is not None:
            overrides["BulkTilesPerBatch"] = self.bulk_tiles_per_batch
        overrides.update(self.parameters or {})
        self.template = template = load_template(stack_name=self.bucket, bucket=self.bucket, parameters=overrides)
        self.s3 = LocalS3(port=self.s3_port)
        self.sfn = LocalStepFunctions()
        self._set_environment({
            **_merged_environment(template), **self.sfn.environment(),
            "AWS_ENDPOINT_URL": self.s3.endpoint,
            "AWS_ACCESS_KEY_ID": os.environ.get("AWS_ACCESS_KEY_ID", "testing"),
            "AWS_SECRET_ACCESS_KEY": os.environ.get("AWS_SECRET_ACCESS_KEY", "testing"),
            "AWS_DEFAULT_REGION": "us-east-1", "CUBECUT_BLOCK_MIB": str(self.block_mib), "CUBECUT_CATALOG_TTL": "1",
            "POWERTOOLS_TRACE_DISABLED": "true", "POWERTOOLS_METRICS_DISABLED": "true",
            "POWERTOOLS_LOG_LEVEL": os.environ.get("CUBECUT_LOG_LEVEL", "WARNING"),
        })
        self.s3.create_bucket(self.bucket)
        if template.bucket_versioning:  # as template.yaml's DataBucket: replaced cubes stay recoverable
            self.s3.client("s3").put_bucket_versioning(Bucket=self.bucket, VersioningConfiguration={
                "Status": template.bucket_versioning})
        if self.data_dir is not None:  # before S3 events are on: restoring starts no ingest
            restore(self.s3.client("s3"), self.bucket, self.data_dir)
        prefix, suffix = template.upload_filter
        queue = self.s3.enable_notifications(self.bucket, prefix=prefix, suffix=suffix)
        self.sfn.start()
        for spec in template.functions.values():
            handler = _handler(spec)
            self.sfn.lambdas.add(spec.name, self.wrap(spec.short_name, handler) if self.wrap else handler,
                                 memory_mb=spec.memory_mb, timeout_s=spec.timeout_s,
                                 reserved_concurrency=spec.reserved_concurrency)
        machines = {spec.logical_id: self.sfn.register(spec.name, spec.definition)
                    for spec in template.state_machines.values()}
        self.state_machine_arn = machines["IngestStateMachine"]
        self.bulk_state_machine_arn = machines["BulkStateMachine"]
        self._set_environment({"CUBECUT_BULK_JOBS_STATE_MACHINE_ARN": self.bulk_state_machine_arn})  # cubecut bulk --stack

        api = template.functions["ApiFunction"]
        authorizer = Authorizer(template.parameters["RequireAuth"], template.parameters["JwtIssuer"],
                                template.parameters["JwtAudience"])
        self.api = ApiGatewayServer(_handler(api), port=self.api_port, function_name=api.name, memory_mb=api.memory_mb,
                                   one_at_a_time=True, authorizer=authorizer)
        self.api_url = self.api.endpoint
        self._pump = threading.Thread(target=self._pump_events, args=(queue, template.functions["OnUploadFunction"]),
                                      daemon=True, name="s3-events")
        self._pump.start()
        return self

    def submit_ingest(self, ffis: list[Path], name: str, *, on_file: Callable[[], None] | None = None) -> str:
        """Upload FFIs under ``ingest/<name>/`` and then their manifest, which fires the S3
        event that starts the state machine. Returns the manifest's key."""
        s3 = self.s3.client("s3")
        prefix = f"{self.ingest_prefix}{name}/"
        for path in ffis:
            s3.upload_file(str(path), self.bucket, prefix + path.name)
            if on_file is not None:
                on_file()
        key = prefix + "manifest.json"
        s3.put_object(Bucket=self.bucket, Key=key, Body=json.dumps({"ffis": [p.name for p in ffis]}).encode(),
                      ContentType="application/json")
        return key

    def wait_for_execution(self, timeout: float = 600.0) -> ExecutionResult:
        """Wait for the next ingest execution (one this method has not returned yet) to
        start and finish; returns its result (``status``, ``output``, ``error``, ``cause``,
        ``invocations``, ``max_concurrency``)."""
        deadline = time.monotonic() + timeout
        sfn = self.sfn.client()
        while time.monotonic() < deadline:
            listed = sfn.list_executions(stateMachineArn=self.state_machine_arn)["executions"]
            fresh = sorted((e for e in listed if e["executionArn"] not in self._seen), key=lambda e: e["startDate"])
            if fresh:
                arn = fresh[0]["executionArn"]
                self._seen.add(arn)
                return self.sfn.wait(arn, max(0.0, deadline - time.monotonic()))
            time.sleep(0.1)
        raise TimeoutError(f"no ingest execution finished within {timeout:.0f} s")

    def _pump_events(self, queue: str, upload: FunctionSpec) -> None:
        """S3 → Lambda: each event is one invocation of the upload function (through the
        Lambda endpoint, as S3 invokes it)."""
        while not self._stop.is_set():
            for event in self.s3.poll_events(queue, wait=1.0):
                status, headers, body = self.sfn.lambdas.invoke(upload.name, json.dumps(event).encode())
                if status != 200 or "X-Amz-Function-Error" in headers:
                    error = json.loads(body)  # a bad manifest must not stop the pump
                    print(f"[local] on_upload failed: {error.get('errorType')}: "
                          f"{error.get('errorMessage', error.get('message'))}", flush=True)

    def _set_environment(self, values: dict[str, str]) -> None:
        """Set handler configuration, remembering what was there to restore at stop."""
        for key, value in values.items():
            self._saved_environment.setdefault(key, os.environ.get(key))
            os.environ[key] = value

    def stop(self) -> None:
        self._stop.set()
        for spec in self.template.functions.values() if self.sfn is not None else ():
            self.sfn.lambdas.remove(spec.name)
        for key, value in self._saved_environment.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if self._pump is not None:
            self._pump.join(timeout=5)
        if self.data_dir is not None and self.s3 is not None:
            save(self.s3.client("s3"), self.bucket, self.data_dir)
        for part in (self.api, self.sfn, self.s3):
            if part is not None:
                part.stop()

    def __enter__(self) -> "LocalStack":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def serve_forever(*, port: int = 0, s3_port: int = 0, bucket: str = "cubecut-local", print_env: bool = False,
                  env_file: str | None = None, data_dir: str | None = None) -> int:
    """``cubecut local up``: start the stack, print its endpoints, serve until Ctrl-C (or SIGTERM).

    With ``env_file`` the export lines are also written there, atomically and only once
    the stack answers, and the file is removed when the stack stops, so another shell
    can wait for it and ``source`` it.
    """
    if env_file:
        Path(env_file).unlink(missing_ok=True)  # a file left by an earlier run would point at a dead stack
    stack = LocalStack(bucket=bucket, api_port=port, s3_port=s3_port, data_dir=data_dir).start()
    env = stack.environment()
    exports = "".join(f"export {key}={value}\n" for key, value in env.items())
    try:
        if env_file:
            partial = Path(f"{env_file}.{os.getpid()}.tmp")
            partial.write_text(exports)
            os.replace(partial, env_file)
        if print_env:
            print(exports, end="", flush=True)
        else:
            joining = (f"source {env_file}" if env_file else
                       "start it with --env-file stack.env, then: source stack.env")
            print(f"cubecut local stack is up (Ctrl-C stops it)\n"
                  f"  API:        {stack.api_url}   (TESScut routes under {stack.api_url}/tesscut/api/v0.1/, "
                  f"Swagger at {stack.api_url}/swagger)\n"
                  f"  S3:         {env['AWS_ENDPOINT_URL']}   bucket {bucket}"
                  + (f" (kept in {data_dir}: restored now, saved when the stack stops)\n" if data_dir else "\n") +
                  f"  cubes:      {stack.cube_root}\n"
                  f"  ingest:     upload FFIs and then s3://{bucket}/{stack.ingest_prefix}<name>/manifest.json\n"
                  f"  other shells: {joining}", flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        stack.stop()
        if env_file:
            Path(env_file).unlink(missing_ok=True)
    return 0
