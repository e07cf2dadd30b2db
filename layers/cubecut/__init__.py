"""cubecut: serverless TESS FFI cubes and target pixel file cutouts over S3 byte ranges.

``cubecut.cutout(cube, coordinates, size, ...)`` cuts target pixel files out of one cube;
``cubecut.cutout_sectors(coordinates, size, cubes=..., sectors=...)`` out of every cube
(paths, globs, prefixes, or MAST's by footprint) that covers the positions, and
``cubecut.find_sectors`` says which those are; ``cubecut.ingest_cube(ffis, out)`` builds a
cube from FFIs given as ``cubecut ingest`` takes them (paths, globs, folders, prefixes). Importing the package loads no astropy (a
handler's cold start pays only for what its requests use): the names are bound on first
access, and the subpackages load their modules on first use.
"""
from importlib import import_module
from typing import TYPE_CHECKING, Any

from ._version import __version__ as __version__

#: Public name -> the module that defines it.
_HOMES = {"cutout": ".cutout.engine", "cutout_sectors": ".sectors", "find_sectors": ".sectors",
          "ingest_cube": ".cubes"}
__all__ = ["__version__", *sorted(_HOMES)]

if TYPE_CHECKING:
    from .cubes import ingest_cube as ingest_cube
    from .cutout.engine import cutout as cutout
    from .sectors import cutout_sectors as cutout_sectors
    from .sectors import find_sectors as find_sectors
else:
    # The subpackage is loaded (it is light: its modules load on first use), then the name
    # the import system bound to it is freed, so that ``cubecut.cutout`` is the function,
    # as ``from .cutout import cutout`` made it, without importing the engine.
    from . import cutout as _cutout_package

    del globals()["cutout"]

    def __getattr__(name: str) -> Any:
        if name == "cutout":
            function = _cutout_package.cutout
        elif name in _HOMES:
            function = getattr(import_module(_HOMES[name], __name__), name)
        else:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        globals()[name] = function
        return function

    def __dir__() -> list[str]:
        return sorted(set(globals()) | set(_HOMES))
