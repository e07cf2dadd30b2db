"""One current result per benchmark, stamped with what produced it.

Every benchmark writes ``results/{name}.json`` and ``results/{name}.md`` through
:func:`save`, and nothing else: a new run replaces the file, and the runs before it live
in git's history of that file. A result (or each section of one, when a benchmark runs its
sections separately) carries a *stamp*:

* ``commit``: ``git rev-parse --short HEAD`` of the measured tree, ``+uncommitted`` when
  tracked files differed from it;
* ``command``: the command line, as run from the repository's root;
* ``started`` / ``finished``: UTC, minutes;
* ``machine``: platform, CPU model, CPU count, memory (GB), Python version;
* ``load``: the 1/5/15-minute load averages at start and at end (the machine is shared:
  wall times move with them).

A field that is not known (a result recorded before stamps existed) is the string
``"unknown"``; such a stamp also says where its figures were recorded (``note``).
"""
from __future__ import annotations

import datetime as dt
import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Callable

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
UNKNOWN = "unknown"


def machine() -> dict:
    """This machine: platform, CPU model, CPU count, memory in GB (2**30 bytes), Python."""
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []
    cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith(("model name", "Model"))),
               platform.processor() or UNKNOWN)
    meminfo = Path("/proc/meminfo").read_text().splitlines() if Path("/proc/meminfo").exists() else []
    kib = next((int(line.split()[1]) for line in meminfo if line.startswith("MemTotal")), None)
    return {"platform": platform.platform(), "cpu": cpu, "cpus": os.cpu_count(),
            "memory_gb": round(kib / 2**20, 1) if kib else UNKNOWN, "python": platform.python_version()}


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def load_average() -> list[float]:
    """The 1/5/15-minute load averages, 2 decimals."""
    return [round(value, 2) for value in os.getloadavg()]


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], capture_output=True, text=True, cwd=HERE).stdout.strip()


def begin(argv: list[str] | None = None) -> dict:
    """A stamp for a run starting now (``argv``: the command line, default ``sys.argv``)."""
    argv = list(sys.argv if argv is None else argv)
    script = Path(argv[0]).resolve()
    root = HERE.parent
    shown = str(script.relative_to(root)) if script.is_relative_to(root) else argv[0]
    dirty = _git("status", "--porcelain", "--untracked-files=no")
    return {"commit": _git("rev-parse", "--short", "HEAD") + ("+uncommitted" if dirty else ""),
            "command": " ".join([".venv/bin/python", shown, *argv[1:]]), "started": _now(), "finished": UNKNOWN,
            "machine": machine(), "load": {"start": load_average(), "end": UNKNOWN}}


def end(stamp: dict) -> dict:
    """``stamp`` with its end time and load filled in (returned; ``stamp`` is changed too)."""
    stamp["finished"] = _now()
    stamp["load"]["end"] = load_average()
    return stamp


def _loads(values: list[float | str] | str) -> str:
    if isinstance(values, str):
        return values
    return " / ".join(f"{v:.1f}" if isinstance(v, (int, float)) else str(v) for v in values)


def markdown(stamps: dict[str, dict]) -> str:
    """The stamps of a result's runs (``{what ran: stamp}``) as one markdown table, a row a
    run (what ran with the same stamp shares its row)."""
    runs: dict[str, tuple[list[str], dict]] = {}
    for what, s in stamps.items():
        runs.setdefault(json.dumps(s, sort_keys=True), ([], s))[0].append(what)
    lines = ["| run | commit | command | started – finished (UTC) | machine | python | load average 1/5/15 min, "
             "start → end |", "|---|---|---|---|---|---|---|"]
    notes = []
    for names, s in runs.values():
        m = s["machine"]
        memory = m["memory_gb"] if isinstance(m["memory_gb"], str) else f"{m['memory_gb']:.1f} GB"
        lines.append(f"| {', '.join(names)} | `{s['commit']}` | `{s['command']}` | {s['started']} – {s['finished']} | "
                     f"{m['cpus']} x {m['cpu']}, {memory} | {m['python']} | "
                     f"{_loads(s['load']['start'])} → {_loads(s['load']['end'])} |")
        if s.get("note"):
            notes.append(f"{', '.join(names)}: {s['note']}.")
    return "\n".join(lines + ([""] + notes if notes else [])) + "\n"


def save(name: str, results: dict, render: Callable[[dict], str]) -> str:
    """Write ``results`` to ``results/{name}.json`` and ``render(results)`` to ``.md``; returns the markdown."""
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    text = render(results)
    (RESULTS / f"{name}.md").write_text(text)
    return text


def load(name: str) -> dict:
    """The current result ``results/{name}.json``."""
    return json.loads((RESULTS / f"{name}.json").read_text())
