"""The TESS FFI pixel grid and the real per-sector WCS that tesswcs provides.

Pixel conventions used throughout ``cubecut.synth``:

- numpy index ``image[row, col]`` is the pixel whose centre is at 0-based pixel
  coordinates ``x = col``, ``y = row`` (astropy's ``world_to_pixel`` / origin 0);
  pixel ``(x, y)`` covers ``[x - 0.5, x + 0.5) x [y - 0.5, y + 0.5)``.
- FITS keywords (CRPIX, CRPIX1P, ...) are 1-based, as FITS requires.

A SPOC FFI array is 2136 columns x 2078 rows. Only columns 44..2091 and rows 0..2047
(0-based) see the sky; the 44 leading and 44 trailing columns and the 30 top rows are
collateral (virtual, buffer and smear) pixels. ``tesswcs.WCS.from_sector`` describes that
full array, collateral included, exactly as the real SPOC headers do (CRPIX = (1045, 1001)
1-based, i.e. 0-based pixel (1044, 1000)): its linear part comes from the archived SPOC
WCS of that sector/camera/CCD, its SIP part is tesswcs' average over all sectors for that
camera/CCD. The synthetic headers carry that WCS unchanged, so no pixel offset is applied.
"""
from __future__ import annotations

import logging

import numpy as np
from astropy.wcs import WCS
from numpy.polynomial.polynomial import polyval2d

from ..errors import InputError

#: Full SPOC FFI array shape in numpy order (rows, cols).
FFI_SHAPE: tuple[int, int] = (2078, 2136)
#: 0-based [start, stop) of the rows and columns that see the sky.
SCIENCE_ROWS: tuple[int, int] = (0, 2048)
SCIENCE_COLS: tuple[int, int] = (44, 2092)

#: A header card: (keyword, value, comment).
Card = tuple[str, object, str]


def crop_shape(shape: tuple[int, int] | None) -> tuple[int, int]:
    """Validate a crop ``(rows, cols)``; ``None`` means the whole FFI."""
    if shape is None:
        return FFI_SHAPE
    rows, cols = (int(v) for v in shape)
    if not (1 <= rows <= FFI_SHAPE[0] and 1 <= cols <= FFI_SHAPE[1]):
        raise InputError(f"shape {shape!r} must lie within the FFI's {FFI_SHAPE} (rows, cols)")
    return rows, cols


def science_mask(shape: tuple[int, int]) -> np.ndarray:
    """Boolean image, True where the pixel of the ``shape`` crop (from row 0, col 0) sees the sky."""
    mask = np.zeros(shape, dtype=bool)
    mask[slice(*SCIENCE_ROWS), slice(*SCIENCE_COLS)] = True
    return mask


def sector_wcs(sector: int, camera: int, ccd: int) -> WCS:
    """The tesswcs WCS of one sector/camera/CCD on the full FFI grid (see module docstring).

    Sectors that tesswcs has not archived yet get its predicted WCS (tesswcs logs a warning,
    silenced here); sectors without a pointing raise ``InputError``.
    """
    if camera not in (1, 2, 3, 4) or ccd not in (1, 2, 3, 4):
        raise InputError(f"camera and ccd must be 1-4, got camera={camera}, ccd={ccd}")
    import tesswcs  # here, not at module level: importing tesswcs takes seconds

    tess_log = logging.getLogger("tesswcs")
    level = tess_log.level
    tess_log.setLevel(logging.ERROR)
    try:
        return tesswcs.WCS.from_sector(sector=int(sector), camera=int(camera), ccd=int(ccd))
    except ValueError as exc:
        raise InputError(f"no TESS pointing known for sector {sector}: {exc}") from exc
    finally:
        tess_log.setLevel(level)


def _sip_cards(prefix: str, coeffs: np.ndarray, order: int) -> list[Card]:
    """``{prefix}_ORDER`` and the non-zero ``{prefix}_p_q`` coefficients (u**p * v**q)."""
    cards: list[Card] = [
        (f"{prefix}_ORDER", int(order), f"polynomial order, axis {1 if prefix in ('A', 'AP') else 2}")
    ]
    for p in range(order + 1):
        for q in range(order + 1 - p):
            value = float(coeffs[p, q])
            if value != 0.0:
                cards.append((f"{prefix}_{p}_{q}", value, "distortion coefficient"))
    return cards


def _sip_dmax(wcs: WCS) -> tuple[float, float]:
    """Largest forward SIP correction (pixels) over the full FFI, per axis (A_DMAX, B_DMAX)."""
    x = np.linspace(0, FFI_SHAPE[1] - 1, 64)
    y = np.linspace(0, FFI_SHAPE[0] - 1, 64)
    xx, yy = np.meshgrid(x, y)
    # SIP offsets are relative to CRPIX (1-based); pixel x (0-based) is FITS pixel x + 1.
    u = xx + 1 - wcs.wcs.crpix[0]
    v = yy + 1 - wcs.wcs.crpix[1]
    return (
        float(np.abs(polyval2d(u, v, wcs.sip.a)).max()),
        float(np.abs(polyval2d(u, v, wcs.sip.b)).max()),
    )


def wcs_cards(wcs: WCS) -> list[Card]:
    """Header cards ``(keyword, value, comment)`` for a celestial TAN-SIP WCS, SPOC style.

    The linear part is written as a CD matrix (CD_ij = CDELT_i * PC_ij); CRPIX stays 1-based
    on the full FFI grid. A_DMAX/B_DMAX give the largest SIP correction in pixels.
    """
    cd = wcs.wcs.cdelt[:, None] * wcs.wcs.get_pc()
    ctype = list(wcs.wcs.ctype)
    cards: list[Card] = [
        ("CTYPE1", ctype[0], "Gnomonic projection + SIP distortions"),
        ("CTYPE2", ctype[1], "Gnomonic projection + SIP distortions"),
        ("CRVAL1", float(wcs.wcs.crval[0]), "RA at CRPIX1, CRPIX2"),
        ("CRVAL2", float(wcs.wcs.crval[1]), "DEC at CRPIX1, CRPIX2"),
        ("CRPIX1", float(wcs.wcs.crpix[0]), "X reference pixel"),
        ("CRPIX2", float(wcs.wcs.crpix[1]), "Y reference pixel"),
        ("CD1_1", float(cd[0, 0]), "Transformation matrix"),
        ("CD1_2", float(cd[0, 1]), "Transformation matrix"),
        ("CD2_1", float(cd[1, 0]), "Transformation matrix"),
        ("CD2_2", float(cd[1, 1]), "Transformation matrix"),
    ]
    sip = wcs.sip
    if sip is not None:
        cards += _sip_cards("A", sip.a, sip.a_order)
        cards += _sip_cards("B", sip.b, sip.b_order)
        cards += _sip_cards("AP", sip.ap, sip.ap_order)
        cards += _sip_cards("BP", sip.bp, sip.bp_order)
        a_dmax, b_dmax = _sip_dmax(wcs)
        cards += [
            ("A_DMAX", a_dmax, "maximum distortion, axis 1"),
            ("B_DMAX", b_dmax, "maximum distortion, axis 2"),
        ]
    return cards
