"""Commands that run the serverless system locally: local up, demo."""
from __future__ import annotations

import argparse
import signal

from .common import add_command


def local_up(args: argparse.Namespace) -> int:
    from cubecut_infra.local.stack import serve_forever

    def stop(signum, frame):  # `kill` stops the stack as cleanly as Ctrl-C
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    # Ctrl-C (SIGINT) stops it even when started from a shell that ignores SIGINT for what it
    # starts (a `&` job of a script), which Python would otherwise leave ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    return serve_forever(port=args.port, s3_port=args.s3_port, bucket=args.bucket, print_env=args.print_env,
                         env_file=args.env_file, data_dir=args.data_dir)


def demo(args: argparse.Namespace) -> int:
    from cubecut_infra.local.demo import run_demo

    return run_demo(workdir=args.workdir, frames=args.frames, shape=tuple(args.shape), size=args.size)


def register(commands: argparse._SubParsersAction) -> None:
    local = commands.add_parser("local", help="run the serverless stack on this machine",
                                description="The local runtime: an S3-compatible server, S3 events, the ingest "
                                "state machine and the HTTP API, all on 127.0.0.1.")
    local_commands = local.add_subparsers(dest="local_command", required=True, metavar="COMMAND")
    up = add_command(local_commands, "up", local_up, help="start the local stack and serve until interrupted",
                     description="Start the S3 server, S3-event ingest trigger, state machine runner "
                     "and API on 127.0.0.1; print their endpoints.",
                     epilog="example: in one shell\n"
                     "  cubecut local up --env-file stack.env\n"
                     "and in a second shell (same folder)\n"
                     "  until [ -s stack.env ]; do sleep 1; done; source stack.env")
    up.add_argument("--port", type=int, default=0, help="API port (default: a free one)")
    up.add_argument("--s3-port", type=int, default=0, help="S3 server port (default: a free one)")
    up.add_argument("--bucket", default="cubecut-local", help="bucket name (default cubecut-local)")
    up.add_argument("--print-env", action="store_true",
                    help="print shell export lines (AWS_ENDPOINT_URL, CUBECUT_API_URL, CUBECUT_CUBES, "
                    "credentials, and for cubecut bulk --stack AWS_ENDPOINT_URL_SFN and "
                    "CUBECUT_BULK_JOBS_STATE_MACHINE_ARN) once the stack is up, instead of the banner")
    up.add_argument("--data-dir", metavar="DIR",
                    help="keep the bucket in DIR across restarts: its files (key = path under DIR, e.g. "
                    "cubes/tess-s0001-1-1-cube.fits) are loaded at start and the bucket is written back when the "
                    "stack stops (Ctrl-C or kill; not kill -9)")
    up.add_argument("--env-file", metavar="PATH",
                    help="also write those export lines to PATH once the stack is up (removed when it "
                    "stops); another shell joins with: source PATH")

    p = add_command(commands, "demo", demo, help="the whole system end to end on a synthetic sector",
                    description="Start the local stack, synthesize a sector, upload it, let the S3 event "
                    "start the ingest state machine, request a cutout over HTTP, download it through its "
                    "presigned URL and save a quick-look PNG. Prints where the TPF and PNG are.")
    p.add_argument("--workdir", default="cubecut-demo", help="where FFIs, the TPF and the PNG go")
    p.add_argument("--frames", type=int, default=120, help="number of FFIs (default 120)")
    p.add_argument("--shape", type=int, nargs=2, default=[256, 256], metavar=("ROWS", "COLS"),
                   help="FFI crop (default 256 256)")
    p.add_argument("--size", type=int, default=15, help="cutout size in pixels (default 15)")
