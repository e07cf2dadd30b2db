"""The one FFI row reader: pixels of a 2-D image HDU by one byte range.

Shared by ingest (:mod:`cubecut.ingest.transpose` reads the same rows of every FFI) and FFI
cutouts (:mod:`cubecut.fficut`, a box's rows). Pixel coordinates are 0-based; an image
HDU's pixels are rows of ``ncols`` values from :attr:`PixelRef.offset`, as FITS stores
them (row = NAXIS2 index, column = NAXIS1 index).
"""
from __future__ import annotations

import numpy as np

from .errors import FFIError
from .ffi import PixelRef
from .reads import read_range
from .storage import ByteSource


def read_pixels(source: ByteSource, pixels: PixelRef, ncols: int, rows: tuple[int, int],
                cols: tuple[int, int] | None = None) -> np.ndarray:
    """Pixels ``[row0, row1) x [col0, col1)`` (0-based, on the image; all columns by default)
    of one image HDU, shaped ``(row1 - row0, col1 - col0)``, in one read: the bytes from pixel
    ``(row0, col0)`` to pixel ``(row1 - 1, col1 - 1)`` inclusive (whole rows cost exactly their bytes).

    BSCALE/BZERO are applied: scaled and integer images become native float32; an unscaled
    float image comes in the file's dtype (big-endian, a view of the bytes read: the caller
    converts while placing the values, so no copy is made here). Raises FFIError for a
    truncated file.
    """
    (row0, row1), (col0, col1) = rows, cols or (0, ncols)
    dtype = np.dtype(pixels.dtype)
    start = pixels.offset + (row0 * ncols + col0) * dtype.itemsize
    stop = pixels.offset + ((row1 - 1) * ncols + col1) * dtype.itemsize
    flat = np.frombuffer(read_range(source, start, stop, FFIError, f"rows {row0}-{row1}"), dtype=dtype)
    if (col0, col1) != (0, ncols):  # pad the partial first and last rows to whole rows
        flat = np.concatenate([np.zeros(col0, dtype=dtype), flat, np.zeros(ncols - col1, dtype=dtype)])
    values = flat.reshape(row1 - row0, ncols)[:, col0:col1]
    if pixels.bscale != 1.0 or pixels.bzero != 0.0 or dtype.kind in "iu":
        return (values * pixels.bscale + pixels.bzero).astype(np.float32)
    return values
