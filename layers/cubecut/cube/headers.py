"""The cube's headers and FFI table, in astrocut's CubeFactory format (the rules below).

Byte compatibility matters: astrocut, TESScut and our own cutout reader must read our
cubes. The rules, measured against astrocut 1.3.0 (SPOC) and 1.2.0 (TICA):

* Primary header: the earliest FFI's primary header without CHECKSUM, plus ORIGIN,
  DATE (today), the camera/CCD keywords taken from the earliest FFI's image header,
  SECTOR, then the stop-time keywords of the latest FFI, and EXTNAME='PRIMARY'.
* Image header: a plain float32 IMAGE extension with NAXIS=4.
* Table: one column per card of a template FFI image header (the first in time order
  with WCSAXES=2, or NAXIS=2 for TICA), typed from the template value (string → A,
  int/bool → J, other → D), plus FFI_FILE; each column's header comment (empty for FFI_FILE) is repeated as a
  keyword of the table header.

Deliberate differences (fixes): string columns, FFI_FILE included, are as wide as the
longest value over all FFIs (astrocut sizes them from one file and truncates the rest);
commentary cards (COMMENT/HISTORY) of SPOC FFIs do not become columns (they crash
astrocut 1.3); for TICA they do, holding all the cards' text (astrocut 1.2 kept only as
much as the template's first card);
a float keyword missing from an FFI is NaN (astrocut fails).
"""
from __future__ import annotations

import datetime as dt

import numpy as np
from astropy.io import fits

from ..ffi import CAMERA_KEYS, SPOC, TICA, TIME_KEYS, FFIInfo
from ..fitsio import hdu_bytes

FILE_COLUMN = "FFI_FILE"
#: Table-header keywords that belong to the table structure: not FFI keyword comments,
#: and never overwritten.
STRUCTURAL = {"XTENSION", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "PCOUNT", "GCOUNT", "TFIELDS"}
_COMMENTARY = {"COMMENT", "HISTORY", ""}
_STOP_KEYS = {SPOC: ("DATE-END", "TSTOP"), "TICA": ("ENDTJD",)}
_TEMPLATE_RULE = {SPOC: ("WCSAXES", 2), "TICA": ("NAXIS", 2)}


def primary_header(ffis: list[FFIInfo], sector: int | None, today: dt.date | None = None) -> fits.Header:
    """The cube's primary header; ``ffis`` must be in time order."""
    first, last = ffis[0], ffis[-1]
    header = first.primary_header.copy()
    header.remove("CHECKSUM", ignore_missing=True)
    header["ORIGIN"] = "STScI/MAST"
    header["DATE"] = str(today or dt.date.today())
    for key in CAMERA_KEYS[first.product]:
        header[key] = (first.image_header[key], first.image_header.comments[key])
    header["SECTOR"] = (sector, "Observing sector")
    for key in _STOP_KEYS[first.product]:
        header[key] = (last.image_header[key], last.image_header.comments[key])
    header["EXTNAME"] = "PRIMARY"
    return header


def primary_bytes(header: fits.Header) -> bytes:
    """The primary HDU (header only, no data) as it stands in a finished astrocut cube.

    astropy adds ``EXTEND = T`` (no comment) after NAXIS when extensions are appended to
    a file whose primary header lacks it, and refreshes DATASUM; astrocut's cubes carry
    both, so do ours.
    """
    hdu = fits.PrimaryHDU(header=header)
    if "EXTEND" not in hdu.header:
        hdu.header.set("EXTEND", True, after="NAXIS")
    if "DATASUM" in hdu.header:
        # astropy recomputes a DATASUM it finds when astrocut appends its table; with no
        # data the sum is '0' and the comment carries the time of writing.
        now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
        hdu.header["DATASUM"] = ("0", f"data unit checksum updated {now}")
    return hdu_bytes(hdu, primary=True)


def image_header_bytes(nrows: int, ncols: int, nt: int, nplanes: int) -> bytes:
    """The image HDU header for a float32 cube of numpy shape (nrows, ncols, nt, nplanes)."""
    header = fits.ImageHDU(np.zeros((1, 1, 1, 1), dtype=np.float32)).header
    header["NAXIS4"], header["NAXIS3"], header["NAXIS2"], header["NAXIS1"] = nrows, ncols, nt, nplanes
    return header.tostring().encode("ascii")


def table_hdu(ffis: list[FFIInfo]) -> fits.BinTableHDU:
    """The table of per-FFI header values, one row per FFI in the given (time) order."""
    rule, wanted = _TEMPLATE_RULE[ffis[0].product]  # the template FFI's image header defines the columns
    template = next((f for f in ffis if f.image_header.get(rule) == wanted), ffis[0]).image_header
    columns: list[fits.Column] = []
    comments: dict[str, str] = {}
    tica = ffis[0].product == TICA
    for key, value, comment in template.cards:
        if key in comments or (key in _COMMENTARY and not (tica and key)):
            continue
        comments[key] = comment
        if isinstance(value, str):  # commentary keys: all their cards' text, joined by newlines
            cells = [str(f.image_header.get(key, "")) for f in ffis]
            width = max(1, max(len(c) for c in cells))
            columns.append(fits.Column(name=key, format=f"{width}A", array=np.array(cells, dtype=f"S{width}")))
        elif isinstance(value, (bool, int, np.integer)):
            cells = np.array([f.image_header.get(key, 0) for f in ffis], dtype=np.int32)
            columns.append(fits.Column(name=key, format="J", array=cells))
        else:
            cells = np.array([_as_float(f.image_header.get(key)) for f in ffis], dtype=np.float64)
            columns.append(fits.Column(name=key, format="D", array=cells))
    names = [f.name for f in ffis]
    width = max(len(n) for n in names)
    columns.append(fits.Column(name=FILE_COLUMN, format=f"{width}A", array=np.array(names, dtype=f"S{width}")))
    hdu = fits.BinTableHDU.from_columns(fits.ColDefs(columns))
    comments[FILE_COLUMN] = ""
    for key, comment in comments.items():
        if key not in STRUCTURAL:
            hdu.header[key] = comment
    return hdu


def _as_float(value: object) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return float("nan")


def table_bytes(hdu: fits.BinTableHDU) -> bytes:
    """The table HDU (header and padded data) exactly as astropy writes it."""
    return hdu_bytes(hdu, primary=False)


def time_order(ffis: list[FFIInfo]) -> list[FFIInfo]:
    """FFIs sorted by start time (TSTART for SPOC, STARTTJD for TICA)."""
    return sorted(ffis, key=lambda f: float(f.image_header[TIME_KEYS[f.product][0]]))
