"""Splitting a cube into row blocks that are valid S3 multipart parts.

Part 1 carries the headers and the first rows; the last part carries the last rows, the
zero padding of the image data and the table HDU. S3's rules (which moto does not all
enforce, so we check them here): every part but the last is at least 5 MiB and at most
5 GiB, at most 10,000 parts, and parts are completed in ascending order.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..cube.layout import CubeLayout
from ..errors import PlanError
from ..storage import MIN_PART_BYTES

MIB = 1024 * 1024
S3_MIN_PART = MIN_PART_BYTES
S3_MAX_PART = 5 * 1024 * MIB
S3_MAX_PARTS = 10_000
#: The fewest bytes one FFI read of a block worker should fetch (rows x columns x 4 bytes
#: of one image HDU). A cube takes (pixel bytes / this) GETs whatever its length, so this
#: is what bounds S3's request bill: 160 KiB is 20 rows of a 2136-column FFI, 2.43
#: million GETs (~$0.97 at $0.0004 per 1,000) for a 200-s cube of 11,700 frames, ~$0.11
#: for a 30-min one (docs/ingest-at-scale.md).
MIN_READ_BYTES = 160 * 1024
#: The largest part a block worker holds (its memory budget for the part buffer;
#: ``CUBECUT_BLOCK_MIB`` in template.yaml, BlockFunction's MemorySize follows from it):
#: 4 GiB fits MIN_READ_BYTES' 20 rows of a 200-s sector (3.7 GiB at 11,700 frames).
DEFAULT_BLOCK_BYTES = 4096 * MIB


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


def plan_blocks(layout: CubeLayout, block_bytes: int = DEFAULT_BLOCK_BYTES, *,
                min_part: int = S3_MIN_PART) -> list[Block]:
    """Split ``layout``'s rows into blocks of whole rows: the fewest rows whose FFI reads
    (rows x ncols x 4 bytes each) reach :data:`MIN_READ_BYTES`, but no more than fit in
    ``block_bytes`` (the most pixel data a block may hold, the worker's part budget: a
    single row larger than it makes one-row blocks), and never fewer than a ``min_part``
    part (unless it is the only or the last one) or than :data:`S3_MAX_PARTS` parts allow.
    """
    if layout.nrows <= 0 or layout.row_stride <= 0:
        raise PlanError("the cube has no pixels to write")
    if block_bytes < min_part:
        raise PlanError(f"block size {block_bytes} B is below the S3 minimum part size {min_part} B")
    stride = layout.row_stride
    wanted = -(-MIN_READ_BYTES // (layout.ncols * 4))
    rows = max(1, min(wanted, block_bytes // stride), -(-min_part // stride), -(-layout.nrows // S3_MAX_PARTS))
    blocks: list[Block] = []
    for index, row0 in enumerate(range(0, layout.nrows, rows)):
        row1 = min(row0 + rows, layout.nrows)
        head, tail = row0 == 0, row1 == layout.nrows
        start = 0 if head else layout.row_offset(row0)
        stop = layout.total_bytes if tail else layout.row_offset(row1)
        blocks.append(Block(index, index + 1, row0, row1, start, stop - start, head, tail))
    check_parts([(b.part, b.size) for b in blocks], min_part=min_part)
    return blocks


def check_parts(parts: list[tuple[int, int]], *, min_part: int = S3_MIN_PART) -> None:
    """Check ``(part number, size)`` pairs against S3's multipart rules (``min_part``: the
    smallest part but the last); raise PlanError."""
    if not parts:
        raise PlanError("no parts")
    if len(parts) > S3_MAX_PARTS:
        raise PlanError(f"{len(parts)} parts exceed the S3 limit of {S3_MAX_PARTS}")
    numbers = [p for p, _ in parts]
    if numbers != list(range(1, len(parts) + 1)):
        raise PlanError(f"parts must be numbered 1..{len(parts)} in ascending order, got {numbers[:10]}...")
    for number, size in parts:
        if size > S3_MAX_PART:
            raise PlanError(f"part {number} is {size} B, above the S3 maximum {S3_MAX_PART} B")
        if number < len(parts) and size < min_part:
            raise PlanError(f"part {number} is {size} B, below the S3 minimum {min_part} B")
