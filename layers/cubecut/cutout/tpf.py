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
"""
from __future__ import annotations

import fnmatch
from importlib.metadata import PackageNotFoundError, version
from pathlib import PurePosixPath

import numpy as np
from astropy.coordinates import SkyCoord, angular_separation
from astropy.io import fits
from astropy.time import Time
from astropy.wcs import WCS

from ..cube.index import CubeIndex
from .geometry import Box, cutout_wcs, ffi_wcs

try:
    CUBECUT_VERSION = version("cubecut")
except PackageNotFoundError:  # e.g. a Lambda layer copied without its metadata
    CUBECUT_VERSION = "unknown"

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
    """The TPF of one cutout.

    Args:
        index: the cube's index.
        box: the cutout box (0-based FFI pixels; may extend off the image).
        flux, flux_err: ``(nt, ny, nx)`` arrays from :func:`.reader.read_box` (NaN off-image).
        coord: the requested target position (written as RA_OBJ/DEC_OBJ).
        cube_name: the cube's file name (for messages).
    """
    if flux.shape != (index.nt, box.ny, box.nx) or flux_err.shape != flux.shape:
        raise ValueError(f"{cube_name}: pixel arrays {flux.shape}/{flux_err.shape} do not match "
                         f"the {box.nx}x{box.ny} box and {index.nt} frames")
    linear, msep, sig = fit_linear_wcs(cutout_wcs(ffi_wcs(index), box), box.nx, box.ny)

    primary = fits.PrimaryHDU(header=_primary_header(index, coord))
    pixels = _pixels_hdu(index, box, flux, flux_err, linear)
    aperture = _aperture_hdu(index, box, linear, msep, sig)
    hdul = fits.HDUList([primary, pixels, aperture])
    _apply_inherit(hdul)
    return hdul


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
    gx, gy = np.meshgrid(np.linspace(-0.5, nx - 0.5, min(nx + 1, FIT_GRID)),
                         np.linspace(-0.5, ny - 0.5, min(ny + 1, FIT_GRID)))
    ra, dec = wcs.all_pix2world(gx.ravel(), gy.ravel(), 0)
    crval = np.ravel(wcs.all_pix2world((nx - 1) / 2, (ny - 1) / 2, 0))

    linear = WCS(naxis=2)
    linear.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    linear.wcs.cunit = ["deg", "deg"]
    linear.wcs.radesys = wcs.wcs.radesys or "ICRS"
    linear.wcs.crval = crval
    linear.wcs.crpix = [0.0, 0.0]
    linear.wcs.cd = np.eye(2)
    # With CRPIX 0, CD = I and origin 1, "pixel" coordinates are the tangent-plane ones (deg).
    plane = np.column_stack(linear.wcs_world2pix(ra, dec, 1))
    design = np.column_stack([gx.ravel(), gy.ravel(), np.ones(gx.size)])
    solution = np.linalg.lstsq(design, plane, rcond=None)[0]
    cd, offset = solution[:2].T, solution[2]
    # plane = cd @ p0 + offset with p0 0-based; FITS: plane = cd @ (p0 + 1 - crpix).
    linear.wcs.cd = cd
    linear.wcs.crpix = 1.0 - np.linalg.solve(cd, offset)

    px, py = np.meshgrid(np.arange(nx), np.arange(ny))
    true_ra, true_dec = wcs.all_pix2world(px.ravel(), py.ravel(), 0)
    fit_ra, fit_dec = linear.wcs_pix2world(px.ravel(), py.ravel(), 0)
    seps = np.degrees(angular_separation(*np.radians([true_ra, true_dec, fit_ra, fit_dec])))
    return linear, float(seps.max()), float(np.sqrt(np.sum(seps ** 2)))


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
        "RA_OBJ": (coord.ra.deg, "[deg] right ascension"),
        "DEC_OBJ": (coord.dec.deg, "[deg] declination"),
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


def _pixels_hdu(index: CubeIndex, box: Box, flux: np.ndarray, flux_err: np.ndarray,
                linear: WCS) -> fits.BinTableHDU:
    times = index.time_arrays()
    nt, npix = index.nt, box.nx * box.ny
    image = {"format": f"{npix}E", "dim": f"({box.nx}, {box.ny})", "unit": "e-/s", "disp": "E14.7"}
    zeros = np.zeros_like(flux)
    names = index.ffi_files
    cols = [
        fits.Column(name="TIME", format="D", unit="BJD - 2457000, days", disp="D14.7",
                    array=(times["tstart"] + times["tstop"]) / 2),
        fits.Column(name="TIMECORR", format="E", unit="d", disp="E14.7", array=times["barycorr"]),
        fits.Column(name="CADENCENO", format="J", disp="I10",
                    array=np.asarray(index.cadence if len(index.cadence) == nt else np.zeros(nt), dtype=np.int32)),
        fits.Column(name="RAW_CNTS", format=f"{npix}J", unit="count", dim=image["dim"], disp="I8",
                    array=np.full(flux.shape, -1, dtype=np.int32), null=-1),
        fits.Column(name="FLUX", array=flux, **image),
        fits.Column(name="FLUX_ERR", array=flux_err, **image),
        fits.Column(name="FLUX_BKG", array=zeros, **image),
        fits.Column(name="FLUX_BKG_ERR", array=zeros, **image),
        fits.Column(name="QUALITY", format="J", disp="B16.16", array=times["quality"]),
        fits.Column(name="POS_CORR1", format="E", unit="pixel", disp="E14.7", array=np.zeros(nt, np.float32)),
        fits.Column(name="POS_CORR2", format="E", unit="pixel", disp="E14.7", array=np.zeros(nt, np.float32)),
        fits.Column(name="FFI_FILE", format=f"{max([1, *map(len, names)])}A", unit="pixel",
                    array=np.array(names)),
    ]
    hdu = fits.BinTableHDU.from_columns(cols)
    header = hdu.header
    header["EXTNAME"] = "PIXELS"
    header["INHERIT"] = True
    for key in list(header.keys()):
        for prefix, comment in _COLUMN_COMMENTS:
            if key.startswith(prefix):
                header.comments[key] = comment
                break
    column_wcs = _column_wcs_cards(linear, box)
    for number in range(1, header["TFIELDS"]):
        if f"TDIM{number}" in header:
            for key, value, comment in column_wcs:
                header.insert(f"TTYPE{number + 1}", (key.format(number), value, comment))
    frame = index.wcs_fits_header()
    for key, comment in _IMAGE_KEYWORDS.items():
        header[key] = (frame.get(key), comment)
    # A 44-character SPOC name leaves no room for the comment on the 80-byte card
    # (astropy would truncate it with a warning, which is what astrocut's files show).
    header["WCS_FFI"] = (names[index.wcs_row], _fitting_comment("WCS_FFI", names[index.wcs_row],
                                                                "FFI used for cutout WCS"))
    return hdu


def _column_wcs_cards(linear: WCS, box: Box) -> list[tuple[str, object, str]]:
    """The per-column WCS keywords (``{}`` = column number) of a pipeline TPF image column."""
    w = linear.to_header()
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
