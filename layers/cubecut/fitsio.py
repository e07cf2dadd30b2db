"""FITS structure read from byte ranges: headers and data offsets, never pixels.

A FITS file is a sequence of HDUs; each is a header of 80-byte cards padded to a
multiple of 2880 bytes followed by its data, also padded to 2880. Knowing the headers is
enough to know where every pixel is, so readers fetch only the headers here and the
pixels they need later, by offset.
"""
from __future__ import annotations

import io
import os
import re
from dataclasses import dataclass

import numpy as np
from astropy.io import fits
from astropy.io.fits.verify import VerifyError

from .errors import FFIError, ObjectNotFoundError
from .storage import ByteSource

BLOCK = 2880
CARD = 80
#: A header larger than this is treated as corrupt (real TESS headers are < 40 blocks).
MAX_HEADER_BYTES = 400 * BLOCK
#: Header cards may hold printable ASCII only (FITS standard 4.1.2).
_NOT_PRINTABLE = re.compile(rb"[^\x20-\x7e]")
_BITPIX_DTYPES = {8: ">u1", 16: ">i2", 32: ">i4", 64: ">i8", -32: ">f4", -64: ">f8"}


def padded(nbytes: int) -> int:
    """``nbytes`` rounded up to a whole number of 2880-byte FITS blocks."""
    return -(-nbytes // BLOCK) * BLOCK


@dataclass(frozen=True)
class HDUSpan:
    """Where one HDU sits in a file. All offsets are absolute byte offsets (0-based)."""

    header: fits.Header
    data_offset: int
    data_bytes: int

    @property
    def end(self) -> int:
        """Offset just past this HDU's padded data: where the next HDU starts."""
        return self.data_offset + padded(self.data_bytes)

    @property
    def shape(self) -> tuple[int, ...]:
        """Image shape in numpy (C) order, e.g. ``(rows, cols)`` for a 2-D image."""
        naxis = self.header.get("NAXIS", 0)
        return tuple(int(self.header[f"NAXIS{i}"]) for i in range(naxis, 0, -1))

    @property
    def dtype(self) -> np.dtype:
        """On-disk (big-endian) dtype of the image pixels."""
        try:
            return np.dtype(_BITPIX_DTYPES[int(self.header["BITPIX"])])
        except (KeyError, ValueError):
            raise FFIError(f"unsupported BITPIX {self.header.get('BITPIX')!r}") from None


def data_bytes(header: fits.Header) -> int:
    """Size in bytes of an HDU's data (unpadded) from its header (FITS standard 4.4.1)."""
    try:
        bitpix = _integer(header["BITPIX"])
        naxis = _integer(header["NAXIS"])
        if bitpix not in _BITPIX_DTYPES or not 0 <= naxis <= 999:
            raise ValueError
        if naxis == 0:
            return 0
        dims = [_integer(header[f"NAXIS{i}"]) for i in range(1, naxis + 1)]
        pcount, gcount = _integer(header.get("PCOUNT", 0)), _integer(header.get("GCOUNT", 1))
        # Negative counts would shrink the declared size below what the axes claim.
        if any(d < 0 for d in dims) or pcount < 0 or gcount < 0:
            raise ValueError
        count = gcount * (pcount + int(np.prod(dims, dtype=object)))
    except (KeyError, ValueError, TypeError, VerifyError):
        raise FFIError("header has missing or invalid BITPIX/NAXIS/PCOUNT/GCOUNT keywords") from None
    return abs(bitpix) // 8 * count


def _integer(value: object) -> int:
    """A FITS integer keyword's value; floats, booleans and strings are refused."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"not an integer: {value!r}")
    return int(value)


def read_header(source: ByteSource, offset: int, first_read: int = 8 * BLOCK) -> tuple[fits.Header, int]:
    """Parse the header starting at ``offset``; returns it and its padded length in bytes.

    Reads ``first_read`` bytes, then doubles the range until the END card is found, so a
    typical header costs one request. At offset 0 a file that does not start like a FITS
    file is "not a FITS file" (rather than a header without END).
    """
    buf = b""
    want = first_read
    while True:
        stop = min(offset + want, source.size)
        if stop <= offset + len(buf):
            if source.size == 0:
                raise FFIError(f"{source.location.name}: empty file, not a FITS file")
            raise FFIError(f"{source.location.name}: truncated header at byte {offset} (no END card)")
        buf += source.read(offset + len(buf), stop)
        if offset == 0 and not buf.startswith(b"SIMPLE  =") and not b"SIMPLE  =".startswith(buf):
            # the message quotes none of the file's bytes (it may be reported to whoever named the file)
            raise FFIError(f"{source.location.name}: not a FITS file (a FITS file starts with 'SIMPLE  =', "
                           "this one does not)")
        end = _find_end(buf)
        if end is not None:
            break
        if len(buf) >= MAX_HEADER_BYTES:
            raise FFIError(f"{source.location.name}: header at byte {offset} has no END card in "
                           f"{MAX_HEADER_BYTES} bytes")
        want = min(2 * want, MAX_HEADER_BYTES)
    bad = _NOT_PRINTABLE.search(buf, 0, end)
    if bad:
        raise FFIError(f"{source.location.name}: header at byte {offset} holds a byte FITS forbids "
                       f"({buf[bad.start()]:#04x} at byte {offset + bad.start()})")
    try:
        header = fits.Header.fromstring(buf[:end].decode("ascii"))
        # astropy parses card values lazily: parse them all now, so that a malformed card
        # is this named error here and not an astropy VerifyError wherever it is first read.
        for card in header.cards:
            card.value  # noqa: B018 - parsing is the point
    except (UnicodeDecodeError, ValueError, VerifyError) as exc:
        raise FFIError(f"{source.location.name}: unreadable header at byte {offset}: {exc}") from None
    return header, padded(end)


def _find_end(buf: bytes) -> int | None:
    """Byte length up to and including the END card, if ``buf`` contains it."""
    for pos in range(0, len(buf) - CARD + 1, CARD):
        if buf[pos:pos + 3] == b"END" and buf[pos:pos + CARD].rstrip() == b"END":
            return pos + CARD
    return None


def scan_hdus(source: ByteSource, count: int | None = None) -> list[HDUSpan]:
    """The first ``count`` HDUs of ``source`` (None: every HDU up to its end), each checked
    to fit in the object."""
    spans: list[HDUSpan] = []
    offset, number = 0, 0
    while count is None or number < count:
        if offset >= source.size > 0:  # (an empty file is refused by read_header)
            if count is None:
                return spans
            raise FFIError(f"{source.location.name}: has {number} HDU(s), expected at least {count}")
        header, header_bytes = read_header(source, offset)
        nbytes = data_bytes(header)
        span = HDUSpan(header, offset + header_bytes, nbytes)
        if span.data_offset + nbytes > source.size:
            raise FFIError(f"{source.location.name}: truncated: HDU {number} needs "
                           f"{span.data_offset + nbytes} bytes, object has {source.size}")
        spans.append(span)
        offset, number = span.end, number + 1
    return spans


def hdu_bytes(hdu: fits.PrimaryHDU | fits.ImageHDU | fits.BinTableHDU, *, primary: bool) -> bytes:
    """The exact bytes astropy writes for ``hdu`` (header and padded data)."""
    buf = io.BytesIO()
    fits.HDUList([hdu] if primary else [fits.PrimaryHDU(), hdu]).writeto(buf)
    return buf.getvalue() if primary else buf.getvalue()[BLOCK:]


def open_fits(path: str | os.PathLike[str]) -> fits.HDUList:
    """``fits.open(path)`` of a whole local file, with a missing or non-FITS file as a named
    error (ObjectNotFoundError, FFIError) instead of astropy's OSError."""
    try:
        return fits.open(path)
    except FileNotFoundError:
        raise ObjectNotFoundError(f"{path}: no such file") from None
    except (OSError, ValueError, TypeError, IndexError) as exc:  # astropy: "Empty or corrupt FITS file" ...
        raise FFIError(f"{path}: not a FITS file ({exc})") from None
