"""cubecut: serverless TESS FFI cubes and target pixel file cutouts over S3 byte ranges.

``cubecut.cutout(cube, coordinates, size, ...)`` is the entry point. Importing the package
loads no astropy coordinates, WCS or TPF code (a handler's cold start pays only for what
it uses): ``cutout`` is bound on first access, and the subpackages load their modules on
first use.
"""
from typing import Any

# The subpackage is loaded (it is light: its modules load on first use) and then its name
# is freed, so that ``cubecut.cutout`` is the function below, as ``from .cutout import
# cutout`` made it, without importing the engine.
from . import cutout as _cutout_package

del cutout  # noqa: F821  (bound by the import system when the subpackage loaded)


def __getattr__(name: str) -> Any:
    if name == "cutout":
        function = _cutout_package.cutout
        globals()["cutout"] = function
        return function
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
