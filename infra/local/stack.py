"""The whole serverless system on one machine: S3, the S3 event trigger, Step Functions,
the Lambda handlers and the HTTP API, all on 127.0.0.1 with no Docker.

* S3 (and SQS): moto's server (:class:`~cubecut_infra.local.s3server.LocalS3`).
* S3 events: ``ObjectCreated`` under ``ingest/`` ending in ``manifest.json`` go to an SQS
  queue; a pump thread hands each ``{"Records": [...]}`` event to ``on_upload.handler``.
* Step Functions: :class:`~cubecut_infra.local.sfn.LocalStepFunctions` executes the
  real ``ingest.asl.json`` with the real ``ingest`` handlers as its Lambda resources.
* API Gateway (HTTP API, payload v2): :class:`~cubecut_infra.local.apigw.ApiGatewayServer`
  in front of ``api.handler``.

Handlers read their configuration from the environment, as in Lambda; the stack sets
it (``AWS_ENDPOINT_URL`` for S3, ``AWS_ENDPOINT_URL_SFN`` for Step Functions, the bucket
and prefixes) before importing them.
"""
from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass, field
from importlib import resources as package_files
from pathlib import Path
from typing import Any, Callable

from .apigw import ApiGatewayServer
from .lambda_context import LambdaContext
from .s3server import LocalS3
from .sfn import LocalStepFunctions

Handler = Callable[[Any, Any], Any]
Wrap = Callable[[str, Handler], Handler]
INGEST_PREFIX = "ingest/"
CUBE_PREFIX = "cubes/"
RESULTS_PREFIX = "results/"
#: (logical name, handler attribute, memory MB, timeout s) as in template.yaml.
INGEST_FUNCTIONS = (("Plan", "plan_handler", 1024, 300), ("Block", "block_handler", 1769, 900),
                    ("Finalize", "finalize_handler", 512, 300), ("Abort", "abort_handler", 256, 60))
CUTOUT_FUNCTIONS = (("Cutout", "cutout_handler", 1769, 120), ("Zip", "zip_handler", 1769, 300))
BULK_FUNCTIONS = (("BulkPlan", "plan_handler", 1769, 900), ("BulkBatch", "batch_handler", 1769, 900),
                  ("BulkFinish", "finish_handler", 1024, 300))


def _lambda(name: str, handler: Handler, memory_mb: int, timeout_s: float) -> Handler:
    """Invoke ``handler`` as Lambda would: a fresh context per call."""
    def invoke(event: Any, _context: Any = None) -> Any:
        return handler(event, LambdaContext(name, memory_mb=memory_mb, timeout_seconds=timeout_s))

    return invoke


@dataclass
class LocalStack:
    """Start with :meth:`start`, stop with :meth:`stop` (or use as a context manager).

    ``wrap(function_name, handler)`` may wrap the ingest Lambda handlers (tests use it to
    inject faults or count calls); ``block_mib`` sets the ingest block size and
    ``max_concurrency`` the Distributed Maps' MaxConcurrency; ``bulk_tiles_per_batch`` is
    the bulk Map's ItemBatcher MaxItemsPerBatch.
    """

    bucket: str = "cubecut-local"
    api_port: int = 0
    s3_port: int = 0
    block_mib: float = 8.0
    max_concurrency: int = 4
    bulk_tiles_per_batch: int = 10
    wrap: Wrap | None = None
    s3: LocalS3 | None = field(default=None, init=False)
    sfn: LocalStepFunctions | None = field(default=None, init=False)
    api: ApiGatewayServer | None = field(default=None, init=False)
    api_url: str = field(default="", init=False)
    state_machine_arn: str = field(default="", init=False)
    cutouts_state_machine_arn: str = field(default="", init=False)
    bulk_state_machine_arn: str = field(default="", init=False)
    _stop: threading.Event = field(default_factory=threading.Event, init=False)
    _pump: threading.Thread | None = field(default=None, init=False)
    _finished: list = field(default_factory=list, init=False)
    _saved_environment: dict = field(default_factory=dict, init=False)

    @property
    def cube_root(self) -> str:
        return f"s3://{self.bucket}/{CUBE_PREFIX}"

    def environment(self) -> dict[str, str]:
        """What another shell needs to join this stack."""
        return {"AWS_ENDPOINT_URL": self.s3.endpoint, "CUBECUT_API_URL": self.api_url,
                "CUBECUT_CUBES": self.cube_root, "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}

    def start(self) -> "LocalStack":
        self.s3 = LocalS3(port=self.s3_port)
        self.sfn = LocalStepFunctions()
        self._set_environment({
            "AWS_ENDPOINT_URL": self.s3.endpoint, "AWS_ENDPOINT_URL_SFN": self.sfn.endpoint,
            "AWS_ACCESS_KEY_ID": os.environ.get("AWS_ACCESS_KEY_ID", "testing"),
            "AWS_SECRET_ACCESS_KEY": os.environ.get("AWS_SECRET_ACCESS_KEY", "testing"),
            "AWS_DEFAULT_REGION": "us-east-1", "CUBECUT_BUCKET": self.bucket,
            "CUBECUT_CUBE_PREFIX": CUBE_PREFIX, "CUBECUT_RESULTS_PREFIX": RESULTS_PREFIX,
            "CUBECUT_BLOCK_MIB": str(self.block_mib), "CUBECUT_CATALOG_TTL": "1",
            "POWERTOOLS_TRACE_DISABLED": "true", "POWERTOOLS_METRICS_DISABLED": "true",
            "POWERTOOLS_SERVICE_NAME": "cubecut", "POWERTOOLS_LOG_LEVEL": os.environ.get("CUBECUT_LOG_LEVEL", "WARNING"),
        })
        self.s3.create_bucket(self.bucket)
        queue = self.s3.enable_notifications(self.bucket, prefix=INGEST_PREFIX, suffix="manifest.json")
        from cubecut_functions import bulk, cutouts, ingest

        self.state_machine_arn = self._register("ingest", ingest, INGEST_FUNCTIONS)
        self.cutouts_state_machine_arn = self._register("cutouts", cutouts, CUTOUT_FUNCTIONS)
        self.bulk_state_machine_arn = self._register("bulk", bulk, BULK_FUNCTIONS)
        self._set_environment({"STATE_MACHINE_ARN": self.state_machine_arn,
                               "CUBECUT_BULK_STATE_MACHINE_ARN": self.cutouts_state_machine_arn,
                               "CUBECUT_BULK_JOBS_STATE_MACHINE_ARN": self.bulk_state_machine_arn})
        self.sfn.start()

        from cubecut_functions import api, on_upload

        self.api = ApiGatewayServer(api.handler)
        self.api_url = self.api.start()
        upload = _lambda("cubecut-on-upload", on_upload.handler, 256, 60)
        self._pump = threading.Thread(target=self._pump_events, args=(queue, upload), daemon=True,
                                      name="s3-events")
        self._pump.start()
        return self

    def _register(self, machine: str, module: Any, functions: tuple) -> str:
        """Register ``statemachines/<machine>.asl.json`` with ``module``'s handlers."""
        definition = package_files.files("cubecut_infra").joinpath(f"statemachines/{machine}.asl.json").read_text()
        substitutions: dict[str, Any] = {"MaxConcurrency": self.max_concurrency,
                                         "BulkTilesPerBatch": self.bulk_tiles_per_batch}
        resources: dict[str, Handler] = {}
        for logical, attribute, memory, timeout in functions:
            name = f"cubecut-{logical.lower()}"
            arn = f"arn:aws:lambda:us-east-1:123456789012:function:{name}"
            substitutions[f"{logical}FunctionArn"] = arn
            handler = getattr(module, attribute)
            resources[arn] = _lambda(name, self.wrap(logical, handler) if self.wrap else handler, memory, timeout)
        return self.sfn.register(f"cubecut-{machine}", definition, resources, substitutions=substitutions,
                                 s3_client=self.s3.client("s3"))

    def submit_ingest(self, ffis: list[Path], name: str, *, on_file: Callable[[], None] | None = None) -> str:
        """Upload FFIs under ``ingest/<name>/`` and then their manifest, which fires the S3
        event that starts the state machine. Returns the manifest's key."""
        s3 = self.s3.client("s3")
        prefix = f"{INGEST_PREFIX}{name}/"
        for path in ffis:
            s3.upload_file(str(path), self.bucket, prefix + path.name)
            if on_file is not None:
                on_file()
        key = prefix + "manifest.json"
        s3.put_object(Bucket=self.bucket, Key=key, Body=json.dumps({"ffis": [p.name for p in ffis]}).encode(),
                      ContentType="application/json")
        return key

    def wait_for_execution(self, timeout: float = 600.0) -> Any:
        """Wait for the next ingest execution to start and finish; returns its result
        (``status``, ``output``, ``error``, ``invocations`` ...)."""
        deadline = time.monotonic() + timeout
        seen = {run.arn for run in self._finished}
        while time.monotonic() < deadline:
            fresh = [run for run in self.sfn.runs() if run.arn not in seen]
            if fresh:
                run = fresh[0]
                if run.done.wait(max(0.0, deadline - time.monotonic())):
                    self._finished.append(run)
                    return run.result
                break
            time.sleep(0.1)
        raise TimeoutError(f"no ingest execution finished within {timeout:.0f} s")

    def _pump_events(self, queue: str, upload: Handler) -> None:
        while not self._stop.is_set():
            for event in self.s3.poll_events(queue, wait=1.0):
                try:
                    upload(event)
                except Exception as exc:  # noqa: BLE001 - a bad manifest must not stop the pump
                    print(f"[local] on_upload failed: {type(exc).__name__}: {exc}", flush=True)

    def _set_environment(self, values: dict[str, str]) -> None:
        """Set handler configuration, remembering what was there to restore at stop."""
        for key, value in values.items():
            self._saved_environment.setdefault(key, os.environ.get(key))
            os.environ[key] = value

    def stop(self) -> None:
        self._stop.set()
        for key, value in self._saved_environment.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if self._pump is not None:
            self._pump.join(timeout=5)
        for part in (self.api, self.sfn, self.s3):
            if part is not None:
                part.stop()

    def __enter__(self) -> "LocalStack":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def serve_forever(*, port: int = 0, s3_port: int = 0, bucket: str = "cubecut-local", print_env: bool = False) -> int:
    """``cubecut local up``: start the stack, print its endpoints, serve until Ctrl-C."""
    stack = LocalStack(bucket=bucket, api_port=port, s3_port=s3_port).start()
    env = stack.environment()
    if print_env:
        for key in ("AWS_ENDPOINT_URL", "CUBECUT_API_URL", "CUBECUT_CUBES", "AWS_ACCESS_KEY_ID",
                    "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"):
            print(f"export {key}={env[key]}", flush=True)
    else:
        print(f"cubecut local stack is up (Ctrl-C stops it)\n"
              f"  API:        {stack.api_url}   (TESScut routes under {stack.api_url}/tesscut/api/v0.1/, "
              f"Swagger at {stack.api_url}/swagger)\n"
              f"  S3:         {env['AWS_ENDPOINT_URL']}   bucket {bucket}\n"
              f"  cubes:      {stack.cube_root}\n"
              f"  ingest:     upload FFIs and then s3://{bucket}/{INGEST_PREFIX}<name>/manifest.json\n"
              f"  other shells: eval \"$(cubecut local up --print-env)\" prints these as exports", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        stack.stop()
    return 0
