"""The ``cubecut`` command line.

Every command has ``--help``. S3 locations honour the standard AWS environment
(``AWS_ENDPOINT_URL``, credentials, region), so the same commands work against AWS and
against the local stack started by ``cubecut local up``; with no credentials configured
(or ``--anon``) S3 reads are unsigned, for public buckets. Errors a user can cause, and
the machine's (a full disk, an unwritable output: ``OSError``), print one
``cubecut: error: ...`` line and exit with status 2.
"""
from __future__ import annotations

import argparse
import os
import sys
import warnings
from typing import Sequence

from cubecut import __version__
from cubecut.errors import CubecutError, CubecutWarning

from . import beyond, bulk, cubes, stack


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cubecut", description="TESS FFI cubes and target pixel file cutouts, "
                                     "serverless on S3.")
    parser.add_argument("--version", action="version", version=f"cubecut {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    cubes.register(commands)
    stack.register(commands)
    beyond.register(commands)
    bulk.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    anon_before = os.environ.get("CUBECUT_ANON")
    if getattr(args, "anon", False):
        os.environ["CUBECUT_ANON"] = "1"  # read by cubecut.storage, in every thread of this command
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            return args.run(args)
    except CubecutError as exc:
        print(f"cubecut: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # the machine's, not cubecut's: a full disk, an unwritable folder
        where = f": {exc.filename}" if exc.filename else ""
        print(f"cubecut: error: {type(exc).__name__}: {exc.strerror or exc}{where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    finally:
        if anon_before is None:
            os.environ.pop("CUBECUT_ANON", None)
        else:
            os.environ["CUBECUT_ANON"] = anon_before


_default_showwarning = warnings.showwarning


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """cubecut's own warnings as one ``cubecut: warning: ...`` line; others as Python shows them."""
    if issubclass(category, CubecutWarning):
        print(f"cubecut: warning: {message}", file=sys.stderr)
    else:
        _default_showwarning(message, category, filename, lineno, file, line)
