"""Offline stand-in for lkspacecraft (which downloads SPICE kernels on import).

tesscube only uses ``TESSSpacecraft().get_barycentric_time_correction`` and
``.time_offset``; the benchmark measures data access, so the correction is 0 here.
"""
import numpy as np


class TESSSpacecraft:
    time_offset = 2457000.0

    def get_barycentric_time_correction(self, time, ra=None, dec=None, **kwargs):
        return np.zeros_like(np.asarray(time, dtype=float))
