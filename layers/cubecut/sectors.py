"""Every sector of a position: the cubes that cover it, and one cutout per cube.

The cubes come from paths, globs (``cubes/*-cube.fits``, ``s3://bucket/cubes/*-cube.fits``)
and prefixes (a local folder, ``s3://bucket/cubes/``: every ``.fits`` object under it), or,
with ``cubes=None``, from MAST's public footprint table (:mod:`cubecut.footprints`): the
sector/camera/CCDs whose FFI footprints hold the position, cut from MAST's cubes, unsigned
by default. Whether a position is on a cube is decided by the cube's own WCS, exactly as
:func:`cubecut.cutout` decides it; the footprint table only chooses which cubes to open.
"""
from __future__ import annotations

import glob
import os
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable, Sequence

from .cube.index import sector_name
from .errors import CubecutWarning, InputError, NoCubeError, ObjectNotFoundError
from .footprints import MAST_CUBES, TESS_ARCSEC_PER_PIXEL, footprint_url, load_footprints, mast_cube_url
from .storage import Location, glob_objects, is_folder, list_objects

if TYPE_CHECKING:
    from astropy.coordinates import SkyCoord
    from astropy.io import fits

    from .cutout.geometry import CoordInput
    from .cutout.size import SizeInput
    from .cutout.reader import Threads

_PRODUCTS = ("SPOC", "TICA")


@dataclass(frozen=True, order=True)
class SectorCube:
    """One cube of a sector: its product, sector, camera, CCD (1-based) and location
    (ordered by them in that order)."""

    product: str
    sector: int
    camera: int
    ccd: int
    url: str

    @property
    def name(self) -> str:
        """TESScut's name of the cube, e.g. ``tess-s0001-4-2`` (``tica-...`` for TICA)."""
        return sector_name(self.sector, self.camera, self.ccd, self.product)


class NotACubeWarning(CubecutWarning):
    """An object under a prefix or glob is not a readable cube; it is skipped."""


def parse_sectors(text: str) -> set[int]:
    """Sectors from ``"1,3,5-8"`` (1-based sector numbers; ranges include both ends)."""
    found: set[int] = set()
    for part in (p.strip() for p in text.split(",")):
        low, dash, high = part.partition("-")
        try:
            first, last = int(low), int(high) if dash else int(low)
        except ValueError:
            raise InputError(f"sectors {text!r}: give numbers and ranges such as 1,3,5-8") from None
        if first < 1 or last < first:
            raise InputError(f"sectors {text!r}: {part!r} is not a sector number or an increasing range")
        found.update(range(first, last + 1))
    return found


def resolve_cubes(cubes: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], *,
                  anon: bool | None = None) -> list[tuple[Location, bool]]:
    """The cube locations named by paths, globs and prefixes, each with whether it was named
    explicitly (a path or URL of one object) rather than found under a prefix or by a glob.

    A prefix is an ``s3://`` URL ending in ``/`` or a local folder; every ``.fits`` object
    under it whose name does not start with ``.`` is taken. Globs (``*``, ``?``, ``[``)
    match local paths, or the keys under an ``s3://`` prefix.

    Raises:
        ObjectNotFoundError: a glob or prefix holds no ``.fits`` object, or a path does not exist.
    """
    items = [cubes] if isinstance(cubes, (str, os.PathLike)) else list(cubes)
    found: list[tuple[Location, bool]] = []
    for item in items:
        text = os.fspath(item)
        location = Location.parse(text, anon=anon)
        globbed = glob_objects(location) if glob.has_magic(text) else None
        if globbed is None and not is_folder(location):
            found.append((location, True))
            continue
        listed = globbed if globbed is not None else [m for m, _ in list_objects(location)]
        matches = [(m, False) for m in listed if m.name.endswith(".fits") and not m.name.startswith(".")]
        if not matches:
            raise ObjectNotFoundError(f"{text}: no cube (.fits file) there")
        found += matches
    return list(dict.fromkeys(found))


def find_sectors(coordinates: CoordInput, size: SizeInput | None = None, *,
                 cubes: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None = None,
                 product: str | None = None, sectors: Iterable[int] | None = None,
                 anon: bool | None = None, footprints: str | None = None,
                 mast_cubes: str = MAST_CUBES) -> list[SectorCube]:
    """The cubes holding (a cutout of ``size`` around) any of ``coordinates``.

    Args:
        coordinates: as :func:`cubecut.cutout` takes them.
        size: a cutout size (as :func:`cubecut.cutout`); None = the position itself.
        cubes: paths, globs or prefixes (see :func:`resolve_cubes`): each cube's index is
            read and its WCS decides; None = MAST's footprint table (no cube is read).
        product: ``SPOC`` or ``TICA`` (None: any for ``cubes``, SPOC for the table).
        sectors: keep only these sectors.
        anon: S3 requests unsigned (True), signed (False), or unsigned only without
            credentials (None); None means True for MAST's table.
        footprints: the footprint table's URL (default: MAST's of the product), in MAST's
            format (:mod:`cubecut.footprints`).
        mast_cubes: the prefix of the cubes the table's sectors name (default: MAST's).

    Returns:
        The cubes, sorted by product, sector, camera, CCD.
    """
    from .cutout.geometry import parse_coordinates

    coords = parse_coordinates(coordinates)
    wanted = set(sectors) if sectors is not None else None
    if cubes is None:
        return _from_footprints(coords, size, product or "SPOC", wanted, True if anon is None else anon,
                                footprints, mast_cubes)
    found = [cube for cube, _ in _covering_cubes(coords, size or 1, resolve_cubes(cubes, anon=anon), product,
                                                 wanted)]
    return sorted(found)


def cutout_sectors(coordinates: CoordInput, size: SizeInput, *,
                   cubes: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None = None,
                   product: str | None = None, sectors: Iterable[int] | None = None,
                   threads: Threads = "auto", output_dir: str | os.PathLike[str] | None = None,
                   anon: bool | None = None, footprints: str | None = None,
                   mast_cubes: str = MAST_CUBES) -> list[str] | list[fits.HDUList]:
    """:func:`cubecut.cutout` of every cube that covers the positions: one TPF per cube and
    position on it, the same files a one-cube :func:`cubecut.cutout` of that cube writes.

    Args are those of :func:`find_sectors` (``cubes=None``: MAST's cubes by footprint,
    anonymously unless ``anon=False``) and of :func:`cubecut.cutout`.

    Returns:
        Paths (``output_dir`` given) or HDULists, by cube (product, sector, camera, CCD)
        then by position in the order given.

    Raises:
        NoCubeError: no cube covers any of the positions; the errors of :func:`cubecut.cutout`.
    """
    from .cutout.engine import cutout
    from .cutout.geometry import parse_coordinates

    coords = parse_coordinates(coordinates)
    wanted = set(sectors) if sectors is not None else None
    if cubes is None:
        anon = True if anon is None else anon
        candidates = _from_footprints(coords, size, product or "SPOC", wanted, anon, footprints, mast_cubes)
        located = [(Location.parse(c.url, anon=anon), False) for c in candidates]
    else:
        located = resolve_cubes(cubes, anon=anon)
    chosen = _covering_cubes(coords, size, located, product, wanted)
    if not chosen:
        where = ", ".join(f"({c.ra.deg:.6f}, {c.dec.deg:.6f})" for c in coords[:3]) + (" ..." if len(coords) > 3 else "")
        among = "MAST's footprint table" if cubes is None else "the cubes given"
        in_sectors = f" in sectors {', '.join(str(s) for s in sorted(wanted))}" if wanted is not None else ""
        raise NoCubeError(f"no cube covers {where}{in_sectors} (looked in {among})")
    results: list = []
    for cube, on in sorted(chosen, key=lambda pair: pair[0]):
        results += cutout(Location.parse(cube.url, anon=anon), [coords[i] for i in on], size, threads=threads,
                          output_dir=output_dir)
    return results


def _radius_deg(size: SizeInput | None) -> float:
    """Half the diagonal of a cutout of ``size`` in degrees (pixels at TESS's scale)."""
    if size is None:
        return 0.0
    import astropy.units as u

    from .cutout.size import parse_size

    scale = u.pixel_scale(TESS_ARCSEC_PER_PIXEL * u.arcsec / u.pixel)
    nx, ny = ((e if isinstance(e, u.Quantity) else e * u.pixel).to_value(u.deg, scale) for e in parse_size(size))
    return 0.5 * (nx ** 2 + ny ** 2) ** 0.5


def _from_footprints(coords: list[SkyCoord], size: SizeInput | None, product: str, wanted: set[int] | None,
                     anon: bool | None, table: str | None, mast_cubes: str) -> list[SectorCube]:
    product = product.upper()
    if product not in _PRODUCTS:
        raise InputError(f"product {product!r}: SPOC or TICA")
    radius = _radius_deg(size)
    found = {}
    for footprint in load_footprints(table or footprint_url(product), anon=anon):
        if wanted is not None and footprint.sector not in wanted:
            continue
        if any(footprint.touches(float(c.ra.deg), float(c.dec.deg), radius) for c in coords):
            key = (footprint.sector, footprint.camera, footprint.ccd)
            found[key] = SectorCube(product, *key, mast_cube_url(*key, product, mast_cubes))
    return sorted(found.values())


def _covering_cubes(coords: list[SkyCoord], size: SizeInput, located: list[tuple[Location, bool]],
                    product: str | None, wanted: set[int] | None) -> list[tuple[SectorCube, list[int]]]:
    """Each cube of ``located`` (``(location, named)`` pairs) that holds a cutout of ``size``
    around one of ``coords``, with the indices (0-based) of those coordinates; cubes not
    ``named`` (found by a glob, prefix or footprint table) that cannot be read as cubes are
    skipped with a :class:`NotACubeWarning`, named ones raise."""
    from .cutout.geometry import cutout_box, ffi_wcs
    from .cube.index_cache import load_index
    from .errors import NotACubeError, OutsideCubeError

    chosen = []
    for location, named in located:
        try:
            index = load_index(location)
        except (NotACubeError, ObjectNotFoundError) as exc:
            if named:
                raise
            warnings.warn(f"skipping {exc}", NotACubeWarning, stacklevel=3)
            continue
        if (product is not None and index.product != product.upper()) or (wanted is not None
                                                                          and index.sector not in wanted):
            continue
        wcs, on = ffi_wcs(index), []
        for i, coord in enumerate(coords):
            try:
                cutout_box(wcs, coord, size, image_shape=(index.nrows, index.ncols), cube_name=location.name)
            except OutsideCubeError:
                continue
            on.append(i)
        if on:
            chosen.append((SectorCube(index.product, index.sector, index.camera, index.ccd, location.url), on))
    return chosen

