"""Small helpers shared by the CLI command modules."""
from __future__ import annotations

import argparse
import sys
from typing import Any, Callable

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


def size(values: list[str]) -> object:
    """``--size NX [NY]`` (columns, rows): pixels (``11``, ``11.5``: rounded as astrocut
    rounds) or angle/pixel Quantities (``2arcmin``, ``30 arcsec``, ``0.1deg``, ``5pix``), read
    by :func:`cubecut.cutout.size.parse_size_text`; a bad size raises CutoutSizeError."""
    from cubecut.cutout.size import parse_size_text
    from cubecut.errors import CutoutSizeError

    try:
        parsed = parse_size_text(values)
    except CutoutSizeError as exc:
        raise CutoutSizeError(f"--size: {exc}") from None
    return parsed[0] if len(values) == 1 else parsed


def pixels(values: list[str]) -> tuple[int, int]:
    """``--size NX [NY]`` in whole pixels (bulk jobs, moving targets): ``(nx, ny)``."""
    from cubecut.cutout.size import pixel_extents
    from cubecut.errors import CutoutSizeError

    try:
        return pixel_extents(values)
    except CutoutSizeError as exc:
        raise CutoutSizeError(f"--size: {exc}") from None


def block_progress(description: str, quiet: bool) -> tuple[tqdm, Callable[[int, int], None]]:
    """A tqdm bar on stderr and an ``on_block(done, total)`` callback that drives it."""
    bar = tqdm(total=None, unit="block", desc=description, disable=quiet, file=sys.stderr)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    return bar, progress


def add_position(parser: argparse.ArgumentParser, *, many: bool = False) -> None:
    """Where to cut: ``--ra``/``--dec`` (degrees) or ``--target "RA DEC"``; with ``many``
    repeated (pairs in order) and ``--targets FILE``; and ``--size NX [NY]``."""
    again = " (repeat for several targets)" if many else ""
    parser.add_argument("--ra", type=float, action="append", help=f"right ascension in degrees (ICRS){again}")
    parser.add_argument("--dec", type=float, action="append", help=f"declination in degrees (ICRS){again}")
    parser.add_argument("--target", action="append", metavar='"RA DEC"',
                        help="a position: degrees ('314.05 -47.12') or sexagesimal with RA in hours "
                        f"('20:56:12 -47:07:12'){again}")
    if many:
        parser.add_argument("--targets", metavar="FILE",
                            help="a file of positions, one 'RA DEC' per line (as --target; # comments)")
    parser.add_argument("--size", nargs="+", required=True, metavar="N",
                        help="cutout size NX [NY] (columns, rows): pixels (11, 11.5) or an angle (2arcmin)")


def positions(args: argparse.Namespace, *, many: bool = False) -> list[str]:
    """The positions given by ``--ra/--dec`` pairs, ``--target`` and ``--targets``, in that
    order, as strings for :func:`cubecut.cutout.parse_coordinates` (which checks them)."""
    from cubecut.errors import CoordinateError

    ras, decs = args.ra or [], args.dec or []
    if len(ras) != len(decs):
        raise CoordinateError(f"--ra and --dec come in pairs: got {len(ras)} --ra and {len(decs)} --dec")
    found = [f"{ra!r} {dec!r}" for ra, dec in zip(ras, decs)] + list(args.target or [])
    if many and args.targets:
        try:
            lines = open(args.targets, encoding="utf-8").read().splitlines()
        except OSError as exc:
            raise CoordinateError(f"--targets {args.targets}: cannot read it: {exc.strerror or exc}") from None
        found += [line.split("#", 1)[0].strip() for line in lines if line.split("#", 1)[0].strip()]
    if not found:
        raise CoordinateError("no position given: use --ra RA --dec DEC, --target 'RA DEC'"
                              + (" or --targets FILE" if many else ""))
    if not many and len(found) > 1:
        raise CoordinateError(f"this command takes one position, got {len(found)}")
    return found


def add_command(commands: argparse._SubParsersAction, name: str, run: Callable[[argparse.Namespace], int],
                **texts: Any) -> argparse.ArgumentParser:
    """The subcommand ``name``, which runs ``run(args)``, with its ``help``, ``description``
    and ``epilog`` ``texts`` (an epilog of examples is printed as written, not re-wrapped)."""
    formatter = argparse.RawDescriptionHelpFormatter if "epilog" in texts else argparse.HelpFormatter
    parser = commands.add_parser(name, formatter_class=formatter, **texts)
    parser.set_defaults(run=run)
    return parser


def add_anon(parser: argparse.ArgumentParser) -> None:
    """``--anon``: unsigned S3 requests (public buckets), even when credentials are configured."""
    parser.add_argument("--anon", action="store_true",
                        help="read s3:// anonymously (unsigned requests, for public buckets such as "
                        "MAST's stpubdata); without it requests are unsigned only when no AWS credentials "
                        "are configured")
