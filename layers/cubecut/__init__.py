"""cubecut: serverless TESS FFI cubes and target pixel file cutouts over S3 byte ranges.

``cubecut.cutout(cube, coordinates, size, ...)`` is the entry point. Importing the package
loads no astropy (a handler's cold start pays only for what its requests use): ``cutout``
is bound on first access, and the subpackages load their modules on first use.
"""
from typing import TYPE_CHECKING, Any

from ._version import __version__ as __version__

if TYPE_CHECKING:
    from .cutout.engine import cutout as cutout
else:
    # The subpackage is loaded (it is light: its modules load on first use), then the name
    # the import system bound to it is freed, so that ``cubecut.cutout`` is the function,
    # as ``from .cutout import cutout`` made it, without importing the engine.
    from . import cutout as _cutout_package

    del globals()["cutout"]

    def __getattr__(name: str) -> Any:
        if name == "cutout":
            function = _cutout_package.cutout
            globals()["cutout"] = function
            return function
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
