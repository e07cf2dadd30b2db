"""Writing FFI cutouts as astrocut does: the ``CUTOUT`` image HDUs, the primary HDU, the files."""
from __future__ import annotations

import datetime as dt
import io
import os
import warnings
from typing import TYPE_CHECKING

import numpy as np
from astropy.coordinates import SkyCoord
from astropy.io import fits

from ..cutout.tpf_reference import CUBECUT_VERSION, fitting_comment, object_cards, physical_wcs_cards
from ..storage import Location, put_bytes

if TYPE_CHECKING:
    from .cut import ImageCutout

#: CD matrix keywords: an image WCS given as CD is rewritten by astropy as PC + CDELT.
_CD_KEYS = ("CD1_1", "CD1_2", "CD2_1", "CD2_2")


def cutout_hdu(cutout: ImageCutout) -> fits.ImageHDU:
    """An ``EXTNAME = 'CUTOUT'`` image HDU as astrocut's fits_cut writes it.

    The original header is kept with its WCS replaced by the cutout's (CRPIX moved), the
    physical alternate WCS ``P`` giving the 1-based FFI column/row of the first pixel,
    ``O_EXT_NM`` (original EXTNAME), ``ORIG_FLE`` (file name) and ``ORIG_EXT`` (HDU number).
    """
    header = cutout.hdu.header.copy()
    wcs_cards = cutout.wcs.to_header(relax=True)
    for key in {*wcs_cards, *_CD_KEYS, "CHECKSUM", "DATASUM", "BSCALE", "BZERO", "BLANK"}:
        header.remove(key, ignore_missing=True, remove_all=True)
    header.update(wcs_cards)
    header.update(physical_wcs_cards(cutout.box))
    header["O_EXT_NM"] = (cutout.hdu.header.get("EXTNAME"), "Original extension name.")
    header["EXTNAME"] = "CUTOUT"
    header["ORIG_FLE"] = (cutout.file, fitting_comment("ORIG_FLE", cutout.file, "Original image filename."))
    header["ORIG_EXT"] = (cutout.hdu.number, "Extension in original file.")
    if not np.isfinite(cutout.data).any():
        header["EMPTY"] = (True, "Indicates no data in cutout image.")
    return fits.ImageHDU(data=cutout.data, header=header)


def cutout_primary(coord: SkyCoord | None) -> fits.PrimaryHDU:
    """The data-less primary HDU of a cutout file (astrocut's keywords)."""
    primary = fits.PrimaryHDU()
    primary.header.extend([
        ("ORIGIN", "STScI/MAST", "institution responsible for creating this file"),
        ("DATE", str(dt.date.today()), "file creation date"),
        ("CREATOR", "cubecut", "software used to produce this file"),
        ("PROCVER", CUBECUT_VERSION, "software version"),
    ])
    if coord is not None:
        primary.header.update(object_cards(coord))
    return primary


def output_location(output_dir: str | os.PathLike[str], name: str) -> Location:
    """Where a file called ``name`` goes in a local folder or under an ``s3://`` prefix."""
    return Location.parse(output_dir).child(name)


def write_fits(hdulist: fits.HDUList, output_dir: str | os.PathLike[str], name: str) -> str:
    """Write ``hdulist`` (with checksums) as ``name`` in a local folder or under an
    ``s3://`` prefix; returns the path/URL."""
    target = output_location(output_dir, name)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fits.verify.VerifyWarning)
        hdulist.writeto(buffer, checksum=True)
    put_bytes(target, buffer.getvalue(), content_type="application/fits")
    return target.url
