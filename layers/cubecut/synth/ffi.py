"""``make_sector``: write a run of synthetic SPOC or TICA FFIs of one sector/camera/CCD.

Per call the star field is rendered once; per frame the variable stars, the background of
that time and fresh noise (from a generator of that frame's own) are added, and the file is
written before the next frame is made, so memory stays at a few images whatever the count.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from astropy.io import fits
from tqdm import tqdm

from ..errors import InputError
from ..storage import writable_folder
from .detector import column_read_noise, noise_sigma, standard_normal
from .geometry import Card, crop_shape, wcs_cards
from .headers import spoc_image, spoc_name, spoc_primary, tica_header, tica_name
from .scene import Scene
from .sector import Sector, load_sector
from .stars import catalog_table, write_catalog
from .timing import FrameTimes, frame_times

PRODUCTS = ("spoc", "tica")
CATALOG_NAME = "stars.ecsv"


def _with_checksums(hdus: fits.HDUList, when: str) -> fits.HDUList:
    """Add DATASUM and CHECKSUM to every HDU with astropy's usual comments but a fixed time
    ``when`` (ISO), so that files are byte-for-byte reproducible."""
    hdus.update_extend()
    for hdu in hdus:
        hdu.add_datasum(when=f"data unit checksum updated {when}")
        hdu.add_checksum(when=f"HDU checksum updated {when}", override_datasum=True)
    return hdus


def _spoc_file(sector: Sector, times: FrameTimes, i: int, cards: list[Card],
               flux: np.ndarray, sigma: np.ndarray) -> tuple[str, fits.HDUList]:
    """File name and HDUs of SPOC frame ``i``: flux and uncertainty in e-/s."""
    hdus = fits.HDUList([
        fits.PrimaryHDU(header=spoc_primary(sector, times, i)),
        fits.ImageHDU(flux, header=spoc_image(sector, times, i, cards, "cal")),
        fits.ImageHDU(sigma, header=spoc_image(sector, times, i, cards, "uncert")),
    ])
    return spoc_name(sector, times, i), hdus


def _tica_file(sector: Sector, times: FrameTimes, i: int, cards: list[Card],
               flux: np.ndarray, sigma: np.ndarray) -> tuple[str, fits.HDUList]:
    """TICA has no error image: ``sigma`` is ignored; the image is in electrons per exposure."""
    electrons = flux * np.float32(sector.exposure_s)
    hdus = fits.HDUList([fits.PrimaryHDU(electrons, header=tica_header(sector, times, i, cards))])
    return tica_name(sector, times, i), hdus


def make_sector(outdir: str | Path, *, sector: int, camera: int, ccd: int, frames: int,
                shape: tuple[int, int] | None = None, product: str = "spoc", seed: int = 0,
                first_frame: int = 0, progress: bool = False) -> list[Path]:
    """Write frames ``first_frame .. first_frame + frames - 1`` of a synthetic sector.

    Parameters
    ----------
    outdir : directory to write into (created if missing); also gets ``stars.ecsv``, the
        ``star_catalog`` of the same arguments.
    sector, camera, ccd : which CCD; the WCS is tesswcs' for it (see ``geometry``).
    frames : number of FFIs to write (>= 1).
    shape : ``(rows, cols)`` crop of the FFI from pixel (0, 0); None = 2078 x 2136. The WCS
        is unchanged (same CRPIX), so sky positions stay right; a crop's pixels are bit for
        bit those of the full FFI at the same place.
    product : "spoc" (HDU1 flux e-/s, HDU2 uncertainty) or "tica" (HDU0 image in electrons).
    seed : the star field, sky and noise are deterministic for (seed, sector, camera, ccd);
        files are byte-for-byte reproducible.
    first_frame : 0-based index of the first frame within the sector; frame k is identical
        whichever call writes it.
    progress : show a tqdm progress bar.

    Returns the FFI paths in time order.
    """
    product = product.lower()
    if product not in PRODUCTS:
        raise InputError(f"product must be one of {PRODUCTS}, got {product!r}")
    if frames < 1 or first_frame < 0:
        raise InputError(f"need frames >= 1 and first_frame >= 0, got {frames}, {first_frame}")
    info = load_sector(sector, camera, ccd)
    rows_cols = crop_shape(shape)
    outdir = writable_folder(outdir)

    scene = Scene(info, rows_cols, seed)
    write_catalog(catalog_table(scene.stars, info, seed, rows_cols), outdir / CATALOG_NAME)
    times = frame_times(info, first_frame, frames)
    mid = times.mid
    cards = wcs_cards(info.wcs)
    read_noise = column_read_noise(rows_cols[1])
    build = _spoc_file if product == "spoc" else _tica_file

    paths: list[Path] = []
    label = f"s{info.sector:04d}-{info.camera}-{info.ccd} {product}"
    for i in tqdm(range(frames), desc=label, unit="FFI", disable=not progress):
        signal = scene.signal(float(mid[i]))
        sigma = noise_sigma(signal, info, read_noise)
        flux = signal + sigma * standard_normal(seed, info, int(times.index[i]), rows_cols)
        name, hdus = build(info, times, i, cards, flux, sigma)
        path = outdir / name
        _with_checksums(hdus, f"{info.processing_date}T00:00:00").writeto(path, overwrite=True)
        paths.append(path)
    return paths
