"""The cutout engine: cube index, cutout geometry, byte-range pixel reads, TPF building.

``cutout(cube, coordinates, size)`` is the entry point; the modules are usable alone:
``metadata`` (``load_index``), ``geometry`` (``cutout_box``), ``reader`` (``read_box``,
``read_boxes``) and ``tpf`` (``build_tpf``, ``tpf_filename``).
"""
from .engine import cutout
from .geometry import MAX_CUTOUT_PIXELS, Box, cutout_box, ffi_wcs, parse_coordinates, parse_size
from .metadata import clear_cache, invalidate, load_index
from .reader import read_box, read_boxes
from .tpf import build_tpf, fit_linear_wcs, tpf_filename

__all__ = [
    "cutout", "load_index", "invalidate", "clear_cache", "Box", "cutout_box", "ffi_wcs",
    "parse_coordinates", "parse_size", "MAX_CUTOUT_PIXELS", "read_box", "read_boxes", "build_tpf",
    "fit_linear_wcs", "tpf_filename",
]
