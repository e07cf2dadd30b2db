"""Moving-target cutouts (astrocut's ``center_on_path``/``path_to_footprints``, TESScut's
``moving_target`` routes) from an ephemeris table, reading per frame only that frame's box.

``moving_cutout(cubes, ephemeris, size)`` is the entry point; ``path_crossings`` says which
cubes a path crosses. The modules: ``ephemeris`` (tables, interpolation, optional JPL
Horizons), ``path`` (positions and boxes per cube frame, footprints), ``reader`` (merged
byte ranges of moving boxes), ``tpf`` (the moving TPF).
"""
from .engine import PathOffCubesError, moving_cutout
from .ephemeris import Ephemeris, EphemerisError, HorizonsError, horizons_ephemeris, load_ephemeris
from .path import path_crossings, path_on_cube, path_to_footprints
from .reader import read_moving_box

__all__ = [
    "moving_cutout", "PathOffCubesError", "Ephemeris", "EphemerisError", "HorizonsError", "horizons_ephemeris",
    "load_ephemeris", "path_crossings", "path_on_cube", "path_to_footprints", "read_moving_box",
]
