"""The CCD electronics as far as the synthetic FFIs need them: outputs, gains, noise.

Each TESS CCD is read out through four outputs A-D, each serving 512 science columns
(0-based columns 44-555, 556-1067, 1068-1579, 1580-2091); the leading collateral columns
belong to A, the trailing ones to D. Values are typical of TESS, not per-CCD truths.
"""
from __future__ import annotations

import numpy as np

from .geometry import FFI_SHAPE, SCIENCE_COLS
from .sector import CRM_KEEP, NOISE, Sector, generator

OUTPUTS = "ABCD"
#: electrons per ADU, per output.
GAIN = {"A": 5.22, "B": 5.21, "C": 5.21, "D": 5.26}
#: read noise per 2-s read, electrons, per output.
READ_NOISE = {"A": 9.50, "B": 9.31, "C": 9.18, "D": 9.77}
#: flight-software mean black level, ADU, per output.
MEAN_BLACK = {"A": 6452, "B": 6596, "C": 6500, "D": 6436}
#: compression fixed offset, ADU.
FIXED_OFFSET = 209715


def reads_per_ffi(sector: Sector) -> int:
    """Reads co-added into one FFI pixel after cosmic-ray mitigation (NREADOUT)."""
    return int(round(sector.num_frames * CRM_KEEP))


def column_read_noise(cols: int) -> np.ndarray:
    """Read noise (electrons per read) of FFI columns 0..cols-1, by output."""
    col = np.arange(cols)
    output = np.clip((col - SCIENCE_COLS[0]) // 512, 0, 3)
    return np.array([READ_NOISE[OUTPUTS[k]] for k in range(4)])[output]


def noise_sigma(signal: np.ndarray, sector: Sector, read_noise: np.ndarray) -> np.ndarray:
    """1-sigma noise (e-/s) of pixels whose expected rate is ``signal`` (e-/s, float32):
    shot noise of signal * exposure plus read noise of every co-added read.
    ``read_noise`` is ``column_read_noise`` of the image's columns."""
    exposure = np.float32(sector.exposure_s)
    read_var = (reads_per_ffi(sector) * read_noise.astype(np.float32) ** 2)[None, :]
    return np.sqrt(np.maximum(signal, 0) * exposure + read_var) / exposure


def standard_normal(seed: int, sector: Sector, frame: int, shape: tuple[int, int]) -> np.ndarray:
    """Unit normal deviates (float32) for the crop ``shape`` of frame ``frame``.

    They are drawn row by row across the full FFI width from a generator of
    its own (``generator(seed, sector, NOISE, frame)``) and then cropped, so a crop gets exactly the
    deviates of the same pixels of the full frame.
    """
    rng = generator(seed, sector, NOISE, frame)
    rows, cols = shape
    return rng.standard_normal(rows * FFI_SHAPE[1], dtype=np.float32).reshape(rows, FFI_SHAPE[1])[:, :cols]
