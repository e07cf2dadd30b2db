"""Write FITS files as bytes, fast: header blocks from card images, vectorised checksums.

The write side of :mod:`cubecut.fitsio`. A FITS HDU is a header of 80-byte card images,
closed by an ``END`` card and padded with spaces to a multiple of 2880 bytes, then its
data (big-endian), padded with zero bytes to a multiple of 2880 (FITS standard 4.4). The
FITS checksum convention (Seaman, Pence & Rots 2002; FITS standard 4.4.2.7 and appendix J)
adds ``DATASUM``, the 32-bit ones'-complement sum of the data's big-endian words, and
``CHECKSUM``, 16 characters that encode the complement of the sum over the whole HDU so
that the HDU sums to negative zero (``0xFFFFFFFF``).

Everything here gives the bytes astropy writes (``HDUList.writeto(checksum=True)``): the
same padding, the same card comments (``data unit checksum updated <time>``) and the same
encoding; ``tests/library/test_fitswrite.py`` checks it against astropy.
"""
from __future__ import annotations

import datetime

import numpy as np

from .fitsio import CARD, padded

END_CARD = "END".ljust(CARD)
#: The CHECKSUM value while the sum is computed (FITS checksum convention).
ZERO_CHECKSUM = "0" * 16
#: Character codes the checksum encoding avoids (punctuation between digits and letters).
_EXCLUDED = frozenset(b":;<=>?@[\\]^_`")
_MASK32 = 0xFFFFFFFF


def header_bytes(images: list[str]) -> bytes:
    """A header block: the card images, the END card, padded with spaces to 2880 bytes."""
    text = "".join(images) + END_CARD
    return text.ljust(padded(len(text))).encode("ascii")


def ones_complement_sum(data: bytes | bytearray | memoryview | np.ndarray, start: int = 0) -> int:
    """The 32-bit ones'-complement sum of ``data`` read as big-endian words, added to ``start``.

    ``data`` must be a whole number of words (any FITS block is). Vectorised: numpy sums
    the words in 64-bit integers and the carries are folded back in once at the end.
    """
    words = np.frombuffer(data, dtype=">u4")
    return fold(int(start) + int(words.sum(dtype=np.uint64)))


def fold(total: int) -> int:
    """A non-negative sum of 32-bit words folded to 32 bits with end-around carries: the
    ones'-complement sum (so the words can be summed in any order, by parts)."""
    while total >> 32:
        total = (total & _MASK32) + (total >> 32)
    return total


def encode_checksum(value: int) -> str:
    """The 16-character ASCII encoding of the 32-bit ``value`` (FITS checksum convention).

    Each byte of ``value`` (most significant first) is spread over four characters that
    add up to it, offset from ``'0'``; pairs are nudged to avoid punctuation; the 16
    characters are interleaved byte by byte and rotated right by one.
    """
    columns = []
    for shift in (24, 16, 8, 0):
        byte = (value >> shift) & 0xFF
        quotient, remainder = divmod(byte, 4)
        chars = [quotient + remainder + 0x30] + [quotient + 0x30] * 3
        for first in (0, 2):
            while chars[first] in _EXCLUDED or chars[first + 1] in _EXCLUDED:
                chars[first] += 1
                chars[first + 1] -= 1
        columns.append(chars)
    interleaved = [columns[i][j] for j in range(4) for i in range(4)]
    return bytes(interleaved[-1:] + interleaved[:-1]).decode("ascii")


def checksum_timestamp() -> str:
    """The local time as astropy writes it in checksum comments: ``YYYY-MM-DDTHH:MM:SS``."""
    return datetime.datetime.now().isoformat()[:19]


def rekeyed(image: str, keyword: str) -> str:
    """A card image with another (standard, <= 8 character) keyword and the same value and
    comment: a fixed-format card's value field does not depend on its keyword."""
    if len(keyword) > 8:
        raise ValueError(f"not a standard FITS keyword: {keyword!r}")
    return keyword.ljust(8) + image[8:]


def write_hdu(buf: bytearray, offset: int, images: list[str], *, checksum_card: int, datasum_card: int,
              data_bytes: int, when: str, datasum: int | None = None) -> int:
    """Write one HDU's header, with CHECKSUM and DATASUM, into ``buf`` at ``offset``.

    The HDU's data (``data_bytes`` long, unpadded) must already be in ``buf`` right after
    the header, followed by its zero padding. ``images`` are the header's card images;
    those at positions ``checksum_card``/``datasum_card`` are replaced. ``when`` is the
    comments' timestamp (:func:`checksum_timestamp`); ``datasum``, when the caller knows it,
    is the data's ones'-complement sum. Returns the offset after the HDU.
    """
    images = list(images)
    nheader = padded(sum(map(len, images)) + CARD)  # a long-string card may span several images
    if datasum is None:
        datasum = ones_complement_sum(memoryview(buf)[offset + nheader:offset + nheader + padded(data_bytes)])
    images[datasum_card] = card_image("DATASUM", str(datasum), f"data unit checksum updated {when}")
    comment = f"HDU checksum updated {when}"
    images[checksum_card] = card_image("CHECKSUM", ZERO_CHECKSUM, comment)
    header = header_bytes(images)
    total = ones_complement_sum(header, datasum)
    final = card_image("CHECKSUM", encode_checksum(~total & _MASK32), comment)
    buf[offset:offset + nheader] = header
    start = offset + sum(map(len, images[:checksum_card]))
    buf[start:start + CARD] = final.encode("ascii")
    return offset + nheader + padded(data_bytes)


def card_image(keyword: str, value: object, comment: str) -> str:
    """The 80-character image astropy gives ``fits.Card(keyword, value, comment)``, for a
    standard keyword with a bool, integer, finite float or short string value: rendered
    here at a fraction of astropy's cost (its cards read ``astropy.config`` items on every
    access). Anything else (long strings, truncated comments, undefined or non-finite
    values, HIERARCH keywords) is rendered by astropy itself.
    """
    if isinstance(value, (bool, np.bool_)):
        field = f"{'T' if value else 'F':>20}"
    elif isinstance(value, (int, np.integer)):
        field = f"{value:>20d}"
    elif isinstance(value, (float, np.floating)) and np.isfinite(value):
        text = str(value).replace("e", "E")
        if len(text) > 20:  # astropy keeps at most 20 characters, cutting the significand
            at = text.find("E")
            text = text[:20] if at < 0 else text[:20 - (len(text) - at)] + text[at:]
        field = f"{text:>20}"
    elif isinstance(value, str) and value and value.isprintable() and value.isascii():
        quoted = "'" + value.replace("'", "''").ljust(8) + "'"
        field = f"{quoted:20}"
    else:
        field = None
    image = None if field is None else f"{keyword:8}= {field}" + (f" / {comment}" if comment else "")
    if image is None or len(keyword) > 8 or not keyword.isupper() and not keyword.isdigit() or len(image) > CARD:
        from astropy.io import fits

        return fits.Card(keyword, value, comment).image
    return image.ljust(CARD)


def card_value(field: str) -> object:
    """The value of a fixed-format card's value field (after ``= ``), as astropy parses it."""
    field = field.lstrip()
    if field.startswith("'"):
        end = field.index("'", 1)
        while field.startswith("''", end):  # a quote inside a string is written twice
            end = field.index("'", end + 2)
        return field[1:end].replace("''", "'").rstrip()
    text = field.split("/", 1)[0].strip()
    if text in ("T", "F"):
        return text == "T"
    try:
        return int(text)
    except ValueError:
        return float(text.replace("D", "E"))
