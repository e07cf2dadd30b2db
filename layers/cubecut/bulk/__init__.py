"""Catalog-scale bulk cutouts: a target catalog -> cubes -> row-sorted tiles -> TPFs + results.

``run_job(catalog, out, cubes=...)`` runs a whole job in this process; the state machine
(``infra/statemachines/bulk.asl.json``) runs the same steps as Lambda functions:
``targets`` (read the catalog), ``plan`` (place, cap, tile, resume), ``worker`` (cut a run
of tiles, reading each row span once) and ``job`` (the job's files and results manifest).
"""
from .job import JobSummary, run_job
from .plan import Limits, Plan, plan_job
from .stars import RowProblem, Target, TargetCatalog, read_targets
from .worker import run_tiles

__all__ = ["run_job", "JobSummary", "Limits", "Plan", "plan_job", "read_targets", "Target", "TargetCatalog",
           "RowProblem", "run_tiles"]
