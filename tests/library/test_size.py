"""The one parser of a cutout size (cubecut.cutout.size): every notation the library, the API,
bulk catalogs and the CLI take, and a named error for each bad one."""
from __future__ import annotations

import astropy.units as u
import pytest

from cubecut.cutout.size import normalised_size, parse_size, parse_size_text, pixel_extents
from cubecut.errors import CutoutSizeError


@pytest.mark.parametrize("text, expected", [
    ("5", (5, 5)), ("5,3", (5, 3)), (" 5 , 3 ", (5, 3)), ("5x3", (5, 3)), ("5X3", (5, 3)), (["5", "3"], (5, 3)),
    ("11.5", (11.5, 11.5)), ("2arcmin", (2 * u.arcmin, 2 * u.arcmin)), ("30 arcsec,5pix", (30 * u.arcsec, 5 * u.pix)),
])
def test_text_notations(text, expected):
    assert parse_size_text(text) == expected


@pytest.mark.parametrize("size, unit, expected", [
    (7, "px", (7, 7)), ((7.0, 9.0), "pixels", (7, 9)), ((1, 2), "arcmin", (1 * u.arcmin, 2 * u.arcmin)),
    ((0.5, 0.5), "d", (0.5 * u.deg, 0.5 * u.deg)), (3 * u.arcsec, "px", (3 * u.arcsec, 3 * u.arcsec)),
])
def test_values_in_a_unit(size, unit, expected):
    assert parse_size(size, unit=unit, whole_pixels=True) == expected


@pytest.mark.parametrize("text, message", [
    ("0", "positive"), ("-3", "positive"), ("nan", "finite"), ("1e999", "finite"), ("5,3,2", "1 or 2 values"),
    ("2kg", "neither pixels nor an angle"), ("abc", "neither pixels"), ("", "neither pixels"),
    ("5.5", "whole numbers"), ("101", "above the limit of 100"), ("2arcmin", "in pixels"),
])
def test_bad_pixel_sizes_are_named_errors(text, message):
    with pytest.raises(CutoutSizeError, match=message):
        pixel_extents(text, 100)


def test_bad_values_and_units():
    for size in (True, "5", None, [1, 2, 3]):
        with pytest.raises(CutoutSizeError):
            parse_size(size)
    with pytest.raises(CutoutSizeError, match="not one of"):
        parse_size(5, unit="furlong")


def test_cache_keys_are_equal_for_equal_angles():
    assert normalised_size(parse_size(1, unit="arcmin")) == normalised_size(parse_size(60, unit="arcsec"))
    assert normalised_size((5, 7)) == [5, 7]
