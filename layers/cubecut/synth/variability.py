"""Light-curve models of the variable stars: relative flux at one time (BTJD days)."""
from __future__ import annotations

import numpy as np

NONE, SINE, TRANSIT = 0, 1, 2
KIND_NAMES = {NONE: "none", SINE: "sine", TRANSIT: "transit"}


def relative_flux(kind: np.ndarray, period: np.ndarray, amplitude: np.ndarray,
                  epoch: np.ndarray, duration: np.ndarray, t: float) -> np.ndarray:
    """Flux at BTJD ``t`` relative to the mean (1.0 = constant), one value per star.

    SINE: ``1 + amplitude * sin(2 pi (t - epoch) / period)``.
    TRANSIT: ``1 - amplitude`` while ``t`` is within ``duration / 2`` of a mid-transit
    ``epoch + k * period``, else 1 (a box-shaped dip; the exposure is sampled at ``t``).
    """
    out = np.ones(len(kind))
    sine = kind == SINE
    out[sine] += amplitude[sine] * np.sin(2 * np.pi * (t - epoch[sine]) / period[sine])
    transit = kind == TRANSIT
    phase = (t - epoch[transit]) / period[transit]
    offset = (phase - np.round(phase)) * period[transit]
    out[transit] -= np.where(np.abs(offset) < 0.5 * duration[transit], amplitude[transit], 0.0)
    return out
