"""Ingest at real size: plans for 30-min, 10-min and 200-s sectors of full 2078 x 2136 FFIs
stay within S3's and Lambda's limits, and ``cubecut ingest --plan-only`` reads only headers."""
from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
from samtranslator.yaml_helper import yaml_parse

from cubecut.cube.layout import CubeLayout
from cubecut.fitsio import padded
from cubecut.ingest import sizing
from cubecut.ingest.partition import DEFAULT_BLOCK_BYTES, MIB, S3_MAX_PART, S3_MAX_PARTS, S3_MIN_PART, plan_blocks
from cubecut.ingest.plan import draft_plan, make_plan
from cubecut.ingest.transpose import build_part, sweep
from cubecut.synth.sparse import sparse_sector, write_cut_down, write_sparse_sector
from cubecut_infra.cli import main

ROOT = Path(__file__).resolve().parents[2]
#: FFIs per CCD and sector at each cadence (issue 27).
CADENCES = {"30-min": 1_300, "10-min": 3_900, "200-s": 11_700}
#: MAST's layout: s3://stpubdata/tess/public/ffi/sSSSS/YYYY/DDD/C-C/, one prefix per day.
MAST_DAILY_PREFIXES = 27
SPARSE_FRAMES = 12


@pytest.fixture(scope="module")
def sparse(tmp_path_factory) -> list[Path]:
    """Full-size SPOC FFIs of sector 56 (200-s cadence) whose pixels are holes."""
    folder = tmp_path_factory.mktemp("sparse")
    return write_sparse_sector(folder, sparse_sector(sector=56, camera=1, ccd=1, frames=SPARSE_FRAMES))


def at_frames(layout: CubeLayout, table_row_bytes: int, frames: int) -> CubeLayout:
    """``layout`` with ``frames`` frames: the table grows by one row per frame."""
    table = padded(layout.table_bytes + (frames - layout.nt) * table_row_bytes)
    return CubeLayout(layout.nrows, layout.ncols, frames, layout.nplanes, layout.head_bytes, table)


def test_sparse_ffis_are_full_size_and_take_no_disk(sparse):
    from astropy.io import fits

    size = sparse[0].stat().st_size
    assert 2 * padded(2078 * 2136 * 4) < size < 2 * padded(2078 * 2136 * 4) + 20 * 2880  # ~35.5 MB
    assert sparse[0].stat().st_blocks * 512 < 200_000  # the headers' blocks only
    with fits.open(sparse[0]) as hdus:
        assert [h.shape for h in hdus] == [(), (2078, 2136), (2078, 2136)]
        assert hdus[1].header["TSTART"] < fits.getheader(sparse[1], 1)["TSTART"]


@pytest.mark.parametrize("cadence", CADENCES)
def test_plans_fit_s3_and_lambda_at_every_cadence(sparse, cadence):
    """Header-only planning of full-size FFIs, at each cadence's frame count: parts within
    S3's multipart rules, a worker within BlockFunction's memory (and Lambda's), a block
    within its timeout, GETs under $2 per cube and under S3's rate per prefix."""
    draft = draft_plan([str(p) for p in sparse])
    row_bytes = (draft.layout.table_bytes - 2880) // SPARSE_FRAMES  # an upper bound per table row
    layout = at_frames(draft.layout, row_bytes, CADENCES[cadence])
    blocks = plan_blocks(layout)
    headers = sizing.Headers(layout.nt, 4 * layout.nt, 4 * layout.nt * 5760)
    figures = sizing.ingest_model(layout, blocks, headers, MAST_DAILY_PREFIXES, 250 * layout.nt)
    run = figures["model"]

    assert figures["parts"] == len(blocks) <= S3_MAX_PARTS
    assert all(S3_MIN_PART <= b.size <= S3_MAX_PART for b in blocks[:-1]) and blocks[-1].size <= S3_MAX_PART
    assert sum(b.size for b in blocks) == figures["cube_bytes"] == layout.total_bytes
    assert figures["worker_memory_bytes"] <= sizing.BLOCK_MEMORY_MB * MIB <= sizing.LAMBDA_MAX_MEMORY_MB * MIB
    assert run["block_seconds"] <= sizing.BLOCK_TIMEOUT_S <= sizing.LAMBDA_MAX_TIMEOUT_S
    assert run["cost_usd"]["s3_get"] < 2.0
    assert run["get_rate_per_prefix_wanted"] <= sizing.S3_GETS_PER_PREFIX_S and not run["throttled_by_s3"]
    # The plan step fits the PlanFunction (1769 MB = one vCPU, 900 s) at every cadence.
    assert run["problems"] == []
    # each FFI read is at least 160 KiB: 20 rows of 2136 float32 pixels; 104 parts whatever the cadence
    assert figures["bytes_per_pixel_get"] >= 160 * 1024 and figures["rows_per_part"] == 20
    assert figures["parts"] == 104
    assert round(figures["part_bytes_max"] / 2**30, 1) == {"30-min": 0.4, "10-min": 1.2, "200-s": 3.7}[cadence]
    if cadence == "200-s":  # docs/ingest-at-scale.md: 2.43 million pixel GETs, under $1 of GETs in all
        assert figures["pixel_get_requests"] == 104 * 11_700 * 2 and run["cost_usd"]["s3_get"] < 1.0
        one_row = plan_blocks(layout, 256 * MIB)  # the old 256 MiB target: one-row blocks, ~48 million GETs
        assert len(one_row) == 2078 and 19 < len(one_row) * 11_700 * 2 * sizing.S3_GET_USD < 20


def test_one_prefix_is_held_to_s3s_rate(sparse):
    """FFIs all under one prefix: the model slows the blocks to S3's 5,500 GET/s, never above."""
    draft = draft_plan([str(p) for p in sparse])
    layout = at_frames(draft.layout, 0, CADENCES["200-s"])
    blocks = plan_blocks(layout)
    figures = sizing.ingest_model(layout, blocks, sizing.Headers(layout.nt, 0, 0), 1, 0)
    run = figures["model"]
    assert run["throttled_by_s3"] and run["get_rate_per_prefix"] == sizing.S3_GETS_PER_PREFIX_S
    pixel_gets = len(blocks) * layout.nt * layout.nplanes
    assert run["blocks_seconds"] >= pixel_gets / sizing.S3_GETS_PER_PREFIX_S


def test_blocks_running_at_once_spread_over_the_daily_prefixes():
    """At every step of their sweeps, the 104 blocks of a 200-s sector are spread over the
    27 daily prefixes: no prefix has more than its share (rounded up) plus one."""
    nt, nblocks = CADENCES["200-s"], 104
    day = np.arange(nt) * MAST_DAILY_PREFIXES // nt  # frame -> prefix, in time order
    orders = np.array([sweep(b, nblocks, nt) for b in range(nblocks)])
    assert sorted(orders[7]) == list(range(nt))
    for step in range(0, nt, 97):
        counts = np.bincount(day[orders[:, step]], minlength=MAST_DAILY_PREFIXES)
        assert counts.max() <= math.ceil(nblocks / MAST_DAILY_PREFIXES) + 1


def test_deployment_constants_are_the_templates():
    """sizing's deployment facts are template.yaml's: one source of truth, checked."""
    template = yaml_parse((ROOT / "template.yaml").read_text())
    parameters, resources = template["Parameters"], template["Resources"]
    assert parameters["MaxConcurrency"]["Default"] == sizing.DEPLOYED_CONCURRENCY
    assert parameters["BlockReservedConcurrency"]["Default"] == sizing.DEPLOYED_CONCURRENCY
    block = resources["BlockFunction"]["Properties"]
    assert (block["MemorySize"], block["Timeout"]) == (sizing.BLOCK_MEMORY_MB, sizing.BLOCK_TIMEOUT_S)
    plan = resources["PlanFunction"]["Properties"]
    assert (plan["MemorySize"], plan["Timeout"]) == (sizing.PLAN_MEMORY_MB, sizing.PLAN_TIMEOUT_S)
    variables = template["Globals"]["Function"]["Environment"]["Variables"]
    assert float(variables["CUBECUT_BLOCK_MIB"]) * MIB == DEFAULT_BLOCK_BYTES
    assert DEFAULT_BLOCK_BYTES <= S3_MAX_PART
    # a part as large as the budget allows still fits the BlockFunction's memory
    widest = CubeLayout(2078, 2136, 100_000, 2, 2880, 2880)  # one row of 1.7 GB: two rows per block
    (largest, *_) = plan_blocks(widest)
    assert largest.size <= DEFAULT_BLOCK_BYTES < 3 * widest.row_stride
    assert sizing.worker_memory_bytes(widest, largest) <= sizing.BLOCK_MEMORY_MB * MIB


def test_plan_only_json_reads_headers_and_writes_nothing(sparse, tmp_path, capsys):
    before = sorted(p.name for p in sparse[0].parent.iterdir())
    out = tmp_path / "cubes"
    assert main(["ingest", *map(str, sparse), "--out", f"{out}/", "--plan-only", "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert not out.exists() and sorted(p.name for p in sparse[0].parent.iterdir()) == before
    draft = draft_plan([str(p) for p in sparse])
    assert (figures["frames"], figures["rows"], figures["columns"]) == (SPARSE_FRAMES, 2078, 2136)
    assert figures["cube_bytes"] == draft.layout.total_bytes and figures["parts"] == len(draft.blocks)
    assert figures["part_bytes_max"] == max(b.size for b in draft.blocks)
    assert figures["get_requests"] > figures["pixel_get_requests"] == len(draft.blocks) * SPARSE_FRAMES * 2
    assert 0 < figures["header_bytes"] < SPARSE_FRAMES * 200_000  # headers, not 35 MB of pixels each
    assert figures["get_bytes"] > figures["cube_bytes"] - draft.layout.head_bytes - draft.layout.table_bytes
    assert figures["worker_memory_bytes"] > figures["part_bytes_max"]
    run = figures["model"]
    assert run["concurrency"] == sizing.DEPLOYED_CONCURRENCY and run["lambda_wall_seconds"] > 0
    assert run["cost_usd"]["total"] == pytest.approx(sum(v for k, v in run["cost_usd"].items() if k != "total"),
                                                     abs=1e-3)


def test_plan_only_in_words_and_its_errors(sparse, tmp_path, capsys):
    assert main(["ingest", *map(str, sparse[:3]), "--out", str(tmp_path / "c.fits"), "--plan-only"]) == 0
    words = capsys.readouterr().out
    assert "3 frames, 2078 x 2136 pixels" in words and "docs/ingest-at-scale.md" in words
    with pytest.raises(SystemExit, match="--json goes with --plan-only"):
        main(["ingest", *map(str, sparse[:3]), "--out", str(tmp_path / "c.fits"), "--json"])
    assert main(["ingest", str(tmp_path / "none*.fits"), "--out", str(tmp_path / "c.fits"), "--plan-only"]) == 2
    assert not (tmp_path / "c.fits").exists()


def test_a_full_size_block_equals_astrocuts_cube_of_its_rows(tmp_path):
    """A middle block planned for full-size FFIs (rows chosen for 2078 x 2136) holds the
    same bytes as astrocut's cube of the same FFIs cut down to the block's rows."""
    from astrocut import CubeFactory

    frames = 5
    ffis = sparse_sector(sector=56, camera=1, ccd=1, frames=frames)
    expected = plan_blocks(CubeLayout(2078, 2136, frames, 2, 2880, 2880))[1]
    rows = (expected.row0, expected.row1)
    plan = make_plan([str(p) for p in write_sparse_sector(tmp_path / "ffis", ffis, filled=rows)],
                     str(tmp_path / "cube.fits"))
    block = plan.blocks[1]
    assert (block.row0, block.row1) == rows and not (block.head or block.tail)
    part = build_part(plan, block)

    reference = tmp_path / "astrocut.fits"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        CubeFactory().make_cube([str(p) for p in write_cut_down(ffis, rows, tmp_path / "cut")], str(reference),
                                verbose=False)
    from astropy.io import fits

    with fits.open(reference) as hdus:
        offset, shape = hdus[1]._data_offset, hdus[1].shape
    assert shape == (rows[1] - rows[0], 2136, frames, 2)
    with open(reference, "rb") as handle:
        handle.seek(offset)
        assert handle.read(len(part)) == bytes(part)
