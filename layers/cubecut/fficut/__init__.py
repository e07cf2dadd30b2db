"""Cutouts straight from FFIs, for data not yet cubed (astrocut's ``fits_cut``), and
combining cutouts (astrocut's ``CutoutsCombiner``).

Only what a cutout needs is read: the HDU headers (one read each), then per image HDU
the one byte range from the box's first needed pixel to its last, i.e. the box's rows
(clipped to the image) and nothing else. Sources are local paths or ``s3://`` URLs
(:func:`cubecut.storage.open_source`).

The box is computed exactly as a cube cutout's (:func:`cubecut.cutout.cutout_box`,
astrocut 1.3 rounding), from each image's own WCS: for FFIs sharing a WCS the values
equal those of the cube cutout. Pixel coordinates are 0-based; CRPIX and the
``CRVAL1P``/``CRVAL2P`` keywords are 1-based (FITS). Sizes are ``(x, y)`` = (columns,
rows) as in :func:`cubecut.cutout.parse_size`.

Deliberate differences from astrocut: the header reads and pixel reads are byte ranges
(astrocut opens whole files through fsspec), ``combine_cutouts`` checks that the inputs
line up (same shape, same sky to ``max_offset`` pixels) instead of silently combining
misaligned images, keeps only the header cards all inputs share (astrocut adds three
``Fnn_Kmm`` cards per varying keyword and input), supports a median and weights, and
propagates an uncertainty extension properly for the weighted mean.
"""
from .combine import MAX_ALIGN_OFFSET, CombineError, Weights, combine_cutouts, inverse_variance
from .cut import (Extension, ImageCutout, ImageHDU, cut_image, cutout_hdu, cutout_images, cutout_primary, fits_cut,
                  image_hdus, image_wcs, write_fits)

__all__ = [
    "MAX_ALIGN_OFFSET", "CombineError", "Weights", "combine_cutouts", "inverse_variance", "ImageCutout", "cut_image",
    "cutout_images", "fits_cut", "Extension", "ImageHDU", "image_hdus", "image_wcs", "cutout_hdu", "cutout_primary",
    "write_fits",
]
