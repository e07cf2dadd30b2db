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
from .geometry import crop_shape, wcs_cards
from .headers import spoc_image_cards, spoc_name, spoc_primary_cards, tica_cards, tica_name
from .scene import Scene
from .sector import load_sector
from .stars import catalog_table, write_catalog
from .timing import frame_times

PRODUCTS = ("spoc", "tica")
CATALOG_NAME = "stars.ecsv"


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
    when = f"{info.processing_date}T00:00:00"

    paths: list[Path] = []
    label = f"s{info.sector:04d}-{info.camera}-{info.ccd} {product}"
    for i in tqdm(range(frames), desc=label, unit="FFI", disable=not progress):
        signal = scene.signal(float(mid[i]))
        sigma = noise_sigma(signal, info, read_noise)
        flux = signal + sigma * standard_normal(seed, info, int(times.index[i]), rows_cols)
        if product == "spoc":  # flux and uncertainty in e-/s
            path = outdir / spoc_name(info, times, i)
            hdus = fits.HDUList([fits.PrimaryHDU(header=fits.Header(spoc_primary_cards(info, times, i))), *(
                fits.ImageHDU(image, header=fits.Header(spoc_image_cards(info, times, i, cards, kind)))
                for image, kind in ((flux, "cal"), (sigma, "uncert")))])
        else:  # no uncertainty image; the image in electrons per exposure
            path = outdir / tica_name(info, times, i)
            hdus = fits.HDUList([fits.PrimaryHDU(flux * np.float32(info.exposure_s),
                                                 header=fits.Header(tica_cards(info, times, i, cards)))])
        hdus.update_extend()
        for hdu in hdus:  # astropy's checksum comments with a fixed time: files are byte-for-byte reproducible
            hdu.add_datasum(when=f"data unit checksum updated {when}")
            hdu.add_checksum(when=f"HDU checksum updated {when}", override_datasum=True)
        hdus.writeto(path, overwrite=True)
        paths.append(path)
    return paths
