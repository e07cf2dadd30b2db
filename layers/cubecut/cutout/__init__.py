"""The cutout engine: cube index, cutout geometry, byte-range pixel reads, TPF building.

``cutout(cube, coordinates, size)`` is the entry point (``cutout_files`` gives the TPFs as
FITS bytes); the modules are usable alone: ``metadata`` (``load_index``), ``geometry``
(``cutout_box``), ``reader`` (the cube pixel reader of every cutout kind: ``open_cube``,
``read_box``, ``read_boxes``, ``read_chunks``, ``read_elements``) and ``tpf``
(``tpf_bytes``, ``build_tpf``, ``reference_tpf``, ``tpf_filename``).
"""
from .engine import TPFFile, cutout, cutout_files
from .geometry import MAX_CUTOUT_PIXELS, Box, cutout_box, ffi_wcs, parse_coordinates, parse_size
from .metadata import clear_cache, invalidate, load_index
from .reader import fill_box, read_box, read_boxes, read_chunks
from .tpf import build_tpf, fit_linear_wcs, reference_tpf, tpf_bytes, tpf_filename

__all__ = [
    "cutout", "cutout_files", "TPFFile", "load_index", "invalidate", "clear_cache", "Box", "cutout_box",
    "ffi_wcs", "parse_coordinates", "parse_size", "MAX_CUTOUT_PIXELS", "read_box", "read_boxes", "read_chunks",
    "fill_box", "build_tpf", "reference_tpf", "tpf_bytes", "fit_linear_wcs", "tpf_filename",
]
