"""The ``cubecut`` command line.

Every command has ``--help``. S3 locations honour the standard AWS environment
(``AWS_ENDPOINT_URL``, credentials, region), so the same commands work against AWS and
against the local stack started by ``cubecut local up``. Errors a user can cause print
one ``cubecut: error: ...`` line and exit with status 2.
"""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

from cubecut.errors import CubecutError

from . import beyond, bulk, cubes, stack


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cubecut", description="TESS FFI cubes and target pixel file cutouts, "
                                     "serverless on S3.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    cubes.register(commands)
    stack.register(commands)
    beyond.register(commands)
    bulk.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except CubecutError as exc:
        print(f"cubecut: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
