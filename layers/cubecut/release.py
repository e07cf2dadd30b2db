"""The installed cubecut's version (the package metadata's): what TPFs (``PROCVER``) and the
API's OpenAPI document carry, one source for both. Light: no astropy."""
from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    VERSION = version("cubecut")
except PackageNotFoundError:  # e.g. a Lambda layer copied without its metadata
    VERSION = "unknown"
