"""docs/api.md's budgets per cadence, computed from template.yaml and the library's constants.

Every cell of the table under "Budgets per cadence" is recomputed here from the template's
defaults (``CutoutMaxPixelFrames``, ``BulkMaxPixelFrames``, the API function's
``CUBECUT_MAX_WORK_BYTES``), the service's memory model, the API's per-side cap of a bulk
cutout and the bulk plan's tile bounds, so the document cannot drift from what is deployed.
"""
from __future__ import annotations

import math
import re
from pathlib import Path

import yaml

from cubecut.bulk.plan import TILE_PIXEL_FRAMES, TILE_TARGETS
from cubecut.tesscut.service import IN_MEMORY_BYTES_PER_PIXEL_FRAME, work_bytes
from cubecut_app.models import MAX_BULK_SIDE
from cubecut_infra.local.template import _Loader

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "api.md").read_text()
TEMPLATE = yaml.load((ROOT / "template.yaml").read_text(), Loader=_Loader)
PARAMETERS = TEMPLATE["Parameters"]
#: Memory the API function's cutouts may hold at once (bytes).
WORK_BYTES = int(TEMPLATE["Resources"]["ApiFunction"]["Properties"]["Environment"]["Variables"]["CUBECUT_MAX_WORK_BYTES"])
#: Frames of one CCD's cube per sector, by FFI cadence (issue 27's figures).
CADENCES = {"30 min": 1_300, "10 min": 3_900, "200 s": 11_700}
#: The bulk cutout size whose counts the table gives (docs/bulk.md's catalog example).
BULK_SIDE = 11


def largest_square(budget: int, frames: int) -> int:
    """The largest side n (pixels) with n x n x frames <= budget."""
    return math.isqrt(budget // frames)


def table() -> dict[str, list[str]]:
    """The rows of docs/api.md's budgets-per-cadence table, cells stripped, keyed by cadence."""
    section = DOC[DOC.index("### Budgets per cadence"):]
    rows = [line for line in section.splitlines() if line.startswith("| ")][1:]  # after the header
    return {cells[0]: cells[1:] for cells in ([c.strip() for c in row.strip("|").split("|")] for row in rows)
            if cells[0] in CADENCES}


def test_largest_square_is_the_largest():
    for frames in CADENCES.values():
        n = largest_square(15_000_000, frames)
        assert n * n * frames <= 15_000_000 < (n + 1) ** 2 * frames


def test_budgets_per_cadence_match_the_template():
    request = int(PARAMETERS["CutoutMaxPixelFrames"]["Default"])
    job = int(PARAMETERS["BulkMaxPixelFrames"]["Default"])
    rows = table()
    assert set(rows) == set(CADENCES)
    bulk_cutout = min(request, WORK_BYTES // IN_MEMORY_BYTES_PER_PIXEL_FRAME)
    for cadence, frames in CADENCES.items():
        n = largest_square(request, frames)
        memory = work_bytes([n * n * frames])
        assert memory <= WORK_BYTES, f"{cadence}: the largest square fits the request budget, not the memory"
        bulk = min(largest_square(bulk_cutout, frames), MAX_BULK_SIDE)
        pixel_frames = BULK_SIDE * BULK_SIDE * frames
        expected = [f"{frames:,}", f"{n}x{n}", f"{n * n * frames:,}", f"{memory / 1e9:.2f} GB", f"{bulk}x{bulk}",
                    f"{job // pixel_frames:,}", f"{min(TILE_TARGETS, TILE_PIXEL_FRAMES // pixel_frames)}"]
        assert rows[cadence] == expected, cadence


def test_a_100x100_cutout_of_a_200_second_sector_is_within_the_defaults():
    frames = CADENCES["200 s"]
    assert largest_square(int(PARAMETERS["CutoutMaxPixelFrames"]["Default"]), frames) >= 100
    assert work_bytes([100 * 100 * frames]) <= WORK_BYTES


def test_the_prose_states_the_defaults_it_uses():
    section = DOC[DOC.index("### Budgets per cadence"):].split("\n|")[0]
    stated = {int(v.replace(",", "")) for v in re.findall(r"\((\d[\d,]+)(?: pixel-frames)?[,)]", section)}
    assert {int(PARAMETERS["CutoutMaxPixelFrames"]["Default"]), int(PARAMETERS["BulkMaxPixelFrames"]["Default"]),
            TILE_PIXEL_FRAMES, WORK_BYTES, WORK_BYTES // IN_MEMORY_BYTES_PER_PIXEL_FRAME} <= stated
    assert f"{TILE_PIXEL_FRAMES * 8 // 10**6} MB" in section and f"{MAX_BULK_SIDE} pixels per side" in section


def test_the_measured_streamed_cutout_is_memory_json():
    """Every figure of the paragraph on the streamed 100x100 cutout is the one current result
    of ``benchmarks/memory.py --section streamed`` (benchmarks/results/memory.json)."""
    import json

    streamed = json.loads((ROOT / "benchmarks" / "results" / "memory.json").read_text())["sections"]["streamed"]
    runs = streamed["runs"]
    cutouts = [r for name, rs in runs.items() if not name.startswith("upload") for r in rs]
    uploads = [r for name, rs in runs.items() if name.startswith("upload") for r in rs]
    proxied = runs["v1 proxy"][0]["s3"]
    rows, columns = streamed["cube_shape"]

    def span(values: list[float], digits: int, unit: str) -> str:
        return f"{min(values):,.{digits}f}-{max(values):,.{digits}f} {unit}"

    (charge,) = {r["charge_bytes"] for r in cutouts}
    tpf = runs["v1 proxy"][0]["object_bytes"]  # the TPF itself (astrocut's route adds a zip around it)
    expected = [
        f"a {streamed['size']}x{streamed['size']} cutout of an {streamed['frames']:,}-frame cube",
        f"({rows} x {columns} pixels, {streamed['cube_bytes'] / 1e9:.2f} GB, in s3rver)",
        f"it holds {min(r['before_mb'] for r in cutouts):.0f} MB before and peaks at "
        + span([r["after_mb"] for r in cutouts], 0, "MB"),
        f"the service's charge is {charge / 1e6:,.0f} MB) for a {tpf / 1e6:,.0f} MB TPF",
        f"with {proxied['by_method']['GET']} range GETs reading {proxied['body_bytes'] / 1e6:,.0f} MB and "
        f"{proxied['by_method']['PUT']} parts written",
        "was " + span([r["wall_s"] for r in cutouts], 1, "s") + ",",
        "of which " + span([r["cut_s"] for r in cutouts], 1, "s") + " cutting",
        "cut took " + span([r["wall_s"] for r in uploads], 1, "s") + ":",
    ]
    text = " ".join(DOC.split())
    for figure in expected:
        assert figure in text, figure
