"""A cutout size: the one parser of every notation (library values, API parameters,
catalog fields, CLI arguments).

Sizes follow astrocut 1.3.0: a scalar means a square; two values are ``(x extent, y extent)``
= (columns, rows); plain numbers are in ``unit`` (pixels unless a caller says otherwise); a
`~astropy.units.Quantity` is in pixels or an angle (the cutout box converts angles with the
FFI WCS's pixel scale, :func:`cubecut.cutout.geometry.cutout_box`). Text is one or two parts
separated by ``,`` or ``x`` (``5``, ``5,3``, ``5x3``), each a number or a number with a unit
(``2arcmin``, ``30 arcsec``, ``5pix``).

astropy is imported only for a size that has a unit: the API handler's import (and a size
in pixels) never loads it.
"""
from __future__ import annotations

import math
import re
import sys
from typing import TYPE_CHECKING, Any, Iterable, Sequence, Union, cast

import numpy as np

from ..errors import CutoutSizeError

if TYPE_CHECKING:
    import astropy.units as u

SizeElement = Union[int, float, "u.Quantity"]
SizeInput = Union[SizeElement, Sequence[SizeElement], np.ndarray]
Size = tuple[SizeElement, SizeElement]

#: The unit words sizes are given in (TESScut's ``units``), and the astropy unit each means.
UNITS = {"px": "pixel", "pix": "pixel", "pixel": "pixel", "pixels": "pixel",
         "arcsec": "arcsec", "s": "arcsec", "arcmin": "arcmin", "m": "arcmin",
         "deg": "deg", "d": "deg", "degree": "deg", "degrees": "deg"}
#: Where a size text splits into its x and y parts: a comma, or an ``x`` between two numbers.
_SEPARATOR = re.compile(r"\s*,\s*|(?<=[0-9.])\s*x\s*(?=[0-9.+])", re.IGNORECASE)


def parse_size(size: SizeInput, *, unit: str = "px", whole_pixels: bool = False,
               max_pixels: int | None = None, angles: bool = True) -> Size:
    """``(x extent, y extent)`` from a scalar, a pair or a Quantity (text: :func:`parse_size_text`).

    Args:
        unit: what plain numbers are in, a key of :data:`UNITS` (default pixels).
        whole_pixels: pixel extents must be whole numbers; they are returned as ints.
        max_pixels: the largest pixel extent accepted (angles are checked by the cutout box).
        angles: whether angles are accepted (False: pixels only).

    Raises:
        CutoutSizeError: not one or two positive, finite numbers or Quantities in pixels or an
            angle, or against one of the options above.
    """
    items = _items(size)
    if len(items) != 2:
        raise CutoutSizeError(f"cutout size must have 1 or 2 values, got {len(items)}")
    if UNITS.get(unit.lower()) is None:
        raise CutoutSizeError(f"cutout size unit {unit!r} is not one of {', '.join(UNITS)}")
    pixels = UNITS[unit.lower()] == "pixel"
    parsed = [_checked(item, pixels, unit, whole_pixels, max_pixels, angles) for item in items]
    return parsed[0], parsed[1]


def parse_size_text(text: str | Sequence[str], *, unit: str = "px", whole_pixels: bool = False,
                    max_pixels: int | None = None, angles: bool = True) -> Size:
    """:func:`parse_size` (same options) of a size written as text: ``"5"``, ``"5,3"``,
    ``"5x3"``, ``"2arcmin"``, or a list of such parts (``["5", "3"]``: CLI words); one part
    means a square."""
    parts = _SEPARATOR.split(text.strip()) if isinstance(text, str) else list(text)
    values = [_value(part) for part in parts]
    return parse_size(values * 2 if len(values) == 1 else values, unit=unit, whole_pixels=whole_pixels,
                      max_pixels=max_pixels, angles=angles)


def pixel_extents(text: str | Sequence[str], max_pixels: int | None = None) -> tuple[int, int]:
    """``(nx, ny)``: :func:`parse_size_text` in whole pixels (at most ``max_pixels``), no angles."""
    nx, ny = parse_size_text(text, whole_pixels=True, max_pixels=max_pixels, angles=False)
    return cast(int, nx), cast(int, ny)


def size_label(size: Size) -> tuple[str, str]:
    """astrocut's text for a parsed size in file names: ``5``, ``4.5``, ``2.0arcmin``, ``3.0pix``."""
    return str(size[0]).replace(" ", ""), str(size[1]).replace(" ", "")


def normalised_size(size: Size) -> list[int | float | str]:
    """A size as cache keys hold it: pixels as numbers, angles in degrees at full precision."""
    return [f"{cast('u.Quantity', s).to_value('deg')!r}deg" if _is_quantity(s) else cast(float, s) for s in size]


def _is_quantity(value: Any) -> bool:
    units = sys.modules.get("astropy.units")  # not loaded: nothing can be a Quantity
    return units is not None and isinstance(value, units.Quantity)


def _items(size: SizeInput) -> list[Any]:
    """The extents of ``size`` (two of a scalar), not yet checked."""
    if _is_quantity(size):
        values = cast("u.Quantity", size).reshape(-1)
        return [values[0], values[0]] if values.size == 1 else list(values)
    if np.isscalar(size):
        return [size, size]
    try:
        return list(cast(Iterable, size))
    except TypeError:
        raise CutoutSizeError(f"cutout size must be a number, a pair or a Quantity, got {size!r}") from None


def _value(item: str) -> Any:
    """A text part as a number (an int when whole) or a Quantity."""
    try:
        number = float(item)
    except ValueError:
        pass
    else:
        return int(number) if number.is_integer() else number
    import astropy.units as u

    try:
        return u.Quantity(item)
    except (ValueError, TypeError):
        raise CutoutSizeError(f"cutout size {item!r} is neither pixels (11, 11.5) nor an angle "
                              "(2arcmin, 30arcsec, 0.1deg)") from None


def _checked(item: Any, pixels: bool, unit: str, whole_pixels: bool, max_pixels: int | None,
             angles: bool) -> SizeElement:
    """One extent, checked, in the form the cutout box takes: a number of pixels or a Quantity."""
    if _is_quantity(item):
        import astropy.units as u

        if item.unit != u.pixel and item.unit.physical_type != "angle":
            raise CutoutSizeError(f"cutout size unit {item.unit} is neither pixels nor an angle")
        value, in_pixels = item.value, item.unit == u.pixel
    elif isinstance(item, (int, float, np.integer, np.floating)) and not isinstance(item, bool):
        value, in_pixels = item, pixels
    else:
        raise CutoutSizeError(f"cutout size must be numbers or Quantities, got {item!r}")
    if not math.isfinite(value) or value <= 0:
        raise CutoutSizeError(f"cutout size must be positive and finite, got {item}")
    if not in_pixels:
        if not angles:
            raise CutoutSizeError(f"cutout size must be in pixels, got {item}")
        if _is_quantity(item):
            return cast(SizeElement, item)
        import astropy.units as u

        return value * u.Unit(UNITS[unit.lower()])
    if whole_pixels and value != round(value):
        raise CutoutSizeError(f"pixel sizes must be whole numbers, got {item}")
    if max_pixels is not None and value > max_pixels:
        raise CutoutSizeError(f"cutout size {item} is above the limit of {max_pixels} pixels")
    if whole_pixels:
        return int(value)
    return cast(SizeElement, item)
