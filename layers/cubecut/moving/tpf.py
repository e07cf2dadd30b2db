"""The target pixel file of a moving cutout (astrocut's ``center_on_path`` output).

It is the static cutout's TPF (:func:`cubecut.cutout.build_tpf`: its primary keywords,
the 12 ``PIXELS`` columns, lightkurve-readable) with a different box in every frame:

* ``PIXELS`` gets astrocut's four path columns — ``TGT_X``/``TGT_Y``, the target's
  0-based pixel position in the cutout, and ``TGT_RA``/``TGT_DEC`` (deg) — and four of
  ours: ``CUTOUT_X0``/``CUTOUT_Y0``, the 1-based FFI column/row of the cutout's first pixel
  in that frame (what ``1CRV5P``/``2CRV5P`` say for a static cutout), and
  ``CAMERA``/``CCD`` of the cube the frame came from.
* No celestial WCS: a moving cutout has none. The static per-column WCS keywords
  (``1CTYP5``, ``1CRV5P``, ...), ``WCS_FFI`` and APERTURE's WCS are left out. APERTURE is
  all 1 (every pixel collected); astrocut writes an FFI-sized (2078 x 2136 int32) one with
  its axes swapped instead.
* Primary: ``OBJECT`` is the target's name, ``RA_OBJ``/``DEC_OBJ`` its position in the
  first frame, ``TSTART``/``TSTOP`` (and ``DATE-OBS``/``DATE-END``, ``TELAPSE``) those of
  the first and last frame included (astrocut writes the frames' mid-times).
* Frames from several cubes of one sector (a path crossing CCDs or cameras) are merged in
  time order; the cube-level primary keywords (CAMERA, CCD, ...) are the first cube's.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any, Callable

import numpy as np
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.time import Time

from ..cutout.geometry import Box
from ..cutout.tpf import build_tpf
from .ephemeris import TJD_ZERO
from .path import PathOnCube

#: The static TPF's per-column WCS keywords (n = column number), which a moving cutout drops.
_COLUMN_WCS = re.compile(r"^(WCAX\d+P?|[12](CTYP|CRPX|CRVL|CUNI|CDLT)\d+|[12][12]PC\d+|WCSN\d+P"
                         r"|[12](CTY|CUN|CRV|CDL|CRP)\d+P)$")

#: Column description keywords (TTYPEn, TFORMn, ...).
_COLUMN_KEY = re.compile(r"^T(TYPE|FORM|UNIT|DISP|DIM|NULL)\d+$")
#: The path columns: name, format, unit, description.
_PATH_COLUMNS = (
    ("TGT_X", "D", "pixel", "target column in the cutout (0-based)"),
    ("TGT_Y", "D", "pixel", "target row in the cutout (0-based)"),
    ("TGT_RA", "D", "deg", "target right ascension"),
    ("TGT_DEC", "D", "deg", "target declination"),
    ("CUTOUT_X0", "J", "pixel", "FFI column of first cutout pixel (1-based)"),
    ("CUTOUT_Y0", "J", "pixel", "FFI row of first cutout pixel (1-based)"),
    ("CAMERA", "J", None, "camera of the frame"),
    ("CCD", "J", None, "CCD of the frame"),
)


@dataclass(frozen=True, eq=False)
class MovingFrames:
    """The frames one cube contributes: the path on it, the box corners (0-based FFI
    pixels, per frame) and the pixels, ``(nframes, ny, nx)`` float32."""

    path: PathOnCube
    x0: np.ndarray
    y0: np.ndarray
    flux: np.ndarray
    flux_err: np.ndarray


def moving_tpf_filename(target: str | None, sector: int, tstart: float, tstop: float, nx: int, ny: int) -> str:
    """``{target}_tess-s{sector:04d}_{tstart:.4f}-{tstop:.4f}_{nx}-x-{ny}_astrocut.fits``.

    ``target`` defaults to ``path``; slashes and spaces become ``-``/``_`` (as astrocut);
    times are BTJD.
    """
    name = (target or "path").replace("/", "-").replace(" ", "_")
    return f"{name}_tess-s{sector:04d}_{tstart:.4f}-{tstop:.4f}_{nx}-x-{ny}_astrocut.fits"


def build_moving_tpf(pieces: list[MovingFrames], nx: int, ny: int, *, target: str | None = None) -> fits.HDUList:
    """One TPF from the moving frames of one or more cubes of the same sector."""
    first = pieces[0].path.index
    columns = {k: np.concatenate([np.asarray(getattr(p.path.index, k))[p.path.frames] for p in pieces])
               for k in ("tstart", "tstop", "barycorr", "quality", "ffi_files")}
    order = np.argsort(0.5 * (columns["tstart"] + columns["tstop"]), kind="stable")
    columns = {k: v[order] for k, v in columns.items()}

    def stacked(values: Callable[[MovingFrames], Any]) -> np.ndarray:
        """Per-frame ``values`` of every piece, concatenated in time order."""
        return np.concatenate([np.asarray(values(p)) for p in pieces])[order]

    tstart, tstop, barycorr = columns["tstart"], columns["tstop"], columns["barycorr"]
    primary = fits.Header.fromstring(first.primary_header)
    primary["TSTART"], primary["TSTOP"] = float(tstart[0]), float(tstop[-1])
    for key, when in (("DATE-OBS", tstart[0] - barycorr[0]), ("DATE-END", tstop[-1] - barycorr[-1])):
        if key in primary:
            primary[key] = _utc(when)
    index = replace(first, nt=len(order), wcs_row=0, primary_header=primary.tostring(),
                    **{k: v.tolist() for k, v in columns.items()})
    ra, dec = stacked(lambda p: p.path.ra), stacked(lambda p: p.path.dec)
    x0, y0 = stacked(lambda p: p.x0), stacked(lambda p: p.y0)
    static = build_tpf(index, Box(int(x0[0]), int(y0[0]), nx, ny), stacked(lambda p: p.flux),
                       stacked(lambda p: p.flux_err), SkyCoord(ra[0], dec[0], unit="deg"),
                       cube_name=pieces[0].path.cube)

    values = {
        "TGT_X": stacked(lambda p: p.path.x) - x0, "TGT_Y": stacked(lambda p: p.path.y) - y0,
        "TGT_RA": ra, "TGT_DEC": dec, "CUTOUT_X0": x0 + 1, "CUTOUT_Y0": y0 + 1,
        "CAMERA": stacked(lambda p: np.full(p.path.nframes, p.path.index.camera)),
        "CCD": stacked(lambda p: np.full(p.path.nframes, p.path.index.ccd)),
    }
    aperture = fits.ImageHDU(data=np.ones((ny, nx), dtype=np.int32))
    aperture.header["EXTNAME"] = "APERTURE"
    aperture.header["INHERIT"] = (True, "inherit the primary header")
    hdul = fits.HDUList([static[0], _pixels(static[1], values), aperture])
    for key, value, comment in (("OBJECT", target or "", "moving target name or designation"),
                                ("RA_OBJ", float(ra[0]), "[deg] right ascension in the first frame"),
                                ("DEC_OBJ", float(dec[0]), "[deg] declination in the first frame")):
        for hdu in hdul:
            if hdu is hdul[0] or key in hdu.header:
                hdu.header[key] = (value, comment)
    return hdul


def _utc(tdb_tjd: float) -> str:
    """A TJD (TDB) as SPOC writes DATE-OBS: UTC ISO with milliseconds and a ``Z``."""
    when = Time(TJD_ZERO + float(tdb_tjd), format="jd", scale="tdb").utc
    when.precision = 3
    return when.isot + "Z"


def _pixels(static: fits.BinTableHDU, values: dict[str, np.ndarray]) -> fits.BinTableHDU:
    """The static PIXELS table plus the path columns, without the per-column WCS."""
    header = static.header.copy()
    for key in [k for k in header if _COLUMN_WCS.match(k)] + ["WCS_FFI"]:
        header.remove(key, ignore_missing=True)
    extra = [fits.Column(name=name, format=fmt, unit=unit, array=values[name])
             for name, fmt, unit, _ in _PATH_COLUMNS]
    hdu = fits.BinTableHDU.from_columns(static.columns + fits.ColDefs(extra), header=header)
    for key in [k for k in hdu.header if _COLUMN_KEY.match(k) and k in static.header]:
        hdu.header.comments[key] = static.header.comments[key]  # from_columns drops them
    for number, (_, _, unit, description) in enumerate(_PATH_COLUMNS, start=len(static.columns) + 1):
        hdu.header.comments[f"TTYPE{number}"] = description
        hdu.header.comments[f"TFORM{number}"] = "column format"
        if unit:
            hdu.header.comments[f"TUNIT{number}"] = "unit"
    return hdu

