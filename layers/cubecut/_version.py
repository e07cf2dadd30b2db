"""The release of cubecut: the one source of its version (pyproject.toml reads it too).

A module of its own rather than installed package metadata, so that the Lambda layer, which
holds the package without a ``dist-info``, reports the same version as an installed wheel.
"""
__version__ = "0.2.0"
