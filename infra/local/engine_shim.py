"""Three things our definitions need that moto's ASL engine gets wrong, fixed in place.

:func:`install` (called by :class:`~cubecut_infra.local.sfn.LocalStepFunctions`) patches
moto 5.2.5's engine in three places; no other moto code is touched:

1. moto's Distributed Map counts a failed child execution and carries on: the Map run
   always succeeds (``States.ExceedToleratedFailureThreshold`` is in its grammar but never
   raised), so a failed Block would not send the ingest to Abort. On AWS the Map run fails
   with ``States.ExceedToleratedFailureThreshold`` once more items fail than
   ``ToleratedFailureCount``/``ToleratedFailurePercentage`` allow (both unset: any
   failure). Patched: ``DistributedIterationComponent._map_run`` makes that check after
   the items ran (AWS stops launching items as soon as the threshold is exceeded; here the
   remaining ones still run, which for idempotent items changes only time).
2. A Fail state whose ``ErrorPath`` gives a ``States.*`` name (ingest's ``Failed`` re-raises
   the error that sent it to Abort, e.g. the one above) dies in moto with ``ValueError:
   Custom Error Names MUST NOT begin with the prefix 'States.'`` (LocalStack had the same
   bug, localstack/localstack#10489); AWS fails the execution with that name. Patched:
   ``state_fail.CustomErrorName`` accepts any string.
3. moto evaluates a Distributed Map's ``ResultWriter`` Parameters against the items'
   outputs instead of the Map state's input (so ``"Bucket.$": "$.tiles.Bucket"`` is not
   found), and its manifest lists no result files (a TODO in moto): AWS resolves the
   Parameters against the state input and writes the children's results to
   ``SUCCEEDED_0.json`` (records with ``Status`` and ``Output``), listed in the manifest's
   ``ResultFiles``. Patched: ``ResultWriter._eval_body`` does both.

Remove each part when moto does it itself.
``tests/stack/test_asl.py::test_a_failed_block_aborts_the_upload_and_fails_with_the_error`` fails
without 1 or 2, ``tests/stack/test_bulk_stack.py`` without 3. Importing this module refuses a moto
outside :data:`TESTED_MOTO` (:class:`UntestedMotoError`).
"""
from __future__ import annotations

from importlib.metadata import version
from typing import Any

from packaging.specifiers import SpecifierSet

#: The moto releases these fixes were written for and tested with (pyproject.toml's [local]
#: extra asks for the same range; tests/stack/test_packaging.py checks they agree).
TESTED_MOTO = SpecifierSet(">=5.2.5,<5.3")


class UntestedMotoError(RuntimeError):
    """The installed moto is outside :data:`TESTED_MOTO`: its engine internals may differ."""


if version("moto") not in TESTED_MOTO:
    raise UntestedMotoError(f"the local stack patches moto's Step Functions engine and is tested with moto "
                            f"{TESTED_MOTO}, not {version('moto')}: install cubecut[local] again")

from moto.stepfunctions.parser.asl.component.state.exec.state_map.result_writer.result_writer_decl import (
    ResultWriter,
)

from moto.stepfunctions.parser.api import HistoryEventType, MapRunFailedEventDetails
from moto.stepfunctions.parser.asl.component.common.error_name.error_name import ErrorName
from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import (
    FailureEvent,
    FailureEventException,
)
from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import StatesErrorName
from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import StatesErrorNameType
from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration.distributed_iteration_component import (
    DistributedIterationComponent,
)
from moto.stepfunctions.parser.asl.component.state.fail import state_fail
from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails

__all__ = ["install"]

_ERROR = StatesErrorNameType.StatesExceedToleratedFailureThreshold


class _FailStateErrorName(ErrorName):
    """Any error name, ``States.*`` included, as a Fail state's Error/ErrorPath may give."""


def install() -> None:
    """Apply the three fixes of the module docstring (idempotent)."""
    state_fail.CustomErrorName = _FailStateErrorName  # type: ignore[assignment,misc]
    original = DistributedIterationComponent._map_run
    if getattr(original, "cubecut_shim", False):
        return

    def map_run(self: DistributedIterationComponent, env: Any, eval_input: Any) -> None:
        original(self, env, eval_input)
        items = eval_input.map_run_record.item_counter
        failed, total = items.failed.get() + items.timed_out.get(), items.total.get()
        tolerated_count = eval_input.tolerated_failure_count
        tolerated_percentage = eval_input.tolerated_failure_percentage
        if failed > tolerated_count and 100 * failed > tolerated_percentage * total:
            env.stack.pop()  # the items' outputs
            cause = f"{failed} of {total} items failed; tolerated {tolerated_count} items or {tolerated_percentage}%"
            raise FailureEventException(FailureEvent(
                env=env, error_name=StatesErrorName(typ=_ERROR), event_type=HistoryEventType.MapRunFailed,
                # moto's EventDetails TypedDict is total; its own code passes one key too.
                event_details=EventDetails(  # type: ignore[typeddict-item]
                    mapRunFailedEventDetails=MapRunFailedEventDetails(error=_ERROR.to_name(), cause=cause))))

    map_run.cubecut_shim = True  # type: ignore[attr-defined]
    DistributedIterationComponent._map_run = map_run  # type: ignore[method-assign]

    def result_writer(self: ResultWriter, env: Any) -> None:
        results = env.stack.pop()
        env.stack.append(env.states.get_input())  # the Parameters see the Map state's input
        self.parargs.eval(env=env)
        parameters = env.stack.pop()
        env.stack.pop()
        env.stack.extend([results, parameters])
        self.resource_eval.eval_resource(env=env)  # writes the manifest, pushes its location
        _write_result_files(env.stack[-1], results)

    ResultWriter._eval_body = result_writer  # type: ignore[method-assign]


def _write_result_files(written: dict, results: list) -> None:
    """AWS's ``SUCCEEDED_0.json`` beside the manifest moto wrote, and the manifest listing it."""
    import json

    from moto.s3.models import s3_backends

    bucket, key = written["ResultWriterDetails"]["Bucket"], written["ResultWriterDetails"]["Key"]
    account = written["MapRunArn"].split(":")[4]
    backend = s3_backends[account]["aws"]
    folder = key.rsplit("/", 1)[0]
    records = [{"Status": "SUCCEEDED", "Output": json.dumps(result), "MapRunArn": written["MapRunArn"]}
               for result in results]
    body = json.dumps(records).encode()
    backend.put_object(bucket, f"{folder}/SUCCEEDED_0.json", body)
    manifest = json.loads(backend.get_object(bucket, key).value)
    manifest["ResultFiles"]["SUCCEEDED"] = [{"Key": f"{folder}/SUCCEEDED_0.json", "Size": len(body)}]
    backend.put_object(bucket, key, json.dumps(manifest, indent=2).encode())
