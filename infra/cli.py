"""The ``cubecut`` command line: synth, ingest, cutout, local up, demo.

Every command has ``--help``. S3 locations honour the standard AWS environment
(``AWS_ENDPOINT_URL``, credentials, region), so the same commands work against AWS and
against the local stack started by ``cubecut local up``.
"""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

from cubecut.errors import CubecutError

EPILOG_SYNTH = """example:
  cubecut synth ffis/ --sector 1 --camera 1 --ccd 1 --frames 50 --shape 128 128
"""
EPILOG_INGEST = """examples:
  cubecut ingest 'ffis/*ffic.fits' --out cubes/tess-s0001-1-1-cube.fits
  cubecut ingest s3://my-bucket/ffis/s0001/ --out s3://my-bucket/cubes/tess-s0001-1-1-cube.fits --workers 4
"""
EPILOG_CUTOUT = """examples:
  cubecut cutout cubes/tess-s0001-1-1-cube.fits --ra 352.54 --dec -63.81 --size 11
  cubecut cutout s3://my-bucket/cubes/tess-s0001-1-1-cube.fits --ra 352.54 --dec -63.81 --size 20 10 --out tpfs/
"""


def _synth(args: argparse.Namespace) -> int:
    from cubecut.synth import make_sector

    paths = make_sector(args.outdir, sector=args.sector, camera=args.camera, ccd=args.ccd, frames=args.frames,
                        shape=tuple(args.shape) if args.shape else None, product=args.product, seed=args.seed,
                        progress=not args.quiet)
    print(f"wrote {len(paths)} {args.product.upper()} FFIs to {args.outdir} (star catalog: stars.ecsv)")
    return 0


def _ingest(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from cubecut.ingest.inputs import resolve_inputs
    from cubecut.ingest.run import ingest

    urls = resolve_inputs(args.ffis)
    bar = tqdm(total=None, unit="block", desc="ingest", disable=args.quiet, file=sys.stderr)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    try:
        result = ingest(urls, args.out, product=args.product, sector=args.sector, workers=args.workers,
                        block_bytes=int(args.block_mib * 1024 * 1024), threads=_threads(args.threads),
                        on_block=progress)
    finally:
        bar.close()
    print(f"{result.cube}  ({result.nt} frames, {result.size / 1e6:.1f} MB; index {result.index})")
    return 0


def _cutout(args: argparse.Namespace) -> int:
    from astropy.coordinates import SkyCoord

    import cubecut

    size = tuple(args.size) if len(args.size) == 2 else args.size[0]
    coords = SkyCoord(args.ra, args.dec, unit="deg")
    paths = cubecut.cutout(args.cube, coords, size, threads=_threads(args.threads), output_dir=args.out)
    for path in paths:
        print(path)
    return 0


def _local_up(args: argparse.Namespace) -> int:
    from cubecut_infra.local.stack import serve_forever

    return serve_forever(port=args.port, s3_port=args.s3_port, bucket=args.bucket, print_env=args.print_env)


def _demo(args: argparse.Namespace) -> int:
    from cubecut_infra.local.demo import run_demo

    return run_demo(workdir=args.workdir, frames=args.frames, shape=tuple(args.shape), size=args.size)


def _threads(value: str) -> int | str:
    return value if value == "auto" else int(value)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cubecut", description="TESS FFI cubes and target pixel file cutouts, "
                                     "serverless on S3.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    synth = commands.add_parser("synth", help="write realistic synthetic TESS FFIs (SPOC or TICA)",
                                description="Write synthetic FFIs of one sector/camera/CCD with the real TESS WCS "
                                "(from tesswcs), stars, variability, noise and quality flags.",
                                epilog=EPILOG_SYNTH, formatter_class=argparse.RawDescriptionHelpFormatter)
    synth.add_argument("outdir", help="folder to write the FFIs into")
    synth.add_argument("--sector", type=int, required=True)
    synth.add_argument("--camera", type=int, required=True, choices=range(1, 5))
    synth.add_argument("--ccd", type=int, required=True, choices=range(1, 5))
    synth.add_argument("--frames", type=int, required=True, help="number of FFIs (frames)")
    synth.add_argument("--shape", type=int, nargs=2, metavar=("ROWS", "COLS"),
                       help="crop to ROWS x COLS pixels from the FFI origin (default: full 2078 x 2136)")
    synth.add_argument("--product", choices=["spoc", "tica"], default="spoc")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    synth.set_defaults(run=_synth)

    ingest = commands.add_parser("ingest", help="build a cube from the FFIs of one sector/camera/CCD",
                                 description="Plan the cube from FFI headers, build its row blocks in parallel and "
                                 "assemble it (S3 multipart upload, or a local file). Nothing is visible until it "
                                 "is complete; failures abort the upload.",
                                 epilog=EPILOG_INGEST, formatter_class=argparse.RawDescriptionHelpFormatter)
    ingest.add_argument("ffis", nargs="+", help="FFI files, globs, folders, s3:// URLs or prefixes, or manifests")
    ingest.add_argument("--out", required=True, help="cube location: a path or s3://bucket/key")
    ingest.add_argument("--workers", type=int, default=2, help="row blocks built at once (default 2)")
    ingest.add_argument("--block-mib", type=float, default=64.0,
                        help="target size of one row block / multipart part in MiB (>= 5, default 64)")
    ingest.add_argument("--threads", default="auto", help="concurrent FFI reads per block: auto or a number")
    ingest.add_argument("--product", choices=["spoc", "tica"], help="FFI product (default: detected)")
    ingest.add_argument("--sector", type=int, help="sector number if not in the FFI headers or names")
    ingest.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    ingest.set_defaults(run=_ingest)

    cutout = commands.add_parser("cutout", help="cut a target pixel file out of a cube",
                                 description="Read only the cube rows the cutout needs (threaded byte ranges) and "
                                 "write a TESS target pixel file readable by lightkurve. Prints the written path.",
                                 epilog=EPILOG_CUTOUT, formatter_class=argparse.RawDescriptionHelpFormatter)
    cutout.add_argument("cube", help="cube location: a path or s3://bucket/key")
    cutout.add_argument("--ra", type=float, required=True, help="right ascension in degrees (ICRS)")
    cutout.add_argument("--dec", type=float, required=True, help="declination in degrees (ICRS)")
    cutout.add_argument("--size", type=int, nargs="+", required=True, metavar="N",
                        help="cutout size in pixels: NX [NY] (columns, rows)")
    cutout.add_argument("--out", default=".", help="folder for the TPF (default: current folder)")
    cutout.add_argument("--threads", default="auto", help="concurrent row reads: auto or a number")
    cutout.set_defaults(run=_cutout)

    local = commands.add_parser("local", help="run the serverless stack on this machine",
                                description="The local runtime: an S3-compatible server, the ingest state machine "
                                "and the HTTP API, all on 127.0.0.1.")
    local_commands = local.add_subparsers(dest="local_command", required=True, metavar="COMMAND")
    up = local_commands.add_parser("up", help="start the local stack and serve until interrupted",
                                   description="Start the S3 server, S3-event ingest trigger, state machine runner "
                                   "and API on 127.0.0.1; print their endpoints.")
    up.add_argument("--port", type=int, default=0, help="API port (default: a free one)")
    up.add_argument("--s3-port", type=int, default=0, help="S3 server port (default: a free one)")
    up.add_argument("--bucket", default="cubecut-local", help="bucket name (default cubecut-local)")
    up.add_argument("--print-env", action="store_true",
                    help="print shell export lines (AWS_ENDPOINT_URL, CUBECUT_API_URL, CUBECUT_CUBES)")
    up.set_defaults(run=_local_up)

    demo = commands.add_parser("demo", help="the whole system end to end on a synthetic sector",
                               description="Start the local stack, synthesize a sector, upload it, let the S3 event "
                               "start the ingest state machine, request a cutout over HTTP, download it through "
                               "its presigned URL and save a quick-look PNG.")
    demo.add_argument("--workdir", default="cubecut-demo", help="where FFIs, the TPF and the PNG go")
    demo.add_argument("--frames", type=int, default=120, help="number of FFIs (default 120)")
    demo.add_argument("--shape", type=int, nargs=2, default=[256, 256], metavar=("ROWS", "COLS"),
                      help="FFI crop (default 256 256)")
    demo.add_argument("--size", type=int, default=15, help="cutout size in pixels (default 15)")
    demo.set_defaults(run=_demo)
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


if __name__ == "__main__":
    sys.exit(main())
