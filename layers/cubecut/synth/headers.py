"""FITS headers and file names of synthetic SPOC and TICA FFIs, modelled on real ones.

SPOC (``tess{YYYYDDDHHMMSS}-s{ssss}-{cam}-{ccd}-{scconfig:04d}-s_ffic.fits``):
HDU0 header only; HDU1 calibrated flux (e-/s) and HDU2 its uncertainty, both with the
full time, detector and WCS keyword set. HDU1/HDU2 carry no COMMENT/HISTORY cards and no
empty strings (astrocut's CubeFactory turns every card into a table column), and every
string keyword has the same length in every frame.

TICA (``hlsp_tica_tess_ffi_s{ssss}-o{orbit}-{cadence:08d}-cam{cam}-ccd{ccd}_tess_v01_img.fits``):
a single primary HDU holding image (electrons per exposure) and header; times are
STARTTJD/MIDTJD/ENDTJD, quality is QUAL_BIT, and like real TICA files there is no SECTOR
keyword (the sector is in the file name). What astrocut <= 1.2 needs from these files:
``TicaCubeFactory`` sorts by STARTTJD, takes ENDTJD from the last file and CAMNUM/CCDNUM
from the first, reads the image from HDU0 and uses as table template the first file whose
HDU0 has NAXIS = 2 (COMMENT cards are fine there: it str()s them); ``CutoutFactory`` with
product='TICA' further reads CRM, CADENCE, QUAL_BIT and the per-row WCS
(CTYPE2 = 'DEC--TAN-SIP').
"""
from __future__ import annotations

from .detector import FIXED_OFFSET, GAIN, MEAN_BLACK, OUTPUTS, READ_NOISE, reads_per_ffi
from .geometry import SCIENCE_COLS, SCIENCE_ROWS, Card
from .sector import BJDREFI, CRM_BLOCK, DEADC, INT_TIME_S, READTIME_S, Sector
from .timing import GPS_EPOCH_JD, FrameTimes


def spoc_name(sector: Sector, times: FrameTimes, i: int) -> str:
    """SPOC file name of frame ``i`` of ``times``; the timestamp is DATE-END (UTC) to the second."""
    return (f"tess{times.stamp[i]}-s{sector.sector:04d}-{sector.camera}-{sector.ccd}"
            f"-{sector.scconfig:04d}-s_ffic.fits")


def tica_name(sector: Sector, times: FrameTimes, i: int) -> str:
    """TICA file name of frame ``i`` of ``times`` (orbit 1/2 within the sector, cadence counter)."""
    return (f"hlsp_tica_tess_ffi_s{sector.sector:04d}-o{sector.orbit(times.tstart[i])}"
            f"-{int(times.cadenceno[i]):08d}-cam{sector.camera}-ccd{sector.ccd}_tess_v01_img.fits")


def spoc_primary_cards(sector: Sector, times: FrameTimes, i: int) -> list[Card]:
    """The cards of a SPOC FFI's HDU0 header, in order (SIMPLE/BITPIX=8/NAXIS=0/EXTEND are
    added by astropy)."""
    return [
        ("NEXTEND", 2, "number of standard extensions"),
        ("EXTNAME", "PRIMARY", "name of extension"),
        ("EXTVER", 1, "extension version number (not format version)"),
        ("SIMDATA", True, "file is based on simulated data"),
        ("ORIGIN", "NASA/Ames", "institution responsible for creating this file"),
        ("DATE", sector.processing_date, "file creation date."),
        ("TSTART", float(times.tstart[i]), "observation start time in TJD"),
        ("TSTOP", float(times.tstop[i]), "observation stop time in TJD"),
        ("DATE-OBS", times.date_obs[i], "TSTART as UTC calendar date"),
        ("DATE-END", times.date_end[i], "TSTOP as UTC calendar date"),
        ("CREATOR", "cubecut FfiExporter", "pipeline job and program used to produce this"),
        ("PROCVER", "spoc-synthetic-1.0", "SW version"),
        ("FILEVER", "1.0", "file format version"),
        ("TIMVERSN", "OGIP/93-003", "OGIP memo number for file format"),
        ("TELESCOP", "TESS", "telescope"),
        ("INSTRUME", "TESS Photometer", "detector type"),
        ("DATA_REL", sector.sector, "data release version number"),
        ("SCCONFIG", sector.scconfig, "spacecraft configuration ID"),
        ("FFIINDEX", int(times.cadenceno[i]), "number of FFI cadence interval"),
        ("CAMERA", sector.camera, "Camera number"),
        ("CCD", sector.ccd, "CCD chip number"),
        ("RADESYS", "ICRS", "reference frame of celestial coordinates"),
        ("CRMITEN", True, "spacecraft cosmic ray mitigation enabled"),
        ("CRBLKSZ", CRM_BLOCK, "[exposures] s/c cosmic ray mitigation block siz"),
        ("CRSPOC", False, "SPOC cosmic ray cleaning enabled"),
    ]


def _per_output(keyword: str, values: dict, comment: str) -> list[Card]:
    return [(f"{keyword}{o}", values[o], comment.format(o)) for o in OUTPUTS]


def spoc_image_cards(sector: Sector, times: FrameTimes, i: int, wcs_cards: list[Card], kind: str) -> list[Card]:
    """The cards of HDU1 (``kind='cal'``) or HDU2 (``kind='uncert'``) of a SPOC FFI, in order.

    Times in BTJD days; EXPOSURE/LIVETIME are the effective on-source time in days;
    the celestial WCS (1-based CRPIX on the full FFI grid) comes from ``wcs_cards``; the
    physical WCS 'P' maps array pixel (1-based) n to CCD pixel n.
    """
    telapse = sector.cadence_d
    return [
        ("INHERIT", True, "inherit the primary header"),
        ("EXTNAME", f"CAMERA.CCD {sector.camera}.{sector.ccd} {kind}", "extension name"),
        ("EXTVER", 1, "extension version number (not format version)"),
        ("SIMDATA", True, "file is based on simulated data"),
        ("TELESCOP", "TESS", "telescope"),
        ("INSTRUME", "TESS Photometer", "detector type"),
        ("CAMERA", sector.camera, "Camera number"),
        ("CCD", sector.ccd, "CCD chip number"),
        ("EXPOSURE", sector.exposure_s / 86400.0, "[d] time on source"),
        ("TIMEREF", "SOLARSYSTEM", "barycentric correction applied to times"),
        ("TASSIGN", "SPACECRAFT", "where time is assigned"),
        ("TIMESYS", "TDB", "time system is Barycentric Dynamical Time (TDB)"),
        ("BJDREFI", BJDREFI, "integer part of BTJD reference date"),
        ("BJDREFF", 0.0, "fraction of the day in BTJD reference date"),
        ("TIMEUNIT", "d", "time unit for TIME, TSTART and TSTOP"),
        ("TELAPSE", telapse, "[d] TSTOP - TSTART"),
        ("LIVETIME", telapse * DEADC, "[d] TELAPSE multiplied by DEADC"),
        ("TSTART", float(times.tstart[i]), "observation start time in TJD"),
        ("TSTOP", float(times.tstop[i]), "observation stop time in TJD"),
        ("DATE-OBS", times.date_obs[i], "TSTART as UTC calendar date"),
        ("DATE-END", times.date_end[i], "TSTOP as UTC calendar date"),
        ("DEADC", DEADC, "deadtime correction"),
        ("TIMEPIXR", 0.5, "bin time beginning=0 middle=0.5 end=1"),
        ("TIERRELA", 1.16e-05, "[d] relative time error"),
        ("INT_TIME", INT_TIME_S, "[s] photon accumulation time per frame"),
        ("READTIME", READTIME_S, "[s] readout time per frame"),
        ("FRAMETIM", INT_TIME_S + READTIME_S, "[s] frame time (INT_TIME + READTIME)"),
        ("NUM_FRM", sector.num_frames, "number of frames per time stamp"),
        ("TIMEDEL", sector.cadence_d, "[d] time resolution of data"),
        ("BACKAPP", False, "background is subtracted"),
        ("DEADAPP", True, "deadtime applied"),
        ("VIGNAPP", True, "vignetting or collimator correction applied"),
        *_per_output("GAIN", GAIN, "[electrons/count] CCD output {} gain"),
        *_per_output("READNOI", READ_NOISE, "[electrons] read noise CCD output {}"),
        ("NREADOUT", reads_per_ffi(sector), "number of read per cadence"),
        ("FXDOFF", FIXED_OFFSET, "compression fixed offset"),
        *_per_output("MEANBLC", MEAN_BLACK, "[count] FSW mean black level CCD output {}"),
        ("RADESYS", "ICRS", "reference frame of celestial coordinates"),
        ("EQUINOX", 2000.0, "equinox of celestial coordinate system"),
        ("WCSAXES", 2, "number of WCS axes"),
        *wcs_cards,
        ("WCSNAMEP", "PHYSICAL", "name of world coordinate system alternate P"),
        ("WCSAXESP", 2, "number of WCS physical axes"),
        ("CTYPE1P", "RAWX", "physical WCS axis 1 type CCD col"),
        ("CUNIT1P", "PIXEL", "physical WCS axis 1 unit"),
        ("CRPIX1P", 1, "reference CCD column"),
        ("CRVAL1P", 1, "value at reference CCD column"),
        ("CDELT1P", 1.0, "physical WCS axis 1 step"),
        ("CTYPE2P", "RAWY", "physical WCS axis 2 type CCD row"),
        ("CUNIT2P", "PIXEL", "physical WCS axis 2 units"),
        ("CRPIX2P", 1, "reference CCD row"),
        ("CRVAL2P", 1, "value at reference CCD row"),
        ("CDELT2P", 1.0, "physical WCS axis 2 step"),
        ("BUNIT", "electrons/s", "physical units of image data"),
        ("DQUALITY", int(times.quality[i]), "data quality flags"),
        ("IMAGTYPE", kind, "FFI image type: raw, cal, uncert"),
        ("BARYCORR", float(times.barycorr[i]), "[d] barycentric time correction"),
    ]


def tica_cards(sector: Sector, times: FrameTimes, i: int, wcs_cards: list[Card]) -> list[Card]:
    """The cards of a TICA FFI's primary header, in order (structural keywords are added by astropy).

    STARTTJD/MIDTJD/ENDTJD are TJD days (the same time scale as the SPOC frames here);
    EXPTIME is the effective exposure in seconds, by which the image (electrons) is the
    SPOC rate (e-/s) multiplied; TIME counts seconds since the GPS epoch.
    """
    start, stop = float(times.tstart[i]), float(times.tstop[i])
    roll = round((sector.roll + 180.0) % 360.0 - 180.0, 6)
    return [
        ("CRM_N", CRM_BLOCK, "Window for CRM min/max rejection"),
        ("ORBIT_ID", sector.orbit_id(start), "Orbit ID, not a physical orbit"),
        ("ACS_MODE", "FP", "Attitude Control System mode"),
        ("SC_RA", sector.ra, "Predicted RA"),
        ("SC_DEC", sector.dec, "Predicted Dec"),
        ("SC_ROLL", roll, "Predicted roll"),
        ("TJD_ZERO", float(BJDREFI), "JD-TDB epoch for which TJD = 0"),
        ("STARTTJD", start, "Beginning of integration in TJD (days)"),
        ("MIDTJD", 0.5 * (start + stop), "Mid TJD of exposures"),
        ("ENDTJD", stop, "End of integration in TJD"),
        ("EXPTIME", sector.exposure_s, "Effective exposures corrected for CRM"),
        ("INT_TIME", int(round(sector.cadence_s)), "Seconds of integration"),
        ("PIX_CAT", 0, "ADHU target pixel bitmask ID"),
        ("REQUANT", 406, "Requant table id"),
        ("DIFF_HUF", 402, "Huffman table for differenced data"),
        ("PRIM_HUF", 17, "Huffman table for undifferenced data"),
        ("QUAL_BIT", int(times.quality[i]), "Quality flags"),
        ("SPM", 2, "SPM number (0, 1, 2, 3)"),
        ("TIME", (start + BJDREFI - GPS_EPOCH_JD) * 86400.0, "Beginning of integration in SCT (seconds)"),
        ("CADENCE", int(times.cadenceno[i]), "Cadence number since start of data collection"),
        ("CRM", True, "Whether or not cosmic ray were mitigated"),
        ("CAMNUM", sector.camera, "Camera Number"),
        ("CCDNUM", sector.ccd, "CCD number"),
        ("SCIPIXS", f"[{SCIENCE_COLS[0] + 1}:{SCIENCE_COLS[1]}"
                    f",{SCIENCE_ROWS[0] + 1}:{SCIENCE_ROWS[1]}]", "science pixels (1-based, inclusive)"),
        *[(f"GAIN_{o}", GAIN[o], f"e/ADU for CCD Sector {o}") for o in OUTPUTS],
        ("UNITS", "electrons", "Units (ADU or electrons)"),
        ("TICAVER", "0.2.1", "tica software version"),
        ("EQUINOX", 2000.0, "equinox of celestial coordinate system"),
        ("INSTRUME", "TESS Photometer", "detector type"),
        ("TELESCOP", "TESS", "telescope"),
        ("FILTER", "TESS", "filter"),
        ("MJD-BEG", start + BJDREFI - 2400000.5, "[d] MJD at start of integration"),
        ("MJD-END", stop + BJDREFI - 2400000.5, "[d] MJD at end of integration"),
        *wcs_cards,
        ("RA_TARG", float(sector.wcs.wcs.crval[0]), "[deg] RA at the reference pixel"),
        ("DEC_TARG", float(sector.wcs.wcs.crval[1]), "[deg] Dec at the reference pixel"),
        ("COMMENT", f"calibration applied at {sector.processing_date}T00:00:00", ""),
    ]
