"""Row-block planning obeys S3's multipart rules in every edge case (pure, no I/O)."""
from __future__ import annotations

import pytest

from cubecut.cube.layout import CubeLayout
from cubecut.errors import PlanError
from cubecut.ingest.partition import MIB, S3_MAX_PARTS, S3_MIN_PART, check_parts, plan_blocks


def layout(nrows: int, ncols: int = 2136, nt: int = 1000, nplanes: int = 2) -> CubeLayout:
    return CubeLayout(nrows, ncols, nt, nplanes, head_bytes=4 * 2880, table_bytes=100 * 2880)


def assert_tiles(lay: CubeLayout, blocks) -> None:
    """Blocks cover the object exactly once, in order, with S3-valid part sizes."""
    assert [b.part for b in blocks] == list(range(1, len(blocks) + 1))
    assert blocks[0].offset == 0 and blocks[0].head and blocks[-1].tail
    assert sum(b.size for b in blocks) == lay.total_bytes
    for before, after in zip(blocks, blocks[1:]):
        assert after.offset == before.offset + before.size
        assert after.row0 == before.row1
        assert before.size >= S3_MIN_PART
    assert blocks[-1].row1 == lay.nrows
    assert len(blocks) <= S3_MAX_PARTS


def test_one_block_holds_a_small_cube():
    lay = layout(10, ncols=20, nt=5)
    (block,) = plan_blocks(lay)
    assert block.head and block.tail and block.size == lay.total_bytes and (block.row0, block.row1) == (0, 10)


def test_two_blocks_first_at_least_5_mib():
    lay = layout(8, ncols=2136, nt=100)  # 1.7 MB per row: 4 rows reach 5 MiB
    blocks = plan_blocks(lay, block_bytes=5 * MIB)
    assert len(blocks) == 2
    assert_tiles(lay, blocks)


def test_many_blocks_of_a_real_sector():
    lay = layout(2078, ncols=2136, nt=1300)  # ~22 MB per row, ~46 GB cube
    blocks = plan_blocks(lay, block_bytes=64 * MIB)
    assert_tiles(lay, blocks)
    assert all(b.row1 - b.row0 == 3 for b in blocks[:-1])


def test_rows_larger_than_the_target_make_one_row_blocks():
    lay = layout(50, ncols=2136, nt=12000)  # 205 MB per row
    blocks = plan_blocks(lay, block_bytes=64 * MIB)
    assert len(blocks) == 50
    assert_tiles(lay, blocks)


def test_10001_one_row_blocks_are_merged_under_the_part_limit():
    lay = layout(10_001, ncols=2136, nt=400)  # 6.8 MB per row: one row per block would need 10,001 parts
    blocks = plan_blocks(lay, block_bytes=5 * MIB)
    assert len(blocks) <= S3_MAX_PARTS
    assert_tiles(lay, blocks)


def test_exactly_10000_blocks_is_allowed():
    lay = layout(10_000, ncols=2136, nt=400)
    blocks = plan_blocks(lay, block_bytes=5 * MIB)
    assert len(blocks) == 10_000
    assert_tiles(lay, blocks)


def test_block_size_below_s3_minimum_is_refused():
    with pytest.raises(PlanError, match="minimum part size"):
        plan_blocks(layout(100), block_bytes=1 * MIB)


def test_a_row_above_5_gib_is_refused():
    with pytest.raises(PlanError, match="maximum"):
        plan_blocks(layout(3, ncols=2136, nt=400_000))


def test_empty_cube_is_refused():
    with pytest.raises(PlanError):
        plan_blocks(layout(0))


@pytest.mark.parametrize("parts, message", [
    ([(2, 6 * MIB), (1, 1)], "ascending"),
    ([(1, 6 * MIB), (3, 1)], "ascending"),
    ([(1, 1 * MIB), (2, 1)], "below the S3 minimum"),
    ([(1, 6 * 1024 * MIB)], "above the S3 maximum"),
    ([], "no parts"),
])
def test_part_lists_are_checked_by_us_not_the_server(parts, message):
    with pytest.raises(PlanError, match=message):
        check_parts(parts)


def test_last_part_may_be_small():
    check_parts([(1, 6 * MIB), (2, 10)])
