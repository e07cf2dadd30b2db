"""Catalog-scale bulk cutouts: a target catalog -> cubes -> row-sorted tiles -> TPFs + results.

``run_job(catalog, out, cubes=...)`` runs a whole job in this process; the state machine
(``infra/statemachines/bulk.asl.json``) runs the same steps as Lambda functions:
``targets`` (read the catalog), ``plan`` (place, cap, tile, resume), ``worker`` (cut a run
of tiles, reading each row span once) and ``job`` (the job's files and results manifest).
"""
from .job import run_job
from .plan import Limits, plan_job
from .stars import read_targets
from .worker import run_tiles

__all__ = ["run_job", "Limits", "plan_job", "read_targets", "run_tiles"]
