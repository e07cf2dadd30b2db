"""cubecut: serverless TESS FFI cubes and target pixel file cutouts over S3 byte ranges."""
from .cutout import cutout  # noqa: F401  (the function; the subpackage stays importable by name)
