"""Splitting a cube into row blocks that are valid S3 multipart parts.

Part 1 carries the headers and the first rows; the last part carries the last rows, the
zero padding of the image data and the table HDU. S3's rules (which moto does not all
enforce, so we check them here): every part but the last is at least 5 MiB and at most
5 GiB, at most 10,000 parts, and parts are completed in ascending order.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from ..cube.layout import CubeLayout
from ..errors import PlanError

MIB = 1024 * 1024
S3_MIN_PART = 5 * MIB
S3_MAX_PART = 5 * 1024 * MIB
S3_MAX_PARTS = 10_000
#: 256 MiB parts keep a 45 GB sector to ~175 blocks: with ~2,600 ranged GETs per block
#: (flux + error of every FFI) that stays within S3's 5,500 GET/s per prefix at 200
#: concurrent workers (benchmarks/README.md, sector model); a worker needs ~2x this.
DEFAULT_BLOCK_BYTES = 256 * MIB


@dataclass(frozen=True)
class Block:
    """One part of the cube object: rows ``[row0, row1)`` (0-based) plus head/tail bytes.

    ``offset`` and ``size`` give the part's byte span in the cube object.
    """

    index: int
    part: int
    row0: int
    row1: int
    offset: int
    size: int
    head: bool
    tail: bool

    def to_dict(self) -> dict:
        return asdict(self)


def plan_blocks(layout: CubeLayout, block_bytes: int = DEFAULT_BLOCK_BYTES, *,
                min_part: int = S3_MIN_PART, max_part: int = S3_MAX_PART,
                max_parts: int = S3_MAX_PARTS) -> list[Block]:
    """Split ``layout``'s rows into blocks of about ``block_bytes`` of pixel data.

    Blocks hold whole rows; a block is never smaller than ``min_part`` (unless it is the
    only or the last one) and the count never exceeds ``max_parts``. ``block_bytes`` is
    a target: a single row larger than it makes one-row blocks.
    """
    if layout.nrows <= 0 or layout.row_stride <= 0:
        raise PlanError("the cube has no pixels to write")
    if block_bytes < min_part:
        raise PlanError(f"block size {block_bytes} B is below the S3 minimum part size {min_part} B")
    stride = layout.row_stride
    rows = max(1, block_bytes // stride, -(-min_part // stride))
    rows = max(rows, -(-layout.nrows // max_parts))
    blocks: list[Block] = []
    for index, row0 in enumerate(range(0, layout.nrows, rows)):
        row1 = min(row0 + rows, layout.nrows)
        head, tail = row0 == 0, row1 == layout.nrows
        start = 0 if head else layout.row_offset(row0)
        stop = layout.total_bytes if tail else layout.row_offset(row1)
        blocks.append(Block(index, index + 1, row0, row1, start, stop - start, head, tail))
    check_parts([(b.part, b.size) for b in blocks], min_part=min_part, max_part=max_part, max_parts=max_parts)
    return blocks


def check_parts(parts: list[tuple[int, int]], *, min_part: int = S3_MIN_PART, max_part: int = S3_MAX_PART,
                max_parts: int = S3_MAX_PARTS) -> None:
    """Check ``(part number, size)`` pairs against S3's multipart rules; raise PlanError."""
    if not parts:
        raise PlanError("no parts")
    if len(parts) > max_parts:
        raise PlanError(f"{len(parts)} parts exceed the S3 limit of {max_parts}")
    numbers = [p for p, _ in parts]
    if numbers != list(range(1, len(parts) + 1)):
        raise PlanError(f"parts must be numbered 1..{len(parts)} in ascending order, got {numbers[:10]}...")
    for number, size in parts:
        if size > max_part:
            raise PlanError(f"part {number} is {size} B, above the S3 maximum {max_part} B")
        if number < len(parts) and size < min_part:
            raise PlanError(f"part {number} is {size} B, below the S3 minimum {min_part} B")
