"""The byte layout of a cube object, known before a single pixel is read.

A cube is three HDUs, as astrocut's CubeFactory writes them (:mod:`.headers`): the primary
header, the image HDU whose data is the float32 big-endian array of numpy shape
``(rows, cols, frames, planes)``, and the binary table of FFI headers. Header sizes are fixed by the FFI headers, so every offset below is
computed from the plan alone; that is what lets independent workers write row blocks.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..fitsio import padded


@dataclass(frozen=True)
class CubeLayout:
    """Byte layout of one cube object. Offsets are absolute and 0-based.

    Attributes:
        nrows, ncols: FFI image shape (rows = NAXIS4, cols = NAXIS3 of the cube).
        nt: number of frames (NAXIS2).
        nplanes: values per pixel and frame (NAXIS1): 2 for (flux, error), 1 for TICA.
        head_bytes: primary HDU plus the image HDU header, both padded to 2880.
        table_bytes: the table HDU (header and data), padded to 2880.
    """

    nrows: int
    ncols: int
    nt: int
    nplanes: int
    head_bytes: int
    table_bytes: int

    @property
    def data_offset(self) -> int:
        """Offset of the first pixel value of the image HDU."""
        return self.head_bytes

    @property
    def row_stride(self) -> int:
        """Bytes of one cube row (one FFI row across all columns, frames and planes)."""
        return self.ncols * self.nt * self.nplanes * 4

    @property
    def data_bytes(self) -> int:
        """Unpadded size of the image data."""
        return self.nrows * self.row_stride

    @property
    def table_offset(self) -> int:
        """Offset where the table HDU starts (after the zero-padded image data)."""
        return self.data_offset + padded(self.data_bytes)

    @property
    def data_padding(self) -> int:
        """Zero bytes between the end of the image data and the table HDU."""
        return padded(self.data_bytes) - self.data_bytes

    @property
    def total_bytes(self) -> int:
        """Size of the complete cube object."""
        return self.table_offset + self.table_bytes

    def row_offset(self, row: int) -> int:
        """Offset of cube row ``row`` (0-based FFI row)."""
        return self.data_offset + row * self.row_stride

