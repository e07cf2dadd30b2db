"""What starts and describes bulk jobs for the API: a :class:`JobEngine`, given to the app
with each request by its edge (``functions/api.py`` gives Step Functions' bulk state
machine; the app itself makes no AWS calls but through the library's storage).

An engine names executions by job id (:func:`cubecut.bulk.submit.new_job_id`), so the id a
client holds is all it takes to find its job again.
"""
from __future__ import annotations

from typing import Any, Protocol


class JobEngine(Protocol):
    """Runs bulk jobs (the bulk state machine, named by the edge)."""

    def start(self, job: str, payload: dict[str, Any]) -> None:
        """Start job ``job`` with ``payload`` as the state machine's input."""

    def describe(self, job: str) -> dict[str, Any] | None:
        """The execution of ``job`` as DescribeExecution gives it (``status``, ``input``,
        ``output``, ``error``, ``cause``), or None if there is no such job."""

    def running(self) -> list[str]:
        """The ids of the jobs running now (at most 1,000)."""


class BulkUnavailableError(Exception):
    """This deployment runs no bulk jobs (no state machine configured): answered 503."""


class BulkForbiddenError(Exception):
    """This caller may not start bulk jobs here (anonymous, and the operator did not open
    bulk jobs to anonymous callers): answered 403."""


class BulkBusyError(Exception):
    """Too many bulk jobs are running (in all, or of this caller): answered 429."""

