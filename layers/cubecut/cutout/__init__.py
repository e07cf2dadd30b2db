"""The cutout engine: cube index, cutout geometry, byte-range pixel reads, TPF building.

``cutout(cube, coordinates, size)`` is the entry point (``cutout_files`` gives the TPFs as
FITS bytes); the modules are usable alone (docs/architecture.md names what each holds).
The names below are loaded from their modules on first use (astropy's WCS, coordinates
and time cost most of a cold start, and a request may need none of them).
"""
from importlib import import_module
from typing import Any

#: Public name -> the module that defines it.
_HOMES = {
    **dict.fromkeys(("TPFFile", "cutout", "cutout_files"), "engine"),
    **dict.fromkeys(("MAX_CUTOUT_PIXELS", "Box", "cutout_box", "ffi_wcs", "fit_linear_wcs", "parse_coordinates"), "geometry"),
    **dict.fromkeys(("parse_size", "parse_size_text"), "size"),
    **dict.fromkeys(("clear_cache", "invalidate", "load_index"), ".cube.index_cache"),  # i.e. cubecut.cube.index_cache
    **dict.fromkeys(("fill_box", "read_box", "read_boxes", "read_chunks"), "reader"),
    **dict.fromkeys(("build_tpf", "tpf_bytes", "tpf_filename"), "tpf"),
    "reference_tpf": "tpf_reference",
}
__all__ = list(_HOMES)


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f".{_HOMES[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HOMES))
