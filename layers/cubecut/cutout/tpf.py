"""Build the target pixel file (TPF) of a cutout, in astrocut 1.3.0's layout, minus its bugs.

HDU0 is the cube's primary header with astrocut's cutout keywords; HDU1 ``PIXELS`` is the
12-column table (TIME ... FFI_FILE); HDU2 ``APERTURE`` is an int32 image, 1 on pixels that
lie on the FFI, carrying the cutout's linear TAN WCS. Every keyword astrocut writes is
written with the same value, except (on purpose):

* ``CREATOR``/``PROCVER`` name cubecut and its version, and ``FFI_TYPE`` is the cube's
  product (astrocut always writes SPOC).
* ``WCS_MSEP``/``WCS_SIG`` are the real fit residuals (astrocut compares the fitted WCS with
  itself and writes 0). Definitions as astrocut 0.x: over all cutout pixel centres, the
  maximum and the root-sum-square of the separation between the SIP and the linear WCS, deg.
* The linear WCS is our own deterministic least-squares fit (see :func:`fit_linear_wcs`), so
  its CRPIXi/PCi_j/CRVALi/LATPOLE differ from astrocut's by ~1e-6 relative; the sky
  positions they give agree to far below WCS_MSEP.
* The per-column WCS keywords of the image columns 4-8 (``1CTYP5``, ``1CRPX5``, ...,
  ``1CRV5P``/``2CRV5P``) are present (astrocut's insertion loop never fires), and APERTURE
  carries the physical alternate WCS ``P`` (``CRVAL1P`` ...), as SPOC TPFs do.
  ``1CRV5P``/``2CRV5P`` are the 1-based FFI column/row of the cutout's first pixel, which
  lightkurve reports as ``tpf.column``/``tpf.row``.
* ``FFI_FILE`` is as wide as the longest FFI name (astrocut: 38 characters, truncating).
* TICA TPFs carry what astrocut 1.2 wrote and 1.3 lost: CAMERA, CCD, TSTART, TSTOP,
  DATE-OBS/DATE-END (and astrocut 1.2's placeholders) in the primary header, TELAPSE =
  TSTOP - TSTART, CADENCENO = the FFIs' CADENCE, and TIMEREF/TASSIGN undefined (TICA
  times are not barycentric).
* Boxes partly off the image are NaN-padded with APERTURE 0 there (as astrocut); boxes
  wholly off the image are refused earlier (:mod:`.geometry`) rather than raising a
  ``ValueError`` or returning an all-NaN file.

Two writers, one content. :func:`reference_tpf` assembles the TPF as astropy HDUs card by
card and defines what the file holds. :func:`tpf_bytes` writes the same file (byte for
byte what astropy's ``writeto(checksum=True)`` gives for that HDUList) in milliseconds:
the cards every cutout of a cube shares come from a per-cube template (astropy's own
output for a 1x1 cutout, made once per cube index and cached with it), only the target's
cards (position, box size, WCS) are rendered per cutout, the pixels are written
big-endian into their final place, and the checksums are vectorised
(:mod:`cubecut.fitswrite`).
"""
from __future__ import annotations

import fnmatch
import io
import threading
import warnings
import weakref
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import PurePosixPath
from typing import Any

import numpy as np
from astropy.coordinates import SkyCoord, angular_separation
from astropy.io import fits
from astropy.io.fits.verify import VerifyError
from astropy.time import Time
from astropy.wcs import WCS, WCSHDO_P14, WCSHDO_safe

from .. import fitswrite
from ..cube.index import CubeIndex
from ..errors import NotACubeError
from ..fitsio import CARD, data_bytes, padded
from ..release import VERSION
from .geometry import Box, cutout_wcs, ffi_wcs, radec_deg

CUBECUT_VERSION = VERSION

#: Sample points per axis (at most) for the linear WCS fit; they span the pixel edges.
FIT_GRID = 11

#: Primary keywords astrocut drops (single-FFI or per-target values); fnmatch patterns.
_DROP_PRIMARY = (
    "SC_*", "RMS*", "A_*", "AP_*", "B_*", "BP*", "GAIN*", "TESS_*", "CD*", "CT*", "CRPIX*",
    "CRVAL*", "MJD*", "COMMENT", "FILTER", "TIME", "EXPTIME", "ACS_MODE", "DEC_TARG", "FLXWIN",
    "RA_TARG", "CCDNUM", "CAMNUM", "WCSGDF", "UNITS", "CADENCE", "SCIPIXS", "INT_TIME",
    "PIX_CAT", "REQUANT", "DIFF_HUF", "PRIM_HUF", "QUAL_BIT", "SPM", "STARTTJD", "ENDTJD", "CRM",
    "TJD_ZERO", "CRM_N", "ORBIT_ID", "MIDTJD",
)

#: Comments astrocut gives to the kept primary keywords inherited from the first/last FFI.
_INHERITED_COMMENTS = {
    "TSTART": "observation start time in TJD of first FFI",
    "TSTOP": "observation stop time in TJD of last FFI",
    "DATE-OBS": "TSTART as UTC calendar date of first FFI",
    "DATE-END": "TSTOP as UTC calendar date of last FFI",
    "FFIINDEX": "number of FFI cadence interval of first FFI",
}

#: Target keywords of a pipeline TPF that a cutout cannot know (astrocut's placeholders).
_TARGET_PLACEHOLDERS = {
    "OBJECT": ("", "string version of target ID"),
    "TCID": (0, "unique TESS target identifier"),
    "PXTABLE": (0, "pixel table ID"),
    "PMRA": (0.0, "[mas/yr] RA proper motion"),
    "PMDEC": (0.0, "[mas/yr] Dec proper motion"),
    "PMTOTAL": (0.0, "[mas/yr] Total proper motion"),
    "TESSMAG": (0.0, "[mag] TESS magnitude"),
    "TEFF": (0.0, "[K] Effective temperature"),
    "LOGG": (0.0, "[cm/s2] log10 surface gravity"),
    "MH": (0.0, "[log10([M/H])] Metallicity"),
    "RADIUS": (0.0, "[solar radii] Stellar radius"),
    "TICVER": (0, "TIC version"),
    "TICID": (None, "unique TESS target identifier"),
}

#: FFI image keywords copied (value or None) from the WCS frame into the PIXELS header.
_IMAGE_KEYWORDS = {
    "BACKAPP": "background is subtracted",
    "CDPP0_5": "RMS CDPP on 0.5-hr time scales",
    "CDPP1_0": "RMS CDPP on 1.0-hr time scales",
    "CDPP2_0": "RMS CDPP on 2.0-hr time scales",
    "CROWDSAP": "Ratio of target flux to total flux in op. ap.",
    "DEADAPP": "deadtime applied",
    "DEADC": "deadtime correction",
    "EXPOSURE": "[d] time on source",
    "FLFRCSAP": "Frac. of target flux w/in the op. aperture",
    "FRAMETIM": "[s] frame time [INT_TIME + READTIME]",
    "FXDOFF": "compression fixed offset",
    "GAINA": "[electrons/count] CCD output A gain",
    "GAINB": "[electrons/count] CCD output B gain",
    "GAINC": "[electrons/count] CCD output C gain",
    "GAIND": "[electrons/count] CCD output D gain",
    "INT_TIME": "[s] photon accumulation time per frame",
    "LIVETIME": "[d] TELAPSE multiplied by DEADC",
    "MEANBLCA": "[count] FSW mean black level CCD output A",
    "MEANBLCB": "[count] FSW mean black level CCD output B",
    "MEANBLCC": "[count] FSW mean black level CCD output C",
    "MEANBLCD": "[count] FSW mean black level CCD output D",
    "NREADOUT": "number of read per cadence",
    "NUM_FRM": "number of frames per time stamp",
    "READNOIA": "[electrons] read noise CCD output A",
    "READNOIB": "[electrons] read noise CCD output B",
    "READNOIC": "[electrons] read noise CCD output C",
    "READNOID": "[electrons] read noise CCD output D",
    "READTIME": "[s] readout time per frame",
    "TIERRELA": "[d] relative time error",
    "TIMEDEL": "[d] time resolution of data",
    "TIMEPIXR": "bin time beginning=0 middle=0.5 end=1",
    "TMOFST11": "(s) readout delay for camera 1 and ccd 1",
    "VIGNAPP": "vignetting or collimator correction applied",
}

_COLUMN_COMMENTS = (("TTYPE", "column name"), ("TFORM", "column format"), ("TUNIT", "unit"),
                    ("TDISP", "display format"), ("TDIM", "multi-dimensional array spec"),
                    ("TNULL", "null value"))

_INHERIT_RESERVED = {"COMMENT", "SIMPLE", "BITPIX", "EXTEND", "NEXTEND"}

#: The PIXELS table's columns in order: name, FITS type code (per pixel for image
#: columns), unit, display format, whether it is an image (``(ny, nx)`` per frame).
_COLUMNS = (
    ("TIME", "D", "BJD - 2457000, days", "D14.7", False),
    ("TIMECORR", "E", "d", "E14.7", False),
    ("CADENCENO", "J", None, "I10", False),
    ("RAW_CNTS", "J", "count", "I8", True),
    ("FLUX", "E", "e-/s", "E14.7", True),
    ("FLUX_ERR", "E", "e-/s", "E14.7", True),
    ("FLUX_BKG", "E", "e-/s", "E14.7", True),
    ("FLUX_BKG_ERR", "E", "e-/s", "E14.7", True),
    ("QUALITY", "J", None, "B16.16", False),
    ("POS_CORR1", "E", "pixel", "E14.7", False),
    ("POS_CORR2", "E", "pixel", "E14.7", False),
    ("FFI_FILE", "A", "pixel", None, False),
)
#: Big-endian numpy types of the FITS type codes used.
_DTYPES = {"D": ">f8", "E": ">f4", "J": ">i4"}
#: 1-based numbers of the image columns (which carry TDIMn and the per-column WCS).
_IMAGE_COLUMNS = tuple(number for number, column in enumerate(_COLUMNS, 1) if column[4])
#: Cube templates kept per process (as many as cube indexes are: metadata.CACHE_SIZE).
TEMPLATE_CACHE_SIZE = 32


def tpf_filename(cube_name: str, ra: float, dec: float, nx: int | str, ny: int | str) -> str:
    """astrocut's TPF name: ``{cube stem}_{ra:.7f}_{dec:.7f}_{nx}-x-{ny}_astrocut.fits``.

    ``cube_name`` may be a file name, path or URL; ``.fits`` and a trailing ``-cube`` are
    dropped from it. ``ra``/``dec`` are ICRS degrees; ``nx``/``ny`` are the requested x
    (column) and y (row) sizes as astrocut prints them (see ``geometry.size_label``).
    """
    stem = PurePosixPath(cube_name).name.removesuffix(".fits").removesuffix("-cube")
    return f"{stem}_{ra:.7f}_{dec:.7f}_{nx}-x-{ny}_astrocut.fits"


def build_tpf(index: CubeIndex, box: Box, flux: np.ndarray, flux_err: np.ndarray, coord: SkyCoord,
              *, cube_name: str) -> fits.HDUList:
    """The TPF of one cutout, as an HDUList read lazily from the file :func:`tpf_bytes` writes.

    Args:
        index: the cube's index.
        box: the cutout box (0-based FFI pixels; may extend off the image).
        flux, flux_err: ``(nt, ny, nx)`` arrays from :func:`.reader.read_box` (NaN off-image).
        coord: the requested target position (written as RA_OBJ/DEC_OBJ).
        cube_name: the cube's file name (for messages).
    """
    _check_shapes(index, box, flux, flux_err, cube_name)

    def fill(flux_out: np.ndarray, flux_err_out: np.ndarray) -> None:
        flux_out[...] = flux
        flux_err_out[...] = flux_err

    return fits.open(io.BytesIO(tpf_bytes(index, box, fill, coord)))


def tpf_bytes(index: CubeIndex, box: Box, fill: Callable[[np.ndarray, np.ndarray], None], coord: SkyCoord,
              *, timestamp: str | None = None, allocate: Callable[[int], bytearray] = bytearray) -> bytearray:
    """The FITS file of one cutout's TPF: the bytes astropy writes for :func:`reference_tpf`'s
    HDUList with ``writeto(checksum=True)``, built directly (a few ms for 30x30x1,000).

    The headers are the cube's template (cached per index) with the target's cards
    rendered in; the table is laid out big-endian in the output buffer and ``fill(flux,
    flux_err)`` writes the pixels straight into its FLUX/FLUX_ERR columns (two ``(nt, ny,
    nx)`` big-endian float32 views; NaN off the image, error 0 for 1-plane cubes).
    ``timestamp`` is the checksum comments' time (default: now, as astropy writes it).
    ``allocate(size)`` gives the file's buffer: ``size`` zero bytes (default a new
    ``bytearray``; a bulk worker recycles the buffers of files already written).
    """
    return tpf_draft(index, box, coord, timestamp=timestamp, allocate=allocate).finish(fill)


class TPFDraft:
    """A TPF file laid out but for its pixels: :func:`tpf_bytes` in two steps, so that the
    part that needs no pixel (headers, the cube-wide columns, APERTURE, the checksums of
    HDUs 0 and 2: most of the work) is done while the cutout's rows are being read.

    The pixels go into :attr:`pixels`; :meth:`finish` then writes the PIXELS checksums, and
    the file is the one :func:`tpf_bytes` gives.
    """

    def __init__(self, template: _Template, box: Box, buffer: bytearray, table: np.ndarray, images: list[str],
                 offset: int, when: str) -> None:
        self._template, self._box, self._buffer, self._table = template, box, buffer, table
        self._images, self._offset, self._when = images, offset, when
        #: The FLUX and FLUX_ERR columns, ``(nt, ny, nx)`` big-endian float32 views into the file.
        self.pixels: tuple[np.ndarray, np.ndarray] = (table["FLUX"], table["FLUX_ERR"])

    def finish(self, fill: Callable[[np.ndarray, np.ndarray], None] | None = None, *,
               pixel_words: int | None = None) -> bytearray:
        """The file, once ``fill(flux, flux_err)`` (if given) has written the pixels into
        :attr:`pixels` (as for :func:`tpf_bytes`).

        ``pixel_words``, when the caller knows it (e.g. summed row by row as the rows
        came), is the sum of the big-endian 32-bit words of FLUX and FLUX_ERR as written:
        the pixels are then not read again for the DATASUM.
        """
        if fill is not None:
            fill(*self.pixels)
        header = self._template.headers[1]
        fitswrite.write_hdu(self._buffer, self._offset, self._images, checksum_card=header.checksum,
                            datasum_card=header.datasum, data_bytes=self._table.nbytes, when=self._when,
                            datasum=_table_datasum(self._template, self._table, self._box, pixel_words))
        return self._buffer


def tpf_draft(index: CubeIndex, box: Box, coord: SkyCoord, *, timestamp: str | None = None,
              allocate: Callable[[int], bytearray] = bytearray) -> TPFDraft:
    """The TPF of one cutout without its pixels (see :class:`TPFDraft`; arguments as
    :func:`tpf_bytes`)."""
    fit = fit_linear_wcs(cutout_wcs(ffi_wcs(index), box), box.nx, box.ny)
    template = _template(index, coord)
    rows = _row_dtype(template.name_width, box.nx, box.ny)
    values = _target_values(box, fit, coord, rows.itemsize)
    headers = [part.render(cards) for part, cards in zip(template.headers, values)]
    sizes = (0, index.nt * rows.itemsize, box.nx * box.ny * 4)
    header_sizes = [padded(sum(map(len, images)) + CARD) for images in headers]
    offsets = np.cumsum([0] + [h + padded(d) for h, d in zip(header_sizes, sizes)]).tolist()
    buf = allocate(offsets[-1])

    table = np.ndarray((index.nt,), dtype=rows, buffer=buf, offset=offsets[1] + header_sizes[1])
    for name, column in template.columns.items():
        table[name] = column
    table["RAW_CNTS"] = -1
    aperture = np.ndarray((box.ny, box.nx), dtype=">i4", buffer=buf, offset=offsets[2] + header_sizes[2])
    part = box.overlap(index.ncols, index.nrows)
    if part is not None:
        aperture[part.y0 - box.y0:part.y1 - box.y0, part.x0 - box.x0:part.x1 - box.x0] = 1

    when = timestamp or fitswrite.checksum_timestamp()
    for number in (0, 2):  # the PIXELS HDU is written by finish, once its pixels are in
        header = template.headers[number]
        fitswrite.write_hdu(buf, offsets[number], headers[number], checksum_card=header.checksum,
                            datasum_card=header.datasum, data_bytes=sizes[number], when=when)
    return TPFDraft(template, box, buf, table, headers[1], offsets[1], when)


def _table_datasum(template: _Template, table: np.ndarray, box: Box, pixel_words: int | None = None) -> int | None:
    """The PIXELS table's DATASUM from its parts: when every field and row is a whole number
    of 32-bit words, the ones'-complement sum is the sum of the cube-wide columns' words
    (computed once per cube), RAW_CNTS (-1 in every word), the zero columns (0) and only the
    FLUX/FLUX_ERR words, which are read here (40 % of a 30x30 table) unless ``pixel_words``
    gives their sum. None when the layout does not allow it (the whole table is summed then)."""
    if template.constant_words is None:
        return None
    npix = box.nx * box.ny
    fields = table.dtype.fields
    assert fields is not None  # a structured row type
    offset = fields["FLUX"][1]
    if fields["FLUX_ERR"][1] != offset + 4 * npix:
        return None
    if pixel_words is None:
        pixels = np.ndarray((len(table), 2 * npix), dtype=">u4", buffer=table, offset=offset,
                            strides=(table.dtype.itemsize, 4))
        pixel_words = int(pixels.sum(dtype=np.uint64))
    raw = len(table) * npix * 0xFFFFFFFF
    return fitswrite.fold(template.constant_words + raw + pixel_words)


def reference_tpf(index: CubeIndex, box: Box, flux: np.ndarray, flux_err: np.ndarray, coord: SkyCoord,
                  *, cube_name: str = "the cube") -> fits.HDUList:
    """The TPF assembled card by card as astropy HDUs: the definition of its content.

    Slow (~100 ms for 30x30x1,000 frames, most of it astropy card handling). The fast
    writer's per-cube header template is this function's output for a 1x1 cutout, and the
    tests check that :func:`tpf_bytes` equals its ``writeto(checksum=True)`` for any box.
    """
    _check_shapes(index, box, flux, flux_err, cube_name)
    linear, msep, sig = fit_linear_wcs(cutout_wcs(ffi_wcs(index), box), box.nx, box.ny)

    primary = fits.PrimaryHDU(header=_primary_header(index, coord))
    pixels = _pixels_hdu(index, box, flux, flux_err, linear)
    aperture = _aperture_hdu(index, box, linear, msep, sig)
    hdul = fits.HDUList([primary, pixels, aperture])
    _apply_inherit(hdul)
    return hdul


def _check_shapes(index: CubeIndex, box: Box, flux: np.ndarray, flux_err: np.ndarray, cube_name: str) -> None:
    if flux.shape != (index.nt, box.ny, box.nx) or flux_err.shape != flux.shape:
        raise ValueError(f"{cube_name}: pixel arrays {flux.shape}/{flux_err.shape} do not match "
                         f"the {box.nx}x{box.ny} box and {index.nt} frames")


def fit_linear_wcs(wcs: WCS, nx: int, ny: int) -> tuple[WCS, float, float]:
    """The linear TAN WCS that best matches ``wcs`` (e.g. TAN-SIP) on an ``nx`` x ``ny`` image.

    CRVAL is the sky position of the image centre. Sample points on a grid spanning the
    pixel edges (``-0.5 .. n-0.5``, 0-based, so 1-pixel-wide images are well posed) are
    projected onto the tangent plane at CRVAL, and the CD matrix and CRPIX are the linear
    least-squares solution there (residuals in degrees on the sky, no iteration).

    Returns:
        ``(linear_wcs, msep, sig)``: over all pixel centres, the maximum and the
        root-sum-square of the separation between the two WCSs, in degrees.
    """
    gx, gy, px, py = _fit_points(nx, ny)
    # One projection call for the fit grid, the centre and the pixel centres (elementwise,
    # so the same numbers as three calls).
    ra_all, dec_all = wcs.all_pix2world(np.concatenate([gx, [(nx - 1) / 2], px]),
                                        np.concatenate([gy, [(ny - 1) / 2], py]), 0)
    ngrid = gx.size
    ra, dec = ra_all[:ngrid], dec_all[:ngrid]
    crval = np.array([ra_all[ngrid], dec_all[ngrid]])
    true_ra, true_dec = ra_all[ngrid + 1:], dec_all[ngrid + 1:]

    linear = WCS(naxis=2)
    linear.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    linear.wcs.cunit = ["deg", "deg"]
    linear.wcs.radesys = wcs.wcs.radesys or "ICRS"
    linear.wcs.crval = crval
    linear.wcs.crpix = [0.0, 0.0]
    linear.wcs.cd = np.eye(2)
    # With CRPIX 0, CD = I and origin 1, "pixel" coordinates are the tangent-plane ones (deg).
    plane = np.column_stack(linear.wcs_world2pix(ra, dec, 1))
    design = np.column_stack([gx, gy, np.ones(ngrid)])
    solution = np.linalg.lstsq(design, plane, rcond=None)[0]
    cd, offset = solution[:2].T, solution[2]
    # plane = cd @ p0 + offset with p0 0-based; FITS: plane = cd @ (p0 + 1 - crpix).
    linear.wcs.cd = cd
    linear.wcs.crpix = 1.0 - np.linalg.solve(cd, offset)

    fit_ra, fit_dec = linear.wcs_pix2world(px, py, 0)
    seps = np.degrees(angular_separation(*np.radians([true_ra, true_dec, fit_ra, fit_dec])))
    return linear, float(seps.max()), float(np.sqrt(np.sum(seps ** 2)))


@lru_cache(maxsize=64)
def _fit_points(nx: int, ny: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The fit's sample grid (spanning the pixel edges) and the pixel centres of an ``nx`` x
    ``ny`` image, flattened (0-based pixels). Read-only: shared by every fit of that size."""
    gx, gy = np.meshgrid(np.linspace(-0.5, nx - 0.5, min(nx + 1, FIT_GRID)),
                         np.linspace(-0.5, ny - 0.5, min(ny + 1, FIT_GRID)))
    px, py = np.meshgrid(np.arange(nx), np.arange(ny))
    points = tuple(np.ascontiguousarray(a.ravel(), dtype=float) for a in (gx, gy, px, py))
    for array in points:
        array.flags.writeable = False
    return points  # type: ignore[return-value]  # four arrays, as the signature says


def wcs_header_values(linear: WCS) -> dict[str, object]:
    """``{card.keyword: card.value for card in linear.to_header().cards}``, without astropy's
    Header: wcslib's header text (the same flags ``WCS.to_header()`` passes: 14 significant
    digits, the "safe" keywords) with each value read as astropy reads it (integers as int,
    other numbers as float, quoted strings unquoted, T/F as bool). For a WCS without SIP.
    """
    text = linear.wcs.to_header(WCSHDO_P14 | WCSHDO_safe)
    values: dict[str, object] = {}
    for start in range(0, len(text), CARD):
        image = text[start:start + CARD]
        keyword = image[:8].rstrip()
        if not keyword or keyword == "COMMENT" or image[8:10] != "= ":
            continue
        values[keyword] = _card_value(image[10:])
    return values


def _card_value(field: str) -> object:
    """The value of a fixed-format card's value field (after ``= ``), as astropy parses it."""
    field = field.lstrip()
    if field.startswith("'"):
        end = 1
        while True:  # a quote inside a string is written twice
            end = field.index("'", end)
            if field.startswith("''", end):
                end += 2
                continue
            break
        return field[1:end].replace("''", "'").rstrip()
    text = field.split("/", 1)[0].strip()
    if text in ("T", "F"):
        return text == "T"
    try:
        return int(text)
    except ValueError:
        return float(text.replace("D", "E"))


def _tica_keywords(header: fits.Header) -> dict[str, tuple[object, str]]:
    """What astrocut 1.2 adds to a TICA TPF's primary header (from the cube's, which has
    TICA's names): SPOC's names for the times and camera/CCD, DATE-OBS/DATE-END (UTC ISO
    dates of TSTART/TSTOP + 2457000 as Julian dates, as astrocut computes them) and the
    SPOC keywords TICA lacks, undefined."""
    tstart, tstop = header.get("STARTTJD"), header.get("ENDTJD")
    cards: dict[str, tuple[object, str]] = {
        "EXTVER": ("1", "extension version number (not format version)"),
        "SIMDATA": (False, "file is based on simulated data"),
        "NEXTEND": ("2", "number of standard extensions"),
        "TSTART": (tstart, "observation start time in TJD of first FFI"),
        "TSTOP": (tstop, "observation stop time in TJD of last FFI"),
        "CAMERA": (header.get("CAMNUM"), "Camera number"),
        "CCD": (header.get("CCDNUM"), "CCD chip number"),
        "ASTATE": (None, "archive state F indicates single orbit processing"),
        "CRMITEN": (header.get("CRM"), "spacecraft cosmic ray mitigation enabled"),
        "CRBLKSZ": (None, "[exposures] s/c cosmic ray mitigation block siz"),
        "FFIINDEX": (header.get("CADENCE"), "number of FFI cadence interval of first FFI"),
        "DATA_REL": (None, "data release version number"),
        "FILEVER": (None, "file format version"),
        "RADESYS": (None, "reference frame of celestial coordinates"),
        "SCCONFIG": (None, "spacecraft configuration ID"),
        "TIMVERSN": (None, "OGIP memo number for file format"),
    }
    for key, value, comment in (("DATE-OBS", tstart, "TSTART as Julian Date of first FFI"),
                                ("DATE-END", tstop, "TSTOP as Julian Date of last FFI")):
        if isinstance(value, (int, float)):
            cards[key] = (Time(value + 2457000, format="jd").iso, comment)
    return cards


def _primary_header(index: CubeIndex, coord: SkyCoord) -> fits.Header:
    header = index.primary()
    spoc = index.product != "TICA"
    header.update({
        "CREATOR": ("cubecut", "software used to produce this file"),
        "PROCVER": (CUBECUT_VERSION, "software version"),
        "FFI_TYPE": (index.product, "the FFI type used to make the cutouts"),
        **_object_cards(coord),
        "TIMEREF": ("SOLARSYSTEM" if spoc else None, "barycentric correction applied to times"),
        "TASSIGN": ("SPACECRAFT" if spoc else None, "where time is assigned"),
        "TIMESYS": ("TDB", "time system is Barycentric Dynamical Time (TDB)"),
        "BJDREFI": (2457000, "integer part of BTJD reference date"),
        "BJDREFF": (0.00000000, "fraction of the day in BTJD reference date"),
        "TIMEUNIT": ("d", "time unit for TIME, TSTART, and TSTOP"),
    })
    if not spoc:
        header.update(_tica_keywords(header))
    for key in [k for k in dict.fromkeys(header.keys())
                if any(fnmatch.fnmatchcase(k, pattern) for pattern in _DROP_PRIMARY)]:
        header.remove(key, remove_all=True)
    header["TELAPSE"] = (header.get("TSTOP", 0) - header.get("TSTART", 0), "[d] TSTOP - TSTART")
    if "DATE" in header:
        header["DATE"] = (header["DATE"], "FFI cube creation date")
    for key, comment in _INHERITED_COMMENTS.items() if spoc else ():
        if key in header:
            header[key] = (header[key], comment)
    header.update(_TARGET_PLACEHOLDERS)
    return header


def _object_cards(coord: SkyCoord) -> dict[str, tuple[object, str]]:
    """The target's position cards (primary, and inherited by the extensions)."""
    ra, dec = radec_deg(coord)
    return {"RA_OBJ": (ra, "[deg] right ascension"), "DEC_OBJ": (dec, "[deg] declination")}


def _pixels_hdu(index: CubeIndex, box: Box, flux: np.ndarray, flux_err: np.ndarray,
                linear: WCS) -> fits.BinTableHDU:
    nt, npix = index.nt, box.nx * box.ny
    arrays = {**_per_frame_columns(index), "RAW_CNTS": np.full(flux.shape, -1, dtype=np.int32),
              "FLUX": flux, "FLUX_ERR": flux_err}
    cols = []
    for name, code, unit, disp, per_pixel in _COLUMNS:
        shape = (nt, box.ny, box.nx) if per_pixel else (nt,)
        array = arrays.get(name, np.zeros(shape, dtype=_DTYPES.get(code, ">f4")))
        if per_pixel:
            cols.append(fits.Column(name=name, format=f"{npix}{code}", unit=unit, disp=disp, array=array,
                                    dim=f"({box.nx}, {box.ny})", null=-1 if name == "RAW_CNTS" else None))
        else:
            code = f"{array.dtype.itemsize}A" if code == "A" else code
            cols.append(fits.Column(name=name, format=code, unit=unit, disp=disp, array=array))
    hdu = fits.BinTableHDU.from_columns(cols)
    header = hdu.header
    header["EXTNAME"] = "PIXELS"
    header["INHERIT"] = True
    for key in list(header.keys()):
        for prefix, comment in _COLUMN_COMMENTS:
            if key.startswith(prefix):
                header.comments[key] = comment
                break
    column_wcs = _column_wcs_cards(linear.to_header(), box)
    for number in range(1, header["TFIELDS"]):
        if f"TDIM{number}" in header:
            for key, value, comment in column_wcs:
                header.insert(f"TTYPE{number + 1}", (key.format(number), value, comment))
    frame = index.wcs_fits_header()
    for key, comment in _IMAGE_KEYWORDS.items():
        header[key] = (frame.get(key), comment)
    # A 44-character SPOC name leaves no room for the comment on the 80-byte card
    # (astropy would truncate it with a warning, which is what astrocut's files show).
    name = index.ffi_files[index.wcs_row]
    header["WCS_FFI"] = (name, _fitting_comment("WCS_FFI", name, "FFI used for cutout WCS"))
    return hdu


def _per_frame_columns(index: CubeIndex) -> dict[str, np.ndarray]:
    """The PIXELS columns that are the same for every cutout of the cube (others are 0)."""
    times = index.time_arrays()
    width = max([1, *map(len, index.ffi_files)])
    cadence = index.cadence if len(index.cadence) == index.nt else [0] * index.nt  # older sidecars: none
    return {"TIME": (times["tstart"] + times["tstop"]) / 2, "TIMECORR": times["barycorr"],
            "CADENCENO": np.asarray(cadence, dtype=np.int32), "QUALITY": times["quality"],
            "FFI_FILE": np.array(index.ffi_files, dtype=f"S{width}")}


@lru_cache(maxsize=256)
def _row_dtype(name_width: int, nx: int, ny: int) -> np.dtype:
    """One PIXELS row as FITS stores it: packed, big-endian, image columns ``(ny, nx)``."""
    fields: list[tuple] = []
    for name, code, _, _, per_pixel in _COLUMNS:
        if code == "A":
            fields.append((name, f"S{name_width}"))
        else:
            fields.append((name, _DTYPES[code], (ny, nx)) if per_pixel else (name, _DTYPES[code]))
    return np.dtype(fields)


def _target_values(box: Box, fit: tuple[WCS, float, float], coord: SkyCoord,
                   row_bytes: int) -> tuple[dict[str, object], dict[str, object], dict[str, object]]:
    """The values of the cards that may differ between cutouts of one cube, per HDU (the
    template holds every other card, and these cards' comments). ``row_bytes``: the
    PIXELS table's NAXIS1."""
    linear, msep, sig = fit
    target = {key: value for key, (value, _) in _object_cards(coord).items()}
    npix, dim = box.nx * box.ny, f"({box.nx}, {box.ny})"
    pixels: dict[str, object] = {"NAXIS1": row_bytes}
    wcs_header = wcs_header_values(linear)
    column_wcs = _column_wcs_cards(wcs_header, box)
    for number in _IMAGE_COLUMNS:
        pixels[f"TFORM{number}"] = f"{npix}{_COLUMNS[number - 1][1]}"
        pixels[f"TDIM{number}"] = dim
        pixels.update({key.format(number): value for key, value, _ in column_wcs})
    pixels.update(target)
    aperture: dict[str, object] = {"NAXIS1": box.nx, "NAXIS2": box.ny}
    aperture.update(wcs_header)
    aperture.update({key: value for key, (value, _) in physical_wcs_cards(box).items()})
    aperture.update({"WCS_MSEP": msep, "WCS_SIG": sig, **target})
    return target, pixels, aperture


@dataclass(frozen=True)
class _HeaderTemplate:
    """One HDU's header for every cutout of a cube: card images, with the positions of the
    cards a cutout sets (and their comments) and of CHECKSUM/DATASUM."""

    images: tuple[str, ...]
    #: Per card a cutout sets: its position, comment, and the ``(type, repr)`` of the value
    #: the template's image holds (a cutout with that value keeps the image).
    slots: dict[str, tuple[int, str, tuple[type, str]]]
    checksum: int
    datasum: int

    def render(self, values: dict[str, object]) -> list[str]:
        """The card images with ``values`` set; cards whose image differs only by keyword
        (the per-column WCS of columns 4-8) are rendered once."""
        images = list(self.images)
        rendered: dict[tuple[str, type, str], str] = {}
        for key, value in values.items():
            try:
                position, comment, held = self.slots[key]
            except KeyError:
                raise TemplateError(f"the TPF template has no card {key}") from None
            kind, text = type(value), repr(value)
            if (kind, text) == held:
                continue
            same = (comment, kind, text)
            image = rendered.get(same)
            image = fitswrite.card_image(key, value, comment) if image is None else fitswrite.rekeyed(image, key)
            rendered[same] = image
            images[position] = image
        return images


@dataclass(frozen=True)
class _Template:
    """What every TPF of one cube shares: its three header templates and per-frame columns."""

    headers: tuple[_HeaderTemplate, _HeaderTemplate, _HeaderTemplate]
    columns: dict[str, np.ndarray]
    name_width: int
    #: Sum of the big-endian 32-bit words of ``columns`` over all rows, when every row
    #: is a whole number of words (else None).
    constant_words: int | None


class TemplateError(RuntimeError):
    """A cutout needs a header card that the cube's TPF template does not have (a bug)."""


_templates: OrderedDict[int, tuple[weakref.ref, _Template]] = OrderedDict()
_templates_lock = threading.Lock()


def _template(index: CubeIndex, coord: SkyCoord) -> _Template:
    """The cube's TPF template (cached per index object; ``coord`` is any target)."""
    key = id(index)
    with _templates_lock:
        cached = _templates.get(key)
        if cached is not None and cached[0]() is index:
            _templates.move_to_end(key)
            return cached[1]
    template = _stored_template(index) or _make_template(index, coord)
    with _templates_lock:
        _templates[key] = (weakref.ref(index), template)
        while len(_templates) > TEMPLATE_CACHE_SIZE:
            _templates.popitem(last=False)
    return template


def _make_template(index: CubeIndex, coord: SkyCoord) -> _Template:
    """The template from the file astropy writes for a 1x1 cutout of the cube."""
    box = Box(0, 0, 1, 1)
    zeros = np.zeros((index.nt, 1, 1), dtype=np.float32)
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", fits.verify.VerifyWarning)
            # "fix": what astropy can repair in a cube's odd primary cards it repairs (for a
            # valid header this writes exactly what the default "exception" writes)
            reference_tpf(index, box, zeros, zeros, coord).writeto(buffer, checksum=True, output_verify="fix")
    except VerifyError as exc:
        raise NotACubeError(f"a TPF cannot carry this cube's primary header: {exc}") from None
    data = buffer.getvalue()
    fit = fit_linear_wcs(cutout_wcs(ffi_wcs(index), box), 1, 1)
    columns = _per_frame_columns(index)
    name_width = columns["FFI_FILE"].dtype.itemsize
    headers, offset = [], 0
    for values in _target_values(box, fit, coord, _row_dtype(name_width, 1, 1).itemsize):
        images: list[str] = []
        while not data.startswith(b"END ", offset):
            images.append(data[offset:offset + CARD].decode("ascii"))
            offset += CARD
        offset = padded(offset + CARD)
        positions = {image[:8].rstrip(): number for number, image in enumerate(images)}
        slots = {key: (positions[key], fits.Card.fromstring(images[positions[key]]).comment,
                       (type(value), repr(value))) for key, value in values.items()}
        headers.append(_HeaderTemplate(tuple(images), slots, positions["CHECKSUM"], positions["DATASUM"]))
        header = fits.Header.fromstring("".join(images))
        offset += padded(data_bytes(header))
    primary, pixels, aperture = headers  # one template per HDU
    return _Template((primary, pixels, aperture), columns, name_width, _column_words(columns, name_width))


#: A stored template (:func:`template_state`) is used only by the writer version that made it.
TEMPLATE_FORMAT = f"cubecut {CUBECUT_VERSION} tpf-template 1"


def template_state(index: CubeIndex) -> dict | None:
    """The cube's TPF header template as JSON data, for the index sidecar
    (:attr:`CubeIndex.tpf_template`): a process that loads the index then needs not build
    it (~0.1 s of astropy on the first cutout of a cube). None when no TPF can carry the
    cube's primary header (the cutout raises then)."""
    try:
        template = _make_template(index, SkyCoord(0.0, 0.0, unit="deg"))  # any target: its cards are slots
    except NotACubeError:
        return None
    return {"format": TEMPLATE_FORMAT,
            "headers": [{"cards": "".join(h.images), "checksum": h.checksum, "datasum": h.datasum,
                         "slots": {key: [position, comment] for key, (position, comment, _) in h.slots.items()}}
                        for h in template.headers]}


#: What a stored template's slots hold as their value: nothing a cutout's value equals (the
#: stored cards are rendered for an arbitrary target, so every slot is rendered again).
_NOT_HELD: tuple[type, str] = (type(None), "")


def _stored_template(index: CubeIndex) -> _Template | None:
    """The template :func:`template_state` stored in ``index``, if this writer version made it."""
    state = index.tpf_template
    if not isinstance(state, dict) or state.get("format") != TEMPLATE_FORMAT:
        return None
    try:
        primary, pixels, aperture = (
            _HeaderTemplate(tuple(h["cards"][i:i + CARD] for i in range(0, len(h["cards"]), CARD)),
                            {str(key): (int(position), str(comment), _NOT_HELD)
                             for key, (position, comment) in h["slots"].items()},
                            int(h["checksum"]), int(h["datasum"]))
            for h in state["headers"])
    except (KeyError, TypeError, ValueError):
        return None  # not what template_state writes: build the template instead
    columns = _per_frame_columns(index)
    name_width = columns["FFI_FILE"].dtype.itemsize
    return _Template((primary, pixels, aperture), columns, name_width, _column_words(columns, name_width))


def _column_words(columns: dict[str, np.ndarray], name_width: int) -> int | None:
    """The sum of the big-endian 32-bit words of the cube-wide PIXELS columns."""
    if name_width % 4:
        return None
    fields = _row_dtype(name_width, 1, 1).fields
    assert fields is not None  # a structured row type
    total = 0
    for name, values in columns.items():
        stored = np.ascontiguousarray(values, dtype=fields[name][0])
        total += int(np.frombuffer(stored.tobytes(), dtype=">u4").sum(dtype=np.uint64))
    return total


def _column_wcs_cards(w: Mapping[str, Any], box: Box) -> list[tuple[str, object, str]]:
    """The per-column WCS keywords (``{}`` = column number) of a pipeline TPF image column,
    from the linear WCS's header ``w`` (a Header, or :func:`wcs_header_values`)."""
    return [
        ("WCAX{}", w["WCSAXES"], "Number of WCS axes"),
        ("1CTYP{}", w["CTYPE1"], "right ascension coordinate type"),
        ("2CTYP{}", w["CTYPE2"], "declination coordinate type"),
        ("1CRPX{}", w["CRPIX1"], "[pixel] reference pixel along image axis 1"),
        ("2CRPX{}", w["CRPIX2"], "[pixel] reference pixel along image axis 2"),
        ("1CRVL{}", w["CRVAL1"], "[deg] right ascension at reference pixel"),
        ("2CRVL{}", w["CRVAL2"], "[deg] declination at reference pixel"),
        ("1CUNI{}", w["CUNIT1"], "physical unit in column dimension"),
        ("2CUNI{}", w["CUNIT2"], "physical unit in row dimension"),
        ("1CDLT{}", w["CDELT1"], "[deg] pixel scale in RA dimension"),
        ("2CDLT{}", w["CDELT2"], "[deg] pixel scale in DEC dimension"),
        ("11PC{}", w["PC1_1"], "Coordinate transformation matrix element"),
        ("12PC{}", w["PC1_2"], "Coordinate transformation matrix element"),
        ("21PC{}", w["PC2_1"], "Coordinate transformation matrix element"),
        ("22PC{}", w["PC2_2"], "Coordinate transformation matrix element"),
        ("WCSN{}P", "PHYSICAL", "table column WCS name"),
        ("WCAX{}P", 2, "table column physical WCS dimensions"),
        ("1CTY{}P", "RAWX", "table column physical WCS axis 1 type, CCD col"),
        ("2CTY{}P", "RAWY", "table column physical WCS axis 2 type, CCD row"),
        ("1CUN{}P", "PIXEL", "table column physical WCS axis 1 unit"),
        ("2CUN{}P", "PIXEL", "table column physical WCS axis 2 unit"),
        ("1CRV{}P", box.x0 + 1, "table column physical WCS ax 1 ref value"),
        ("2CRV{}P", box.y0 + 1, "table column physical WCS ax 2 ref value"),
        ("1CDL{}P", 1.0, "table column physical WCS a1 step"),
        ("2CDL{}P", 1.0, "table column physical WCS a2 step"),
        ("1CRP{}P", 1, "table column physical WCS a1 reference"),
        ("2CRP{}P", 1, "table column physical WCS a2 reference"),
    ]


def physical_wcs_cards(box: Box) -> dict[str, tuple[object, str]]:
    """The alternate WCS "P" of an image cut from an FFI: pixel (1, 1) of the image is the
    1-based FFI column/row of the box's first pixel (as in pipeline TPFs)."""
    return {
        "WCSNAMEP": ("PHYSICAL", "name of world coordinate system alternate P"),
        "WCSAXESP": (2, "number of WCS physical axes"),
        "CTYPE1P": ("RAWX", "physical WCS axis 1 type (CCD column)"),
        "CUNIT1P": ("PIXEL", "physical WCS axis 1 unit"),
        "CRPIX1P": (1, "reference CCD column"),
        "CRVAL1P": (box.x0 + 1, "value at reference CCD column"),
        "CDELT1P": (1.0, "physical WCS axis 1 step"),
        "CTYPE2P": ("RAWY", "physical WCS axis 2 type (CCD row)"),
        "CUNIT2P": ("PIXEL", "physical WCS axis 2 unit"),
        "CRPIX2P": (1, "reference CCD row"),
        "CRVAL2P": (box.y0 + 1, "value at reference CCD row"),
        "CDELT2P": (1.0, "physical WCS axis 2 step"),
    }


def _aperture_hdu(index: CubeIndex, box: Box, linear: WCS, msep: float, sig: float) -> fits.ImageHDU:
    aperture = np.zeros((box.ny, box.nx), dtype=np.int32)
    part = box.overlap(index.ncols, index.nrows)
    if part is not None:
        aperture[part.y0 - box.y0:part.y1 - box.y0, part.x0 - box.x0:part.x1 - box.x0] = 1
    hdu = fits.ImageHDU(data=aperture)
    header = hdu.header
    header["EXTNAME"] = "APERTURE"
    for key, value, comment in linear.to_header().cards:
        header.set(key, value, comment)
    header.update(physical_wcs_cards(box))
    header.set("NPIXMISS", None, "Number of op. aperture pixels not collected")
    header.set("NPIXSAP", None, "Number of pixels in optimal aperture")
    header["WCS_MSEP"] = (msep, "[deg] Max offset between cutout WCS and FFI WCS")
    header["WCS_SIG"] = (sig, "[deg] Error measurement of cutout WCS fit")
    header["INHERIT"] = True
    return hdu


def _apply_inherit(hdul: fits.HDUList) -> None:
    """Copy primary keywords into extensions with INHERIT = T, as astrocut does."""
    primary = hdul[0].header
    for hdu in hdul[1:]:
        if hdu.header.get("INHERIT", False):
            for key, value in primary.items():
                if key not in hdu.header and key not in _INHERIT_RESERVED:
                    hdu.header[key] = (value, primary.comments[key])


def _fitting_comment(keyword: str, value: str, comment: str) -> str:
    """``comment`` cut to what fits on one 80-byte card after ``keyword = 'value'``."""
    used = len(str(fits.Card(keyword, value)).rstrip())
    return comment[:max(0, 80 - used - 3)]
