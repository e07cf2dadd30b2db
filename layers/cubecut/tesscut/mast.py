"""The few MAST portal calls that ``lightkurve.search_tesscut`` makes, answered from the catalog.

``search_tesscut(target, sector=...)`` goes through ``astroquery.mast.Observations``:

1. ``POST {server}/portal/Mashup/Mashup.asmx/columnsconfig`` (``colConfigId=Mast.Caom.Cone``):
   column types, used to build filters (:func:`columns_config`);
2. ``GET http://mastresolver.stsci.edu/Santa-war/query?name=...``: the SANTA name resolver,
   whose host is fixed in astroquery (not taken from ``[mast] server``), so it only reaches
   cubecut through an HTTP proxy (:func:`resolve_names`; see docs/api.md);
3. ``POST {server}/api/v0/invoke`` with ``request={"service": "Mast.Caom.Filtered.Position",
   ...}``: CAOM observations around the position (:func:`invoke`). lightkurve keeps rows whose
   ``target_name`` contains ``TESS FFI`` and turns each into a TESScut download, which then
   calls the ``sector`` and ``astrocut`` routes.

Every ingested cube is one CAOM observation (``obs_id`` = its TESScut sector name). Names
are resolved only when they are coordinates ("132.5, -69.2" or sexagesimal): cubecut holds no
object catalogue, and an unknown name resolves to nothing (astroquery raises ResolverError).
"""
from __future__ import annotations

import math
import re
import warnings
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from ..errors import InputError
from ..cube.catalog import CubeCatalog, CubeEntry
from .jsontext import load_json
from .protocol import MAX_RADIUS_DEG

if TYPE_CHECKING:  # astropy's coordinates and WCS load on first use, not at a handler's import
    from astropy.coordinates import SkyCoord

#: Modified Julian Date of BTJD 0 (BJD 2457000).
_MJD_OF_BTJD0 = 2457000.0 - 2400000.5
#: Column configurations served, by ``colConfigId``.
CAOM_CONFIGS = ("Mast.Caom.Cone",)
#: (name, CAOM type) of every column of an observation row, in MAST's order.
CAOM_FIELDS: tuple[tuple[str, str], ...] = (
    ("intentType", "string"), ("obs_collection", "string"), ("provenance_name", "string"),
    ("instrument_name", "string"), ("project", "string"), ("filters", "string"),
    ("wavelength_region", "string"), ("target_name", "string"), ("target_classification", "string"),
    ("obs_id", "string"), ("s_ra", "float"), ("s_dec", "float"), ("dataproduct_type", "string"),
    ("proposal_pi", "string"), ("calib_level", "int"), ("t_min", "float"), ("t_max", "float"),
    ("t_exptime", "float"), ("em_min", "float"), ("em_max", "float"), ("obs_title", "string"),
    ("t_obs_release", "float"), ("proposal_id", "string"), ("proposal_type", "string"),
    ("sequence_number", "int"), ("s_region", "string"), ("jpegURL", "string"), ("dataURL", "string"),
    ("dataRights", "string"), ("mtFlag", "boolean"), ("srcDen", "float"), ("obsid", "string"),
    ("objID", "string"), ("distance", "float"),
)
_VOT_TYPES = {"string": "char", "float": "double", "int": "int", "boolean": "boolean"}
#: Most filters in one request, values in one filter, and characters in one ``freeText``.
MAX_FILTERS, MAX_FILTER_VALUES, MAX_FREE_TEXT_CHARS = 50, 200, 200
_COORD_PAIR = re.compile(r"^\s*([-+]?[0-9.]+(?:[eE][-+]?\d+)?)\s*[,\s]\s*([-+]?[0-9.]+(?:[eE][-+]?\d+)?)\s*$")


class MastRequestError(InputError):
    """A portal request cubecut cannot answer: malformed, or a service it does not serve."""


def columns_config(config_id: str) -> dict[str, dict[str, Any]]:
    """``columnsconfig``: per column, its type as the portal reports it (``vot.datatype``)."""
    if config_id not in CAOM_CONFIGS:
        raise MastRequestError(f"columns config {config_id!r} is not served here; known: {', '.join(CAOM_CONFIGS)}")
    return {name: {"text": name, "vot.datatype": _VOT_TYPES[kind]} for name, kind in CAOM_FIELDS}


def parse_coordinates(text: str) -> SkyCoord | None:
    """A position from ``"ra, dec"`` in degrees or sexagesimal ``"hh:mm:ss dd:mm:ss"``; else None."""
    import astropy.units as u
    from astropy.coordinates import SkyCoord

    match = _COORD_PAIR.match(text)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if match:
                ra, dec = float(match.group(1)), float(match.group(2))
                if not (math.isfinite(ra) and math.isfinite(dec) and 0 <= ra <= 360 and -90 <= dec <= 90):
                    return None
                return SkyCoord(ra % 360.0, dec, unit="deg")
            if ":" in text or re.search(r"\d[hd]\s*\d", text):
                coord = SkyCoord(text, unit=(u.hourangle, u.deg))
                return coord if coord.isscalar else None
    except (ValueError, TypeError, ArithmeticError, u.UnitsError):
        return None
    return None


def resolve_names(names: Sequence[str]) -> dict[str, Any]:
    """SANTA's answer for ``names``: one ``resolvedCoordinate`` per name that is a position."""
    resolved = []
    for name in names:
        coord = parse_coordinates(name)
        if coord is not None:
            resolved.append({"searchString": name.lower(), "canonicalName": name, "resolver": "cubecut",
                             "ra": float(coord.ra.deg), "decl": float(coord.dec.deg), "radius": 0.0,
                             "objectType": "coordinates", "resolverTime": 0})
    return {"resolvedCoordinate": resolved, "status": ""}


def _observation(entry: CubeEntry, distance_arcsec: float) -> dict[str, Any]:
    """The CAOM observation row of one cube (times in MJD, ``t_exptime`` = cadence in s)."""
    index = entry.index
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        corners = entry.wcs.all_pix2world(
            [[-0.5, -0.5], [index.ncols - 0.5, -0.5], [index.ncols - 0.5, index.nrows - 0.5],
             [-0.5, index.nrows - 0.5]], 0)
    tstart, tstop = np.asarray(index.tstart, dtype=float), np.asarray(index.tstop, dtype=float)
    cadence_s = float(np.nanmedian(tstop - tstart) * 86400.0) if index.nt else math.nan
    return {
        "intentType": "science", "obs_collection": "TESS", "provenance_name": index.product,
        "instrument_name": "Photometer", "project": "TESS", "filters": "TESS", "wavelength_region": "Optical",
        "target_name": "TESS FFI", "target_classification": "", "obs_id": entry.sector_name,
        "s_ra": float(entry.centre.ra.deg), "s_dec": float(entry.centre.dec.deg), "dataproduct_type": "image",
        "proposal_pi": "", "calib_level": 2 if index.product == "SPOC" else 1,
        "t_min": float(np.nanmin(tstart)) + _MJD_OF_BTJD0, "t_max": float(np.nanmax(tstop)) + _MJD_OF_BTJD0,
        "t_exptime": cadence_s, "em_min": 600.0, "em_max": 1000.0, "obs_title": "", "t_obs_release": None,
        "proposal_id": "", "proposal_type": "", "sequence_number": index.sector,
        "s_region": "POLYGON " + " ".join(f"{ra:.6f} {dec:.6f}" for ra, dec in corners),
        "jpegURL": "", "dataURL": "", "dataRights": "PUBLIC", "mtFlag": False, "srcDen": None,
        "obsid": entry.sector_name, "objID": entry.sector_name, "distance": distance_arcsec,
    }


def _matches(row: Mapping[str, Any], flt: Mapping[str, Any]) -> bool:
    """One portal filter ``{paramName, values, freeText?}`` against one row."""
    name = flt.get("paramName")
    column = next((c for c, _ in CAOM_FIELDS if isinstance(name, str) and c.lower() == name.lower()), None)
    values = flt.get("values", [])
    if column is None or not isinstance(values, list):
        raise MastRequestError(f"filter {name!r} is not a CAOM column or has no list of values")
    value = row[column]
    ranges = [v for v in values if isinstance(v, dict)]
    if ranges:
        try:
            return value is not None and any(float(r["min"]) <= float(value) <= float(r["max"]) for r in ranges)
        except (KeyError, TypeError, ValueError):
            raise MastRequestError(f"filter {name!r}: ranges need numeric 'min' and 'max'") from None
    text = "" if value is None else str(value).lower()
    if any(text == str(v).lower() for v in values):
        return True
    free = flt.get("freeText")
    return isinstance(free, str) and wildcard_match(text, free.lower())


def wildcard_match(text: str, pattern: str) -> bool:
    """Whether ``text`` matches ``pattern``, where ``%`` and ``*`` stand for any run of
    characters and everything else is literal (the portal's ``freeText``). Compiles no
    regular expression and caches nothing, so hostile patterns cost neither memory (the
    ``fnmatch``/``re`` caches keep every pattern they see) nor backtracking: at most one
    scan of ``text`` per literal piece."""
    pieces = pattern.replace("%", "*").split("*")
    if len(pieces) == 1:
        return text == pattern
    first, *middle, last = pieces
    if not text.startswith(first) or len(text) < len(first) + len(last) or not text.endswith(last):
        return False
    position, end = len(first), len(text) - len(last)
    for piece in middle:
        found = text.find(piece, position, end)
        if found < 0:
            return False
        position = found + len(piece)
    return True


def _position(text: str) -> tuple[SkyCoord, float]:
    from astropy.coordinates import SkyCoord

    parts = text.split(",")
    try:
        ra, dec, radius = (float(p) for p in parts) if len(parts) == 3 else (math.nan,) * 3
    except ValueError:
        ra = dec = radius = math.nan
    if not (0 <= ra <= 360 and -90 <= dec <= 90 and 0 <= radius <= MAX_RADIUS_DEG):
        raise MastRequestError(f"position must be 'ra, dec, radius' in degrees (radius <= {MAX_RADIUS_DEG}), "
                               f"got {text!r}")
    return SkyCoord(ra % 360.0, dec, unit="deg"), radius


def _rows(catalog: CubeCatalog, params: Mapping[str, Any], positional: bool, filtered: bool) -> list[dict]:
    if positional:
        # "ra, dec, radius": Filtered.Position sends it as ``position``, Cone as three keys
        coord, radius = _position(str(params.get("position")) if filtered
                                  else f"{params.get('ra')}, {params.get('dec')}, {params.get('radius', 0.2)}")
        rows = [_observation(e, coord.separation(e.centre).arcsec) for e in catalog.covering(coord, radius)]
    else:
        rows = [_observation(e, 0.0) for e in catalog.entries()]
    filters = params.get("filters", []) if filtered else []
    if not isinstance(filters, list) or not all(isinstance(f, dict) for f in filters):
        raise MastRequestError("filters must be a list of {paramName, values} objects")
    if len(filters) > MAX_FILTERS:
        raise MastRequestError(f"at most {MAX_FILTERS} filters")
    for flt in filters:
        if not isinstance(flt.get("values", []), list) or len(flt.get("values", [])) > MAX_FILTER_VALUES:
            raise MastRequestError(f"filter {flt.get('paramName')!r}: at most {MAX_FILTER_VALUES} values in a list")
        if isinstance(flt.get("freeText"), str) and len(flt["freeText"]) > MAX_FREE_TEXT_CHARS:
            raise MastRequestError(f"freeText may be at most {MAX_FREE_TEXT_CHARS} characters")
    return [row for row in rows if all(_matches(row, f) for f in filters)]


#: service -> (positional, filtered)
_SERVICES: dict[str, tuple[bool, bool]] = {
    "Mast.Caom.Filtered.Position": (True, True),
    "Mast.Caom.Filtered": (False, True),
    "Mast.Caom.Cone": (True, False),
}


def _table(rows: list[dict]) -> dict[str, Any]:
    fields = [{"name": name, "type": kind} for name, kind in CAOM_FIELDS]
    n = len(rows)
    return {"status": "COMPLETE", "msg": "", "fields": fields, "data": rows,
            "paging": {"page": 1, "pageSize": max(n, 1), "pagesFiltered": 1, "rows": n,
                       "rowsFiltered": n, "rowsTotal": n}}


def invoke(catalog: CubeCatalog, request_text: str) -> dict[str, Any]:
    """``/api/v0/invoke``: run the Mashup request ``request_text`` (JSON) on the catalog."""
    request = load_json(request_text, "'request'", MastRequestError)
    if not isinstance(request, dict) or not isinstance(request.get("params", {}), dict):
        raise MastRequestError("'request' must be a JSON object with a 'service' and a 'params' object")
    service, params = request.get("service"), request.get("params", {})
    if service == "Mast.Name.Lookup":
        return resolve_names([str(params.get("input", ""))])
    if service not in _SERVICES:
        known = ", ".join(sorted([*_SERVICES, "Mast.Name.Lookup"]))
        raise MastRequestError(f"service {service!r} is not served here; known: {known}")
    return _table(_rows(catalog, params, *_SERVICES[service]))
