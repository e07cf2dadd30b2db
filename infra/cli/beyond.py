"""Commands beyond static cube cutouts: moving targets, FFI cutouts, combining, images."""
from __future__ import annotations

import argparse
import os

from .common import add_anon, add_command, add_position, pixels, positions, size, threads


def _cube_urls(items: list[str]) -> list[str]:
    """Cube URLs from cube paths/URLs and folders/prefixes holding ``*-cube.fits``."""
    from cubecut.storage import list_objects

    urls: list[str] = []
    for item in items:
        if item.endswith("-cube.fits"):
            urls.append(item)
        else:
            urls += [loc.url for loc, _ in list_objects(item) if loc.name.endswith("-cube.fits")]
    return urls


def _ephemeris(args: argparse.Namespace):
    from cubecut.moving import horizons_ephemeris, load_ephemeris

    if args.horizons:
        return horizons_ephemeris(args.horizons, args.start, args.stop, step=args.step)
    return load_ephemeris(args.ephemeris, name=args.target, time_format=args.time_format,
                          time_scale=args.time_scale)


def moving(args: argparse.Namespace) -> int:
    from cubecut.moving import moving_cutout

    for path in moving_cutout(_cube_urls(args.cubes), _ephemeris(args), pixels(args.size), target=args.target,
                              threads=args.threads, output_dir=args.out):
        print(path)
    return 0


def moving_sectors(args: argparse.Namespace) -> int:
    from cubecut.moving import path_crossings

    for crossing in path_crossings(_ephemeris(args), _cube_urls(args.cubes)):
        print(f"{crossing.sector_name}  {crossing.frames} frames  "
              f"TJD {crossing.start:.4f}-{crossing.stop:.4f}  {crossing.cube}")
    return 0


def ffi_cutout(args: argparse.Namespace) -> int:
    from cubecut.fficut import fits_cut
    from cubecut.ingest.inputs import resolve_inputs

    extension = "all" if args.extension == ["all"] else ([int(e) for e in args.extension] if args.extension else None)
    for path in fits_cut(resolve_inputs(args.ffis), positions(args), size(args.size),
                         extension=extension, single_outfile=not args.separate, output_dir=args.out,
                         cutout_prefix=args.prefix, threads=args.threads):
        print(path)
    return 0


def combine(args: argparse.Namespace) -> int:
    from cubecut.fficut import combine_cutouts, inverse_variance, write_fits

    weights = inverse_variance(args.inverse_variance) if args.inverse_variance is not None else None
    hdul = combine_cutouts(args.cutouts, method=args.method, weights=weights, error_extension=args.inverse_variance)
    print(write_fits(hdul, os.path.dirname(args.out) or ".", os.path.basename(args.out)))
    return 0


def image(args: argparse.Namespace) -> int:
    from cubecut.images import img_cut
    from cubecut.ingest.inputs import resolve_inputs

    for path in img_cut(resolve_inputs(args.ffis), positions(args), size(args.size),
                        stretch=args.stretch, minmax_percent=args.percent, minmax_value=args.values,
                        invert=args.invert, colorize=args.colour, img_format=args.format, output_dir=args.out,
                        cutout_prefix=args.prefix):
        print(path)
    return 0


def quicklook(args: argparse.Namespace) -> int:
    from cubecut.fitsio import open_fits
    from cubecut.images import quicklook_png

    out = args.out or os.path.splitext(args.tpf)[0] + ".png"
    with open_fits(args.tpf) as hdul:
        quicklook_png(hdul, out, frame=args.frame, stretch=args.stretch)
    print(out)
    return 0


def _ephemeris_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("cubes", nargs="+", help="cube paths/URLs, or folders/s3:// prefixes holding *-cube.fits")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--ephemeris", help="table of time, ra, dec (.json, .ecsv or .csv; path or s3:// URL)")
    source.add_argument("--horizons", metavar="NAME", help="look the path up in JPL Horizons (needs network)")
    p.add_argument("--start", type=float, help="with --horizons: first time (BTJD)")
    p.add_argument("--stop", type=float, help="with --horizons: last time (BTJD)")
    p.add_argument("--step", default="30m", help="with --horizons: step (default 30m)")
    p.add_argument("--time-format", default="btjd", help="ephemeris time format: btjd, jd, mjd, isot")
    p.add_argument("--time-scale", default="tdb", help="ephemeris time scale: tdb or utc")
    p.add_argument("--target", help="the object's name, written into the TPF")


def register(commands: argparse._SubParsersAction) -> None:
    p = add_command(commands, "moving", moving, help="cutouts that follow a moving target (asteroid, comet)",
                    description="For every frame, a box centred on the target's position at that time, "
                    "reading only the rows the path needs; one TPF per sector crossed.",
                    epilog="example:\n  cubecut moving s3://bucket/cubes/ --ephemeris path.ecsv --size 15")
    _ephemeris_options(p)
    p.add_argument("--size", nargs="+", required=True, metavar="N", help="NX [NY] whole pixels")
    p.add_argument("--out", default=".", help="folder (or s3:// prefix) for the TPFs")
    p.add_argument("--threads", type=threads, default="auto", help="concurrent reads: auto or a number")
    add_anon(p)

    p = add_command(commands, "moving-sectors", moving_sectors, help="which cubes a moving target's path crosses",
                    description="List the cubes (sector/camera/CCD) whose pixels the path crosses, with "
                    "the number of frames and the time span.")
    _ephemeris_options(p)
    add_anon(p)

    p = add_command(commands, "ffi-cutout", ffi_cutout, help="cutouts straight from FFIs (no cube needed)",
                    description="Read only the needed rows of each FFI (byte ranges, local or s3://) "
                    "and write FITS cutouts with a correct WCS, like astrocut's fits_cut.",
                    epilog="example:\n  cubecut ffi-cutout 'ffis/*.fits' --ra 314.05 --dec -47.12 --size 21")
    p.add_argument("ffis", nargs="+", help="FFI files, globs, folders, s3:// URLs or prefixes")
    add_position(p)
    p.add_argument("--extension", nargs="+", help="image extension number(s), or 'all' (default: the first image)")
    p.add_argument("--separate", action="store_true", help="one file per cutout instead of one file in all")
    p.add_argument("--out", default=".", help="folder (or s3:// prefix)")
    p.add_argument("--prefix", default="cutout", help="file name prefix (default cutout)")
    p.add_argument("--threads", type=threads, default="auto", help="concurrent reads: auto or a number")
    add_anon(p)

    p = add_command(commands, "combine", combine, help="combine aligned cutouts into one image (mean or median)",
                    description="Combine cutouts of the same footprint (like astrocut's CutoutsCombiner).")
    p.add_argument("cutouts", nargs="+", help="cutout FITS files")
    p.add_argument("--out", required=True, help="output FITS file")
    p.add_argument("--method", choices=["mean", "median"], default="mean")
    p.add_argument("--inverse-variance", type=int, metavar="EXT",
                   help="weight by inverse variance from the error image in extension EXT")

    p = add_command(commands, "image", image, help="PNG/JPG cutouts of FITS images with a stretch (or colour from three)",
                    description="Like astrocut's img_cut: cut, stretch (linear/sqrt/log/asinh/sinh) "
                    "and write images; --colour makes one RGB image from three inputs.")
    p.add_argument("ffis", nargs="+", help="FITS files, globs, s3:// URLs")
    add_position(p)
    p.add_argument("--stretch", choices=["asinh", "sinh", "sqrt", "log", "linear"], default="asinh")
    p.add_argument("--percent", type=float, nargs=2, metavar=("LO", "HI"), help="min/max percentiles")
    p.add_argument("--values", type=float, nargs=2, metavar=("MIN", "MAX"), help="min/max values")
    p.add_argument("--invert", action="store_true")
    p.add_argument("--colour", action="store_true", help="three inputs → one RGB image")
    p.add_argument("--format", choices=["png", "jpg"], default="png")
    p.add_argument("--out", default="images", help="folder for the images, created if need be (default: images/; "
                   "one image per input file, as astrocut's img_cut)")
    p.add_argument("--prefix", help="file name prefix: PREFIX_<file stem>_... for single images (default: the "
                   "file stem alone, as astrocut), PREFIX_... for a colour image (default cutout)")
    add_anon(p)

    p = add_command(commands, "quicklook", quicklook, help="a PNG of a TPF: one frame and its light curve",
                    description="Draw the first (or median) frame with the central aperture and the "
                    "aperture light curve; prints the PNG path.")
    p.add_argument("tpf", help="a target pixel file")
    p.add_argument("--out", help="PNG path (default: the TPF's with .png)")
    p.add_argument("--frame", choices=["first", "median"], default="first")
    p.add_argument("--stretch", choices=["asinh", "sinh", "sqrt", "log", "linear"], default="asinh")
