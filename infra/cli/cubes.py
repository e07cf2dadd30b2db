"""Commands about cubes: synth, ingest, update, cutout, sectors, janitor."""
from __future__ import annotations

import argparse

from .common import add_anon, add_command, add_position, block_progress, positions, size, threads


def synth(args: argparse.Namespace) -> int:
    from cubecut.synth import make_sector

    paths = make_sector(args.outdir, sector=args.sector, camera=args.camera, ccd=args.ccd, frames=args.frames,
                        shape=tuple(args.shape) if args.shape else None, product=args.product, seed=args.seed,
                        progress=not args.quiet)
    print(f"wrote {len(paths)} {args.product.upper()} FFIs to {args.outdir} (star catalog: stars.ecsv)")
    return 0


def ingest(args: argparse.Namespace) -> int:
    from cubecut.ingest.inputs import resolve_inputs
    from cubecut.ingest.run import ingest as run_ingest

    if args.plan_only:
        return plan_only(args, resolve_inputs(args.ffis))
    if args.json:
        raise SystemExit("cubecut ingest: error: --json goes with --plan-only")
    bar, progress = block_progress("ingest", args.quiet)
    try:
        result = run_ingest(resolve_inputs(args.ffis), args.out, product=args.product, sector=args.sector,
                            workers=args.workers, block_bytes=int(args.block_mib * 2**20), threads=args.threads,
                            on_block=progress)
    finally:
        bar.close()
    print(f"{result.cube}  ({result.nt} frames, {result.size / 1e6:.1f} MB; index {result.index})")
    return 0


def plan_only(args: argparse.Namespace, ffis: list[str]) -> int:
    import json

    from cubecut.ingest.sizing import plan_only as model

    figures = model(ffis, args.out, product=args.product, sector=args.sector, block_bytes=int(args.block_mib * 2**20))
    if args.json:
        print(json.dumps(figures, indent=1))
        return 0
    run = figures["model"]
    print(f"{figures['frames']} frames, {figures['rows']} x {figures['columns']} pixels: "
          f"{figures['cube_bytes'] / 1e9:.1f} GB in {figures['parts']} parts of up to "
          f"{figures['part_bytes_max'] / 2**20:.0f} MiB ({figures['rows_per_part']} rows)")
    print(f"{figures['get_requests']:,} GETs, {figures['get_bytes'] / 1e9:.1f} GB read; "
          f"workers need {figures['worker_memory_bytes'] / 2**20:.0f} MiB")
    print(f"model at {run['concurrency']} workers: {run['lambda_wall_seconds'] / 60:.1f} min, "
          f"${run['cost_usd']['total']:.2f} (S3 GETs ${run['cost_usd']['s3_get']:.2f}); "
          "assumptions: docs/ingest-at-scale.md")
    for problem in run["problems"]:
        print(f"warning: {problem}")
    return 0


def update(args: argparse.Namespace) -> int:
    from cubecut.errors import NothingToAddError
    from cubecut.ingest.inputs import resolve_inputs
    from cubecut.ingest.update import update_cube

    bar, progress = block_progress("update", args.quiet)
    try:
        result = update_cube(args.cube, resolve_inputs(args.ffis), product=args.product, workers=args.workers,
                             block_bytes=int(args.block_mib * 2**20), threads=args.threads, on_block=progress)
    except NothingToAddError as exc:  # a re-run of a job that appends new FFIs: not a failure
        print(f"nothing to add: {exc}")
        return 0
    finally:
        bar.close()
    print(f"{result.cube}  ({result.nt} frames: {result.added} added, {len(result.skipped)} already there)")
    return 0


def cutout(args: argparse.Namespace) -> int:
    import cubecut
    from cubecut.errors import InputError
    from cubecut.sectors import parse_sectors

    if args.mast == bool(args.cubes):
        raise InputError("give the cubes (paths, globs, folders or s3:// prefixes) or --mast, not both"
                         if args.mast else "give the cubes (paths, globs, folders or s3:// prefixes) or --mast")
    targets, extent = positions(args, many=True), size(args.size)
    wanted = parse_sectors(args.sectors) if args.sectors else None
    if _one_cube(args.cubes) and wanted is None and args.product is None:
        paths = cubecut.cutout(args.cubes[0], targets, extent, threads=args.threads, output_dir=args.out)
    else:
        paths = cubecut.cutout_sectors(targets, extent, cubes=None if args.mast else args.cubes,
                                       product=args.product, sectors=wanted, threads=args.threads,
                                       output_dir=args.out, **_mast_sources(args))
    for path in paths:
        print(path)
    return 0


def _one_cube(cubes: list[str]) -> bool:
    """Whether ``cubes`` names one object: not a glob, folder or prefix."""
    import glob
    import os

    if len(cubes) != 1:
        return False
    text = cubes[0]
    return not (glob.has_magic(text) or text.endswith("/") or ("://" not in text and os.path.isdir(text)))


def sectors(args: argparse.Namespace) -> int:
    from cubecut.sectors import find_sectors, parse_sectors

    found = find_sectors(f"{args.ra} {args.dec}", size(args.size) if args.size else None,
                         cubes=args.cubes or None, product=args.product,
                         sectors=parse_sectors(args.sectors) if args.sectors else None, **_mast_sources(args))
    if not found:
        print(f"no sector covers {args.ra} {args.dec}")
        return 0
    print(f"{'product':8} {'sector':>6} {'camera':>6} {'ccd':>3}  cube")
    for cube in found:
        print(f"{cube.product:8} {cube.sector:>6} {cube.camera:>6} {cube.ccd:>3}  {cube.url}")
    return 0


def janitor(args: argparse.Namespace) -> int:
    from cubecut.ingest.janitor import sweep

    print(sweep(args.prefix, args.older_than, dry_run=args.dry_run).summary())
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    p = add_command(commands, "synth", synth, help="write realistic synthetic TESS FFIs (SPOC or TICA)",
                    description="Write synthetic FFIs of one sector/camera/CCD with the real TESS WCS "
                    "(from tesswcs), stars, variability, noise and quality flags.",
                    epilog="example:\n  cubecut synth ffis/ --sector 1 --camera 1 --ccd 1 --frames 50 "
                    "--shape 128 128")
    p.add_argument("outdir", help="folder to write the FFIs into")
    p.add_argument("--sector", type=int, required=True)
    p.add_argument("--camera", type=int, required=True, choices=range(1, 5))
    p.add_argument("--ccd", type=int, required=True, choices=range(1, 5))
    p.add_argument("--frames", type=int, required=True, help="number of FFIs (frames)")
    p.add_argument("--shape", type=int, nargs=2, metavar=("ROWS", "COLS"),
                   help="crop to ROWS x COLS pixels from the FFI origin (default: full 2078 x 2136)")
    p.add_argument("--product", choices=["spoc", "tica"], default="spoc")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")

    p = add_command(commands, "ingest", ingest, help="build a cube from the FFIs of one sector/camera/CCD",
                    description="Plan the cube from FFI headers, build its row blocks in parallel and "
                    "assemble it (S3 multipart upload, or a local file), with its .index.json sidecar. "
                    "Nothing is visible until it is complete; failures abort the upload.",
                    epilog="examples:\n  cubecut ingest 'ffis/*ffic.fits' --out cubes/tess-s0001-1-1-cube.fits"
                    "\n  cubecut ingest s3://bucket/ffis/s0001/ --out s3://bucket/cubes/ --workers 4")
    p.add_argument("ffis", nargs="+", help="FFI files, globs, folders, s3:// URLs or prefixes, or manifests")
    p.add_argument("--out", required=True, help="cube location: a path or s3://bucket/key (ending in / = "
                   "a folder: the cube gets TESScut's name, e.g. tess-s0001-1-1-cube.fits)")
    _build_options(p)
    p.add_argument("--sector", type=int, help="sector number if not in the FFI headers or names")
    p.add_argument("--plan-only", action="store_true", help="read only the FFI headers and print the plan and "
                   "its modelled Lambda time and cost (docs/ingest-at-scale.md); write nothing")
    p.add_argument("--json", action="store_true", help="with --plan-only: print the plan as one JSON object")
    add_anon(p)

    p = add_command(commands, "update", update, help="append new FFIs to an existing cube",
                    description="Add FFIs to a cube, producing the same bytes as ingesting all of them "
                    "at once (float32 kept, TSTOP/DATE-END updated); the old cube is replaced atomically "
                    "at the end. FFIs already in the cube are skipped; when all are, it says 'nothing to add' and exits 0.",
                    epilog="example:\n  cubecut update cubes/tess-s0001-1-1-cube.fits 'new/*ffic.fits'")
    p.add_argument("cube", help="the existing cube: a path or s3://bucket/key")
    p.add_argument("ffis", nargs="+", help="new FFI files, globs, folders, s3:// URLs or prefixes, or manifests")
    _build_options(p)

    p = add_command(commands, "cutout", cutout, help="cut target pixel files out of one cube or every sector's",
                    description="Read only the cube rows the cutouts need (threaded byte ranges) and "
                    "write TESS target pixel files readable by lightkurve, one per target and cube "
                    "(targets share the rows they overlap). With several cubes, a glob, a folder, a "
                    "prefix or --mast, every cube that covers a target gives its TPF (cubes a target "
                    "is not on are passed over). Prints the written paths.",
                    epilog="examples:\n  cubecut cutout cubes/tess-s0001-1-1-cube.fits --ra 352.54 "
                    "--dec -63.81 --size 11\n  cubecut cutout s3://bucket/cubes/tess-s0001-1-1-cube.fits "
                    "--ra 352.54 --dec -63.81 --size 20 10 --out tpfs/\n"
                    "  cubecut cutout cube.fits --target '352.54 -63.81' --target '23:30:10 -63:48:36' "
                    "--size 2arcmin\n  cubecut cutout cube.fits --targets stars.txt --size 11.5\n"
                    "  cubecut cutout s3://stpubdata/tess/public/mast/tess-s0038-2-2-cube.fits "
                    "--ra 197.17 --dec -67.86 --size 11   # public, no account\n"
                    "  cubecut cutout 'cubes/*-cube.fits' --ra 352.54 --dec -63.81 --size 11 --sectors 1-3\n"
                    "  cubecut cutout s3://bucket/cubes/ --ra 352.54 --dec -63.81 --size 11   # every cube\n"
                    "  cubecut cutout --mast --ra 197.17 --dec -67.86 --size 11   # every sector at MAST")
    p.add_argument("cubes", nargs="*", metavar="CUBE",
                   help="cube locations: paths, s3://bucket/key or other URLs (https://...), globs "
                   "('cubes/*-cube.fits', 's3://bucket/cubes/*-cube.fits'), or folders and s3:// prefixes "
                   "ending in / (every .fits cube under them); each cube covering a position gives a TPF")
    p.add_argument("--mast", action="store_true",
                   help="cut MAST's public cubes (s3://stpubdata/tess/public/mast/) of every sector whose FFI "
                   "footprint holds the position (MAST's footprint table; anonymous, no account)")
    _sector_options(p)
    add_position(p, many=True)
    p.add_argument("--out", default=".", help="folder (or s3:// prefix) for the TPF (default: current folder)")
    p.add_argument("--threads", type=threads, default="auto", help="concurrent row reads: auto or a number")
    add_anon(p)

    p = add_command(commands, "sectors", sectors, help="list the sectors/cameras/CCDs whose cubes cover a position",
                    description="List product, sector, camera, CCD and cube location of every cube "
                    "covering RA DEC (and a cutout of --size around it): from MAST's public FFI "
                    "footprint table (the default; CUBECUT_FOOTPRINT_URL replaces it), or from the "
                    "cubes given with --cubes (their own WCS decides).",
                    epilog="examples:\n  cubecut sectors 352.54 -63.81\n"
                    "  cubecut sectors 352.54 -63.81 --size 11 --sectors 1-13\n"
                    "  cubecut sectors 352.54 -63.81 --cubes s3://bucket/cubes/")
    p.add_argument("ra", type=float, help="right ascension in degrees (ICRS)")
    p.add_argument("dec", type=float, help="declination in degrees (ICRS)")
    p.add_argument("--size", nargs="+", metavar="N",
                   help="cutout size NX [NY]: pixels or an angle; sectors where such a cutout touches the "
                   "image are listed (default: the position itself)")
    p.add_argument("--cubes", nargs="+", metavar="CUBE",
                   help="look in these cubes (paths, globs, folders, s3:// prefixes) instead of MAST's table")
    _sector_options(p)
    add_anon(p)

    p = add_command(commands, "janitor", janitor, help="abort stale multipart uploads and remove ingest leftovers",
                    description="Abort multipart uploads and delete ingest staging objects under a "
                    "prefix that are older than --older-than (or stale hidden leftovers in a local "
                    "folder). Younger ones may belong to a running ingest and are kept. In AWS the "
                    "bucket's lifecycle rule also aborts uploads after a day.",
                    epilog="example:\n  cubecut janitor s3://bucket/cubes/ --older-than 2h --dry-run")
    p.add_argument("prefix", help="s3://bucket/prefix (or s3://bucket), or a local folder of cubes")
    p.add_argument("--older-than", default="1d", help="age: 90s, 15m, 1h, 2d, 1w (default 1d)")
    p.add_argument("--dry-run", action="store_true", help="report what would be removed, remove nothing")


def _sector_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sectors", metavar="LIST", help="only these sectors: 1,3,5-8")
    p.add_argument("--product", choices=["SPOC", "TICA"], type=str.upper,
                   help="only cubes of this product (with --mast or the footprint table: default SPOC)")
    p.add_argument("--footprints", metavar="URL",
                   help="a footprint table in MAST's format instead of MAST's own (default: "
                   "$CUBECUT_FOOTPRINT_URL, $CUBECUT_TICA_FOOTPRINT_URL for TICA, else "
                   "s3://stpubdata/tess/public/footprints/tess_ffi_footprint_cache.json)")
    p.add_argument("--mast-cubes", metavar="PREFIX",
                   help="where the table's cubes are (default: $CUBECUT_MAST_CUBES, else "
                   "s3://stpubdata/tess/public/mast/)")


#: The environment variables that name a footprint table in MAST's format, per product.
FOOTPRINT_ENVIRONMENT = {"SPOC": "CUBECUT_FOOTPRINT_URL", "TICA": "CUBECUT_TICA_FOOTPRINT_URL"}


def _mast_sources(args: argparse.Namespace) -> dict[str, str]:
    """The footprint table and cube prefix to use instead of MAST's, if any: ``--footprints``
    / ``--mast-cubes``, else ``CUBECUT_FOOTPRINT_URL`` (``CUBECUT_TICA_FOOTPRINT_URL`` for
    TICA) / ``CUBECUT_MAST_CUBES``."""
    import os

    sources = {"footprints": args.footprints or os.environ.get(FOOTPRINT_ENVIRONMENT[args.product or "SPOC"]),
               "mast_cubes": args.mast_cubes or os.environ.get("CUBECUT_MAST_CUBES")}
    return {name: value for name, value in sources.items() if value}


def _build_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workers", type=int, default=2, help="row blocks built at once (default 2)")
    p.add_argument("--block-mib", type=float, default=4096.0,
                   help="largest row block / multipart part in MiB (>= 5, default 4096; blocks hold the "
                   "fewest rows whose FFI reads are 160 KiB each; a worker holds one block in memory)")
    p.add_argument("--threads", type=threads, default="auto", help="concurrent FFI reads per block: auto or N")
    p.add_argument("--product", choices=["spoc", "tica"], help="FFI product (default: detected)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
