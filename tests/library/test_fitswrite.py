"""The fast TPF writer writes the file astropy writes, byte for byte.

``cubecut.cutout.tpf.tpf_bytes`` builds a TPF's FITS file directly (header template,
big-endian table, vectorised checksums); ``reference_tpf`` assembles the same TPF as
astropy HDUs card by card. For a matrix of boxes (1x1, odd/even, partly off the image,
a 1-plane TICA cube, a 1-frame cube) the fast file must equal astropy's
``writeto(checksum=True)`` of the reference HDUList with the same checksum timestamp,
verify with astropy's checksum checks, and read in lightkurve with the same values.
"""
from __future__ import annotations

import io
import warnings
from pathlib import Path

import lightkurve as lk
import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.io.fits.hdu.base import _ValidHDU
from cubecut import fitswrite
from cubecut.cutout.geometry import cutout_wcs, wcs_header_values
from cubecut.cutout import (
    clear_cache,
    cutout,
    cutout_box,
    cutout_files,
    ffi_wcs,
    fit_linear_wcs,
    fill_box,
    load_index,
    read_box,
    read_chunks,
    reference_tpf,
    tpf_bytes,
)
from cubecut.storage import FileSource, Location

WHEN = "2026-01-02T03:04:05"


@pytest.fixture(scope="module")
def cubes(tmp_path_factory, synthetic_cube) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cubes")
    return {"spoc": synthetic_cube(root / "spoc", frames=6),
            "tica": synthetic_cube(root / "tica", frames=5, product="tica", sector=61),
            "one frame": synthetic_cube(root / "one", frames=1)}


@pytest.fixture(autouse=True)
def frozen_checksum_time(monkeypatch):
    """astropy stamps checksum comments with the current time; both writers get WHEN."""
    monkeypatch.setattr(_ValidHDU, "_get_timestamp", lambda self: WHEN)
    monkeypatch.setattr(fitswrite, "checksum_timestamp", lambda: WHEN)
    clear_cache()


def astropy_file(hdul: fits.HDUList) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fits.verify.VerifyWarning)
        hdul.writeto(buffer, checksum=True)
    return buffer.getvalue()


#: (x, y, size): 0-based target pixel and cutout size, on a 44 x 40 image.
BOXES = [
    (10.2, 10.7, 1),            # 1x1
    (20.5, 30.2, (3, 2)),       # odd x even
    (22.0, 20.0, 4),            # even
    (17.3, 12.8, (7, 5)),       # odd
    (-1.5, 5.0, 6),             # partly off the left edge: NaN, APERTURE 0
    (43.4, 39.6, (5, 8)),       # partly off the top-right corner
    (22.0, 20.0, 30),           # most of the image
]


@pytest.mark.parametrize("kind", ["spoc", "tica", "one frame"])
@pytest.mark.parametrize("x, y, size", BOXES)
def test_fast_file_is_astropys_file_byte_for_byte(cubes, kind, x, y, size):
    cube = cubes[kind]
    index = load_index(cube)
    coord = SkyCoord(*ffi_wcs(index).pixel_to_world_values(x, y), unit="deg")
    box = cutout_box(ffi_wcs(index), coord, size)
    flux, flux_err = read_box(FileSource(Location.parse(cube)), index, box)
    expected = astropy_file(reference_tpf(index, box, flux, flux_err, coord))

    chunks = read_chunks(FileSource(Location.parse(cube)), index, [box])
    ours = tpf_bytes(index, box, lambda f, e: fill_box(index, box, chunks, f, e), coord, timestamp=WHEN)
    assert len(ours) == len(expected)
    assert bytes(ours) == expected
    if kind == "tica":
        assert index.nplanes == 1 and np.all(flux_err[np.isfinite(flux)] == 0)
    if box.overlap(index.ncols, index.nrows) != box:
        assert np.isnan(flux).any()


@pytest.mark.parametrize("threads", ["auto", 1])
@pytest.mark.parametrize("rows_first", [False, True])
def test_one_call_for_many_boxes_writes_each_file_as_astropy(cubes, monkeypatch, threads, rows_first):
    """cutout_files lays each file out while its rows are read and copies every row in as
    it arrives (shared and merged spans, off-image boxes); rows that arrive before their
    file's draft (``rows_first``: all of them) are copied at the end. Same bytes either way."""
    from cubecut.cutout import engine

    if rows_first:
        real = engine.start_chunks

        def read_everything_first(*args):
            chunks = real(*args)()
            return lambda: chunks

        monkeypatch.setattr(engine, "start_chunks", read_everything_first)
    for kind in ("spoc", "tica"):
        cube = cubes[kind]
        index = load_index(cube)
        coords = [SkyCoord(*ffi_wcs(index).pixel_to_world_values(x, y), unit="deg") for x, y, _ in BOXES]
        files = cutout_files(cube, coords, 6, threads=threads)
        for coord, file in zip(coords, files):
            box = cutout_box(ffi_wcs(index), coord, 6)
            flux, flux_err = read_box(FileSource(Location.parse(cube)), index, box)
            assert bytes(file.data) == astropy_file(reference_tpf(index, box, flux, flux_err, coord)), (kind, box)


def test_checksums_verify_in_astropy_and_break_when_a_byte_changes(cubes):
    index = load_index(cubes["spoc"])
    coord = SkyCoord(*ffi_wcs(index).pixel_to_world_values(-1.5, 5.0), unit="deg")
    (tpf,) = cutout_files(cubes["spoc"], coord, (7, 4))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # astropy warns on a checksum mismatch
        with fits.open(io.BytesIO(tpf.data), checksum=True) as hdul:
            for hdu in hdul:
                assert hdu.verify_checksum() == 1 and hdu.verify_datasum() == 1
                assert len(hdu.header["CHECKSUM"]) == 16
            assert hdul[1].header["DATASUM"] != "0" and hdul[0].header["DATASUM"] == "0"
    with fits.open(io.BytesIO(tpf.data)) as hdul:
        table_at = hdul.fileinfo(1)["datLoc"]
    broken = bytearray(tpf.data)
    broken[table_at + 100] ^= 1  # a byte of the PIXELS table
    with fits.open(io.BytesIO(broken)) as hdul:
        assert hdul[1].verify_datasum() == 0 and hdul[1].verify_checksum() == 0
        assert hdul[0].verify_checksum() == 1


def test_lightkurve_reads_the_same_values_as_from_astropys_file(cubes, tmp_path):
    cube = cubes["spoc"]
    index = load_index(cube)
    coord = SkyCoord(*ffi_wcs(index).pixel_to_world_values(42.8, 20.3), unit="deg")
    box = cutout_box(ffi_wcs(index), coord, (6, 5))
    flux, flux_err = read_box(FileSource(Location.parse(cube)), index, box)
    theirs = tmp_path / "astropy.fits"
    theirs.write_bytes(astropy_file(reference_tpf(index, box, flux, flux_err, coord)))
    ours = Path(cutout(cube, coord, (6, 5), output_dir=tmp_path / "ours")[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a, b = lk.read(str(ours)), lk.read(str(theirs))
    assert isinstance(a, lk.TessTargetPixelFile)
    for attribute in ("flux", "flux_err", "time", "quality", "pos_corr1", "pipeline_mask"):
        ours_values, their_values = getattr(a, attribute), getattr(b, attribute)
        np.testing.assert_array_equal(getattr(ours_values, "value", ours_values),
                                      getattr(their_values, "value", their_values), err_msg=attribute)
    assert (a.column, a.row, a.shape, a.ra, a.dec) == (b.column, b.row, b.shape, b.ra, b.dec)
    assert np.isnan(a.flux.value).any() and (a.hdu[2].data == 1).sum() == np.isfinite(a.flux.value[0]).sum()
    assert a.wcs.to_header_string() == b.wcs.to_header_string()


def test_in_memory_hdulist_is_the_file(cubes):
    index = load_index(cubes["spoc"])
    coord = SkyCoord(*ffi_wcs(index).pixel_to_world_values(20.0, 20.0), unit="deg")
    (file,) = cutout_files(cubes["spoc"], coord, 5)
    (hdul,) = cutout(cubes["spoc"], coord, 5)
    assert (file.nx, file.ny, file.nt) == (5, 5, index.nt) and file.name.endswith("_5-x-5_astrocut.fits")
    assert astropy_file(hdul) == bytes(file.data)  # astropy re-writes it unchanged (same WHEN)
    assert hdul[1].data["FLUX"].shape == (index.nt, 5, 5)


def test_ones_complement_sum_and_encoding_match_astropy():
    rng = np.random.default_rng(5)
    hdu = fits.PrimaryHDU()
    for size in (0, 4, 2880, 2880 * 7):
        data = rng.integers(0, 256, size, dtype=np.uint8)
        assert fitswrite.ones_complement_sum(data) == int(hdu._compute_checksum(data))
        start = int(rng.integers(0, 2 ** 32))
        assert fitswrite.ones_complement_sum(data, start) == int(hdu._compute_checksum(data, start))
    ones = np.full(2880, 255, dtype=np.uint8)  # sums that carry on every word
    assert fitswrite.ones_complement_sum(ones) == int(hdu._compute_checksum(ones)) == 0xFFFFFFFF
    for value in [0, 1, 0xFFFFFFFF, 0x3A3A3A3A, 0x5F5F5F5F, *rng.integers(0, 2 ** 32, 200).tolist()]:
        assert fitswrite.encode_checksum(value) == hdu._char_encode(value), hex(value)


@pytest.mark.parametrize("key, value, comment", [
    ("DATASUM", "0", "data unit checksum updated 2026-01-02T03:04:05"),
    ("DATASUM", "4294967295", "data unit checksum updated 2026-01-02T03:04:05"),
    ("CHECKSUM", "0000000000000000", "HDU checksum updated 2026-01-02T03:04:05"),
    ("X", "it's", ""),
])
def test_string_card_is_astropys_card(key, value, comment):
    assert fitswrite.card_image(key, value, comment) == fits.Card(key, value, comment).image


def test_card_images_are_astropys_for_every_kind_of_value():
    rng = np.random.default_rng(11)
    floats = [0.0, -0.0, 1.0, -1.5, 1e-300, 1.7976931348623157e308, 5e-324, 2457000.0, 0.1 + 0.2,
              *(rng.standard_normal(300) * 10.0 ** rng.integers(-40, 40, 300)).tolist(),
              *rng.standard_normal(50).astype(np.float32), *np.float64(rng.uniform(-360, 360, 50))]
    values = [True, False, np.bool_(True), 0, -1, 2 ** 62, np.int32(-7), np.int64(123456789012), *floats,
              "x", "", "it's", "a" * 8, "b" * 9, "RA---TAN", "with  spaces ", "c" * 66, "d" * 70, None,
              float("nan"), "caf\u00e9"]
    comments = ["", "[deg] right ascension", "x" * 60, "y" * 80]
    keywords = ["CRVAL1", "1CRPX4", "DATE-OBS", "A", "NAXIS1", "HIERARCH ESO LONG KEY"]
    for value in values:
        for comment in comments:
            for keyword in keywords:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    try:
                        expected = fits.Card(keyword, value, comment).image
                    except ValueError as exc:  # e.g. NaN: refused both ways
                        with pytest.raises(type(exc)):
                            fitswrite.card_image(keyword, value, comment)
                        continue
                    assert fitswrite.card_image(keyword, value, comment) == expected, (keyword, value, comment)


def test_header_template_is_shared_by_every_cutout_of_a_cube(cubes):
    from cubecut.cutout import tpf_template

    index = load_index(cubes["spoc"])
    coord = SkyCoord(*ffi_wcs(index).pixel_to_world_values(20.0, 20.0), unit="deg")
    first = tpf_template.template_for(index, coord)
    cutout_files(cubes["spoc"], [coord, SkyCoord(*ffi_wcs(index).pixel_to_world_values(5.0, 30.0), unit="deg")], 4)
    assert tpf_template.template_for(index, coord) is first
    with pytest.raises(tpf_template.TemplateError, match="NOSUCHKEY"):
        first.headers[0].render({"NOSUCHKEY": 1})


def test_wcs_header_values_are_what_astropys_header_of_the_wcs_holds(cubes):
    """The fast writer reads the linear WCS's cards from wcslib's text itself; for fits of
    many boxes (sizes, positions on and off the image) it gets astropy's keys, values and types."""
    index = load_index(cubes["spoc"])
    wcs = ffi_wcs(index)
    rng = np.random.default_rng(17)
    for _ in range(40):
        x, y = rng.uniform(-5, 48), rng.uniform(-5, 44)
        nx, ny = (int(n) for n in rng.integers(1, 40, 2))
        coord = SkyCoord(*wcs.pixel_to_world_values(x, y), unit="deg")
        box = cutout_box(wcs, coord, (nx, ny))
        linear, _, _ = fit_linear_wcs(cutout_wcs(wcs, box), box.nx, box.ny)
        expected = {card.keyword: card.value for card in linear.to_header().cards}
        ours = wcs_header_values(linear)
        assert list(ours) == list(expected)
        assert [(type(v), repr(v)) for v in ours.values()] == [(type(v), repr(v)) for v in expected.values()]
