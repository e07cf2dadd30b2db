"""What a cutout's target pixel file (TPF) holds, defined card by card: the reference writer.

The TPF is astrocut 1.3.0's layout, minus its bugs.

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

Two writers, one content: :func:`reference_tpf` assembles the TPF as astropy HDUs card by
card, and :mod:`.tpf` writes the same file byte for byte, in milliseconds (see there).
Product differences (SPOC/TICA) are data: :data:`PRODUCT_CARDS`.
"""
from __future__ import annotations

import fnmatch
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.time import Time
from astropy.wcs import WCS

from .._version import __version__
from ..cube.index import CubeIndex
from .geometry import Box, cutout_wcs, ffi_wcs, fit_linear_wcs, radec_deg, wcs_header_values


#: Written to every TPF's PROCVER; the same in a Lambda layer as in an installed wheel.
CUBECUT_VERSION = __version__

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
    **{f"GAIN{output}": f"[electrons/count] CCD output {output} gain" for output in "ABCD"},
    "INT_TIME": "[s] photon accumulation time per frame",
    "LIVETIME": "[d] TELAPSE multiplied by DEADC",
    **{f"MEANBLC{output}": f"[count] FSW mean black level CCD output {output}" for output in "ABCD"},
    "NREADOUT": "number of read per cadence",
    "NUM_FRM": "number of frames per time stamp",
    **{f"READNOI{output}": f"[electrons] read noise CCD output {output}" for output in "ABCD"},
    "READTIME": "[s] readout time per frame",
    "TIERRELA": "[d] relative time error",
    "TIMEDEL": "[d] time resolution of data",
    "TIMEPIXR": "bin time beginning=0 middle=0.5 end=1",
    "TMOFST11": "(s) readout delay for camera 1 and ccd 1",
    "VIGNAPP": "vignetting or collimator correction applied",
}

#: Comments of the table's per-column keywords (``TTYPEn`` ...), by keyword without its number.
_COLUMN_COMMENTS = {"TTYPE": "column name", "TFORM": "column format", "TUNIT": "unit", "TDISP": "display format",
                    "TDIM": "multi-dimensional array spec", "TNULL": "null value"}

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


def reference_tpf(index: CubeIndex, box: Box, flux: np.ndarray, flux_err: np.ndarray, coord: SkyCoord,
                  *, cube_name: str = "the cube") -> fits.HDUList:
    """The TPF assembled card by card as astropy HDUs: the definition of its content.

    Slow (~100 ms for 30x30x1,000 frames, most of it astropy card handling). The fast
    writer's per-cube header template is this function's output for a 1x1 cutout, and the
    tests check that :func:`tpf_bytes` equals its ``writeto(checksum=True)`` for any box.
    """
    check_shapes(index, box, flux, flux_err, cube_name)
    linear, msep, sig = fit_linear_wcs(cutout_wcs(ffi_wcs(index), box), box.nx, box.ny)

    primary = fits.PrimaryHDU(header=_primary_header(index, coord))
    pixels = _pixels_hdu(index, box, flux, flux_err, linear)
    aperture = _aperture_hdu(index, box, linear, msep, sig)
    hdul = fits.HDUList([primary, pixels, aperture])
    _apply_inherit(hdul)
    return hdul


def check_shapes(index: CubeIndex, box: Box, flux: np.ndarray, flux_err: np.ndarray, cube_name: str) -> None:
    if flux.shape != (index.nt, box.ny, box.nx) or flux_err.shape != flux.shape:
        raise ValueError(f"{cube_name}: pixel arrays {flux.shape}/{flux_err.shape} do not match "
                         f"the {box.nx}x{box.ny} box and {index.nt} frames")


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


@dataclass(frozen=True)
class ProductCards:
    """How one FFI product's TPF primary header differs from another's."""

    #: TIMEREF and TASSIGN (None: undefined, for times that are not barycentric).
    timeref: str | None
    tassign: str | None
    #: Comments given to kept keywords inherited from the first/last FFI.
    inherited_comments: Mapping[str, str]
    #: Cards added from the cube's primary header (before astrocut's keywords are dropped).
    added: Callable[[fits.Header], dict[str, tuple[object, str]]]


#: Per ``CubeIndex.product``: its primary header's differences.
PRODUCT_CARDS = {
    "SPOC": ProductCards("SOLARSYSTEM", "SPACECRAFT", _INHERITED_COMMENTS, lambda _header: {}),
    "TICA": ProductCards(None, None, {}, _tica_keywords),
}


def _primary_header(index: CubeIndex, coord: SkyCoord) -> fits.Header:
    header = fits.Header.fromstring(index.primary_header)
    product = PRODUCT_CARDS.get(index.product, PRODUCT_CARDS["SPOC"])  # an index's product is one of them
    header.update({
        "CREATOR": ("cubecut", "software used to produce this file"),
        "PROCVER": (CUBECUT_VERSION, "software version"),
        "FFI_TYPE": (index.product, "the FFI type used to make the cutouts"),
        **object_cards(coord),
        "TIMEREF": (product.timeref, "barycentric correction applied to times"),
        "TASSIGN": (product.tassign, "where time is assigned"),
        "TIMESYS": ("TDB", "time system is Barycentric Dynamical Time (TDB)"),
        "BJDREFI": (2457000, "integer part of BTJD reference date"),
        "BJDREFF": (0.00000000, "fraction of the day in BTJD reference date"),
        "TIMEUNIT": ("d", "time unit for TIME, TSTART, and TSTOP"),
    })
    header.update(product.added(header))
    for key in [k for k in dict.fromkeys(header.keys())
                if any(fnmatch.fnmatchcase(k, pattern) for pattern in _DROP_PRIMARY)]:
        header.remove(key, remove_all=True)
    header["TELAPSE"] = (header.get("TSTOP", 0) - header.get("TSTART", 0), "[d] TSTOP - TSTART")
    if "DATE" in header:
        header["DATE"] = (header["DATE"], "FFI cube creation date")
    for key, comment in product.inherited_comments.items():
        if key in header:
            header[key] = (header[key], comment)
    header.update(_TARGET_PLACEHOLDERS)
    return header


def object_cards(coord: SkyCoord) -> dict[str, tuple[object, str]]:
    """The target's position cards (primary, and inherited by the extensions)."""
    ra, dec = radec_deg(coord)
    return {"RA_OBJ": (ra, "[deg] right ascension"), "DEC_OBJ": (dec, "[deg] declination")}


def _pixels_hdu(index: CubeIndex, box: Box, flux: np.ndarray, flux_err: np.ndarray,
                linear: WCS) -> fits.BinTableHDU:
    nt, npix = index.nt, box.nx * box.ny
    arrays = {**per_frame_columns(index), "RAW_CNTS": np.full(flux.shape, -1, dtype=np.int32),
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
        if key.rstrip("0123456789") in _COLUMN_COMMENTS:
            header.comments[key] = _COLUMN_COMMENTS[key.rstrip("0123456789")]
    column_wcs = _column_wcs_cards(linear.to_header(), box)
    for number in range(1, header["TFIELDS"]):
        if f"TDIM{number}" in header:
            for key, value, comment in column_wcs:
                header.insert(f"TTYPE{number + 1}", (key.format(number), value, comment))
    frame = fits.Header.fromstring(index.wcs_header)
    for key, comment in _IMAGE_KEYWORDS.items():
        header[key] = (frame.get(key), comment)
    # A 44-character SPOC name leaves no room for the comment on the 80-byte card
    # (astropy would truncate it with a warning, which is what astrocut's files show).
    name = index.ffi_files[index.wcs_row]
    header["WCS_FFI"] = (name, fitting_comment("WCS_FFI", name, "FFI used for cutout WCS"))
    return hdu


def per_frame_columns(index: CubeIndex) -> dict[str, np.ndarray]:
    """The PIXELS columns that are the same for every cutout of the cube (others are 0)."""
    times = index.time_arrays()
    width = max([1, *map(len, index.ffi_files)])
    cadence = index.cadence if len(index.cadence) == index.nt else [0] * index.nt  # older sidecars: none
    return {"TIME": (times["tstart"] + times["tstop"]) / 2, "TIMECORR": times["barycorr"],
            "CADENCENO": np.asarray(cadence, dtype=np.int32), "QUALITY": times["quality"],
            "FFI_FILE": np.array(index.ffi_files, dtype=f"S{width}")}


@lru_cache(maxsize=256)
def row_dtype(name_width: int, nx: int, ny: int) -> np.dtype:
    """One PIXELS row as FITS stores it: packed, big-endian, image columns ``(ny, nx)``."""
    fields: list[tuple] = []
    for name, code, _, _, per_pixel in _COLUMNS:
        if code == "A":
            fields.append((name, f"S{name_width}"))
        else:
            fields.append((name, _DTYPES[code], (ny, nx)) if per_pixel else (name, _DTYPES[code]))
    return np.dtype(fields)


def target_values(box: Box, fit: tuple[WCS, float, float], coord: SkyCoord,
                   row_bytes: int) -> tuple[dict[str, object], dict[str, object], dict[str, object]]:
    """The values of the cards that may differ between cutouts of one cube, per HDU (the
    template holds every other card, and these cards' comments). ``row_bytes``: the
    PIXELS table's NAXIS1."""
    linear, msep, sig = fit
    target = {key: value for key, (value, _) in object_cards(coord).items()}
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


def fitting_comment(keyword: str, value: str, comment: str) -> str:
    """``comment`` cut to what fits on one 80-byte card after ``keyword = 'value'``."""
    used = len(str(fits.Card(keyword, value)).rstrip())
    return comment[:max(0, 80 - used - 3)]

