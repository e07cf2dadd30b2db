"""Small helpers shared by the CLI command modules."""
from __future__ import annotations

import argparse
import sys
from typing import Callable

from tqdm import tqdm


def threads(value: str) -> int | str:
    """``--threads``: ``auto`` or a positive whole number."""
    if value == "auto":
        return value
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError("must be 'auto' or a positive whole number")
    return number


def size(values: list[int]) -> int | tuple[int, int]:
    """``--size NX [NY]`` in pixels (columns, rows)."""
    if len(values) > 2:
        raise SystemExit("cubecut: error: --size takes NX or NX NY")
    return values[0] if len(values) == 1 else (values[0], values[1])


def block_progress(description: str, quiet: bool) -> tuple[tqdm, Callable[[int, int], None]]:
    """A tqdm bar on stderr and an ``on_block(done, total)`` callback that drives it."""
    bar = tqdm(total=None, unit="block", desc=description, disable=quiet, file=sys.stderr)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    return bar, progress


def add_position(parser: argparse.ArgumentParser) -> None:
    """``--ra``, ``--dec`` (degrees) and ``--size NX [NY]`` (pixels)."""
    parser.add_argument("--ra", type=float, required=True, help="right ascension in degrees (ICRS)")
    parser.add_argument("--dec", type=float, required=True, help="declination in degrees (ICRS)")
    parser.add_argument("--size", type=int, nargs="+", required=True, metavar="N",
                        help="cutout size in pixels: NX [NY] (columns, rows)")


def formatter() -> type[argparse.HelpFormatter]:
    return argparse.RawDescriptionHelpFormatter


def add_anon(parser: argparse.ArgumentParser) -> None:
    """``--anon``: unsigned S3 requests (public buckets), even when credentials are configured."""
    parser.add_argument("--anon", action="store_true",
                        help="read s3:// anonymously (unsigned requests, for public buckets such as "
                        "MAST's stpubdata); without it requests are unsigned only when no AWS credentials "
                        "are configured")
