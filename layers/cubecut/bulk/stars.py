"""A bulk job's stars: its target catalog (CSV or ECSV, local or ``s3://``) read row by row.

Columns (names case-insensitive, any order, others ignored): ``ra`` and ``dec`` in ICRS
degrees (required), ``size`` (optional: ``N`` or ``NXxNY`` pixels, columns x rows; empty
means the job's default size), ``id`` (optional; empty means ``row<N>``), ``tic`` or
``ticid`` (optional TIC number, ``261136679`` or ``TIC 261136679``; it is also the id when
there is no ``id``) and ``tmag`` (optional TESS magnitude). A target's name, TIC number and
magnitude go into its TPF as ``OBJECT``, ``TICID`` and ``TESSMAG`` (an ``id`` that is a TIC
number is its ``TICID`` too; :mod:`cubecut.cutout.identity`). A file is
ECSV when it starts with ``# %ECSV`` (its YAML header gives the delimiter, default a
space); anything else is CSV with a header line. Rows are numbered from 1 in data order.

A row that cannot be used (wrong number of fields, a position that is not a finite
number or off the sphere, a bad size) becomes a :class:`RowProblem` with the reason; it
never fails the job. Only a catalog that cannot be read at all raises
:class:`~cubecut.errors.CatalogError`.
"""
from __future__ import annotations

import csv
import io
import math
import os
from dataclasses import dataclass

import yaml

from ..cutout.geometry import MAX_CUTOUT_PIXELS
from ..cutout.identity import Identity, ticid_of
from ..cutout.size import pixel_extents
from ..errors import CatalogError, CutoutSizeError, ObjectNotFoundError
from ..storage import Location, get_bytes

#: Largest catalog accepted (bytes); ~100 bytes a row, so about five million rows.
MAX_CATALOG_BYTES = 512 * 1024 * 1024


@dataclass(frozen=True)
class Target:
    """One usable catalog row: ``row`` is 1-based, ``size`` is ``(nx, ny)`` pixels."""

    row: int
    id: str
    ra: float
    dec: float
    size: tuple[int, int]
    identity: Identity = Identity()


@dataclass(frozen=True)
class RowProblem:
    """A catalog row that was not used, and why."""

    row: int
    id: str
    reason: str


@dataclass(frozen=True)
class TargetCatalog:
    """Every data row of a catalog: usable ``targets`` and ``problems``, by row number."""

    source: str
    targets: list[Target]
    problems: list[RowProblem]

    @property
    def nrows(self) -> int:
        return len(self.targets) + len(self.problems)


def read_targets(catalog: str | os.PathLike[str], default_size: tuple[int, int]) -> TargetCatalog:
    """Every row of the catalog at ``catalog`` (path or ``s3://`` URL).

    Args:
        default_size: ``(nx, ny)`` pixels for rows without a size.

    Raises:
        CatalogError: the catalog is missing, too large, not text, or has no ra/dec columns.
    """
    location = Location.parse(catalog)
    try:
        data, _ = get_bytes(location)
    except ObjectNotFoundError:
        raise CatalogError(f"target catalog {location.url}: not found") from None
    if len(data) > MAX_CATALOG_BYTES:
        raise CatalogError(f"target catalog {location.url} is {len(data)} bytes, above the "
                           f"{MAX_CATALOG_BYTES} byte limit")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CatalogError(f"target catalog {location.url} is not UTF-8 text: {exc}") from None
    return parse_targets(text, default_size, source=location.url)


def parse_targets(text: str, default_size: tuple[int, int], *, source: str = "the catalog") -> TargetCatalog:
    """:func:`read_targets` on catalog text already in memory (a leading UTF-8 BOM is ignored)."""
    lines = text.removeprefix("\ufeff").splitlines()
    delimiter = ","
    if lines and lines[0].startswith("# %ECSV"):
        delimiter = _ecsv_delimiter([line for line in lines if line.startswith("#")], source)
    body = [line for line in lines if not line.startswith("#") and line.strip()]
    if not body:
        raise CatalogError(f"target catalog {source} has no header line")
    reader = csv.reader(io.StringIO("\n".join(body)), delimiter=delimiter,
                        skipinitialspace=delimiter == " ")
    header = [name.strip().lower() for name in next(reader)]
    missing = [name for name in ("ra", "dec") if name not in header]
    if missing:
        raise CatalogError(f"target catalog {source} has no {' or '.join(missing)} column "
                           f"(columns: {', '.join(header) or 'none'})")
    columns: dict[str, int] = {name: header.index(name) for name in ("ra", "dec", "size", "id", "tic", "ticid", "tmag")
                               if name in header}
    rows = [_parse_row(number, fields, len(header), columns, default_size)
            for number, fields in enumerate(reader, start=1)]
    return TargetCatalog(source, [row for row in rows if isinstance(row, Target)],
                         [row for row in rows if isinstance(row, RowProblem)])


def _ecsv_delimiter(comment_lines: list[str], source: str) -> str:
    try:
        meta = yaml.safe_load("\n".join(line[2:] for line in comment_lines[1:])) or {}
    except (yaml.YAMLError, RecursionError) as exc:  # RecursionError: YAML nested thousands deep
        raise CatalogError(f"target catalog {source}: unreadable ECSV header: {type(exc).__name__}") from None
    delimiter = meta.get("delimiter", " ") if isinstance(meta, dict) else " "
    if delimiter not in (" ", ","):
        raise CatalogError(f"target catalog {source}: ECSV delimiter {delimiter!r} is neither ' ' nor ','")
    return delimiter


def _parse_row(number: int, fields: list[str], width: int, columns: dict[str, int],
               default_size: tuple[int, int]) -> Target | RowProblem:
    fields = [field.strip() for field in fields]

    def field(*keys: str) -> str:
        return next((fields[columns[k]] for k in keys if k in columns and columns[k] < len(fields)), "")

    given, tic = field("id"), field("ticid", "tic")
    name = given or (f"TIC {tic}" if tic.isdigit() else tic) or f"row{number}"
    if len(fields) != width:
        return RowProblem(number, name, f"has {len(fields)} fields, the header has {width}")
    values = {}
    for key in ("ra", "dec"):
        try:
            values[key] = float(fields[columns[key]])
        except ValueError:
            return RowProblem(number, name, f"{key} {fields[columns[key]]!r} is not a number")
        if not math.isfinite(values[key]):
            return RowProblem(number, name, f"{key} {fields[columns[key]]!r} is not finite")
    if not 0.0 <= values["ra"] <= 360.0:  # as a single cutout's position: no silent wrapping
        return RowProblem(number, name, f"ra {values['ra']} is outside [0, 360] degrees")
    if not -90.0 <= values["dec"] <= 90.0:
        return RowProblem(number, name, f"dec {values['dec']} is outside [-90, 90] degrees")
    size = default_size
    if "size" in columns and fields[columns["size"]]:
        try:
            size = pixel_extents(fields[columns["size"]], MAX_CUTOUT_PIXELS)
        except CutoutSizeError as exc:
            return RowProblem(number, name, f"size {fields[columns['size']]!r}: {exc}")
    identity = _identity(given or name if (given or tic) else "", tic, field("tmag"))
    if isinstance(identity, str):
        return RowProblem(number, name, identity)
    return Target(number, name, values["ra"], values["dec"], size, identity)


def _identity(name: str, tic: str, tmag: str) -> Identity | str:
    """The target's identity from its name (empty: none), ``tic`` and ``tmag`` fields, or
    the reason a field is unusable."""
    ticid = ticid_of(tic or name)
    if tic and ticid is None:
        return f"tic {tic!r} is not a TIC number"
    magnitude = None
    if tmag:
        try:
            magnitude = float(tmag)
        except ValueError:
            return f"tmag {tmag!r} is not a number"
        if not math.isfinite(magnitude):
            return f"tmag {tmag!r} is not finite"
    return Identity(name or None, ticid, magnitude)

