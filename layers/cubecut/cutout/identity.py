"""A target's identity in a TPF's primary header, as TESS pipeline TPFs carry it.

A cutout knows only its position, so its TPF holds astrocut's placeholders (``OBJECT ''``,
``TICID`` undefined, ``TESSMAG 0.0``). When a catalog names the target, :func:`set_identity`
writes ``OBJECT`` (e.g. ``TIC 261136679``), ``TICID`` (an integer; what lightkurve's
``targetid`` reads) and ``TESSMAG`` (TESS magnitude) into a finished TPF file in place: each
card keeps its 80 characters and comment, and the primary HDU's CHECKSUM is computed again
(its DATASUM is 0: the primary HDU has no data), so the file stays valid and no byte moves.
"""
from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass

from astropy.io import fits

from ..fitswrite import CARD, card_image, write_hdu

#: Longest OBJECT value written: a string card holds at most 68 characters with its quotes.
MAX_OBJECT_CHARACTERS = 60
_TIC = re.compile(r"^(?:TIC[\s_-]*)?(\d{1,12})$", re.IGNORECASE)
_WHEN = re.compile(r"updated (\S+)")


@dataclass(frozen=True)
class Identity:
    """What a catalog says about a target: ``object`` (name), ``ticid``, ``tmag`` (TESS
    magnitude); None where it says nothing."""

    object: str | None = None
    ticid: int | None = None
    tmag: float | None = None

    def __bool__(self) -> bool:
        return self.object is not None or self.ticid is not None or self.tmag is not None


def ticid_of(text: str) -> int | None:
    """The TIC number of ``"261136679"`` or ``"TIC 261136679"``, else None."""
    match = _TIC.match(text.strip())
    return int(match.group(1)) if match else None


def set_identity(data: bytearray, identity: Identity) -> None:
    """Write ``identity``'s cards into the primary header of the TPF file ``data`` (see the
    module docstring); cards the TPF does not have, and None values, are left alone."""
    if not identity:
        return
    images: list[str] = []
    positions: dict[str, int] = {}
    while True:
        image = data[len(images) * CARD:(len(images) + 1) * CARD].decode("ascii")
        if image.startswith("END "):
            break
        positions.setdefault(image[:8].rstrip(), len(images))
        images.append(image)
    values: dict[str, object] = {}
    if identity.object is not None:
        values["OBJECT"] = "".join(c for c in identity.object if c.isprintable() and c.isascii())[
            :MAX_OBJECT_CHARACTERS] or None
    if identity.ticid is not None:
        values["TICID"] = int(identity.ticid)
    if identity.tmag is not None and math.isfinite(identity.tmag):
        values["TESSMAG"] = float(identity.tmag)
    for key, value in values.items():
        if key in positions and value is not None:
            comment = fits.Card.fromstring(images[positions[key]]).comment
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", fits.verify.VerifyWarning)  # a comment cut to fit
                image = card_image(key, value, comment)
            images[positions[key]] = image if len(image) == CARD else card_image(key, value, "")
    checksum = positions["CHECKSUM"]
    when = _WHEN.search(images[checksum])
    write_hdu(data, 0, images, checksum_card=checksum, datasum_card=positions["DATASUM"], data_bytes=0,
              when=when.group(1) if when else "", datasum=0)
