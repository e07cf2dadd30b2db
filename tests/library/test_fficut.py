"""Cutouts straight from FFIs (byte ranges, no cube): equal to cube cutouts value for value;
combining them (astrocut's CutoutsCombiner), done with alignment checks and weights."""
from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.io import fits

import cubecut
from cubecut.cutout import cutout_box, ffi_wcs, load_index
from cubecut.errors import FFIError, OutsideCubeError
from cubecut.fficut import (CombineError, combine_cutouts, cutout_images, fits_cut, image_hdus, image_wcs,
                            inverse_variance)
from cubecut.ingest.run import ingest
from cubecut.storage import FileSource, Location, ReadStats, get_bytes, put_bytes
from cubecut.synth import make_sector

NROWS, NCOLS, NT = 64, 128, 6


@pytest.fixture(scope="module")
def sector(tmp_path_factory) -> tuple[list[str], Path]:
    folder = tmp_path_factory.mktemp("fficut")
    ffis = [str(p) for p in make_sector(folder / "ffis", sector=1, camera=1, ccd=1, frames=NT,
                                        shape=(NROWS, NCOLS), seed=2)]
    cube = folder / "tess-s0001-1-1-cube.fits"
    ingest(ffis, str(cube))
    return ffis, cube


def sky(cube: Path, x: float, y: float) -> SkyCoord:
    world = ffi_wcs(load_index(cube)).pixel_to_world(x, y)
    return SkyCoord(world.ra, world.dec, frame="icrs")


#: (x, y) 0-based and size: interior, partly off the left/bottom/top edges, one pixel, wide.
PLACES = [(90.2, 30.7, (9, 7)), (1.3, 20.4, 11), (70.6, 0.8, (5, 9)), (100.1, NROWS - 1.4, 8),
          (64.0, 32.0, 1), (50.5, 40.2, (40, 3))]


@pytest.mark.parametrize("x, y, size", PLACES)
def test_ffi_cutouts_equal_cube_cutouts_value_for_value(sector, x, y, size):
    ffis, cube = sector
    coord = sky(cube, x, y)
    tpf = cubecut.cutout(cube, coord, size)[0]
    per_file = fits_cut(ffis, coord, size, extension="all", single_outfile=False)
    assert len(per_file) == NT
    for frame, hdul in enumerate(per_file):
        assert [h.name for h in hdul] == ["PRIMARY", "CUTOUT", "CUTOUT"]
        np.testing.assert_array_equal(hdul[1].data, tpf[1].data["FLUX"][frame])
        np.testing.assert_array_equal(hdul[2].data, tpf[1].data["FLUX_ERR"][frame])
        assert hdul[1].header["CRVAL1P"] == tpf[1].header["1CRV5P"]
        assert hdul[1].header["CRVAL2P"] == tpf[1].header["2CRV5P"]


def test_cutout_wcs_is_the_ffi_wcs_shifted_by_the_box(sector):
    ffis, cube = sector
    coord = sky(cube, 90.2, 30.7)
    hdu = fits_cut(ffis[:1], coord, (9, 7))[0][1]
    header = fits.getheader(ffis[0], 1)
    box = cutout_box(ffi_wcs(load_index(cube)), coord, (9, 7))
    assert hdu.header["CRPIX1"] == header["CRPIX1"] - box.x0
    assert hdu.header["CRPIX2"] == header["CRPIX2"] - box.y0
    assert "CD1_1" not in hdu.header and hdu.header["CTYPE1"] == "RA---TAN-SIP"
    ours, full = image_wcs(hdu.header), image_wcs(header)
    px, py = np.meshgrid(np.arange(9), np.arange(7))
    np.testing.assert_allclose(ours.all_pix2world(px.ravel(), py.ravel(), 0),
                               full.all_pix2world(px.ravel() + box.x0, py.ravel() + box.y0, 0), atol=1e-9)
    assert (hdu.header["O_EXT_NM"], hdu.header["ORIG_EXT"]) == (header["EXTNAME"], 1)
    assert hdu.header["ORIG_FLE"] == Path(ffis[0]).name


def test_only_the_box_rows_are_read(sector):
    """One read per header, then one range per image HDU from the box's first to last pixel:
    a 9x7 cutout costs exactly (6 * ncols + 9 - 1) * 4 bytes more per HDU than a 1x1 one."""
    ffis, cube = sector
    coord = sky(cube, 90.0, 30.0)
    small, big = ReadStats(), ReadStats()
    cutout_images(ffis, coord, 1, extension="all", stats=small)
    cutout_images(ffis, coord, (9, 7), extension="all", stats=big)
    assert small.requests == big.requests == NT * (3 + 2)
    assert big.bytes - small.bytes == NT * 2 * ((7 - 1) * NCOLS + 9 - 1) * 4
    assert big.bytes < NT * 3 * 8 * 2880 + NT * 2 * 7 * NCOLS * 4  # headers + the rows, never whole images


def test_single_file_layout_and_astrocut_names(sector, tmp_path):
    ffis, cube = sector
    coord = sky(cube, 90.2, 30.7)
    (single,) = fits_cut(ffis[:3], coord, (9, 7))
    assert [h.name for h in single] == ["PRIMARY"] + ["CUTOUT"] * 3
    assert single[0].header["RA_OBJ"] == pytest.approx(coord.ra.deg)
    assert [h.header["ORIG_FLE"] for h in single[1:]] == [Path(f).name for f in ffis[:3]]
    written = fits_cut(ffis[:3], coord, (9, 7), output_dir=tmp_path)
    assert [Path(p).name for p in written] == [f"cutout_{coord.ra.deg:.7f}_{coord.dec.deg:.7f}_9-x-7_astrocut.fits"]
    written = fits_cut(ffis[:2], coord, 5, single_outfile=False, output_dir=tmp_path)
    assert [Path(p).name for p in written] == [
        f"{Path(f).name[:-5]}_{coord.ra.deg:.7f}_{coord.dec.deg:.7f}_5-x-5_astrocut.fits" for f in ffis[:2]]
    with fits.open(written[0]) as hdul:
        assert hdul[1].data.shape == (5, 5) and hdul[1].header["EXTNAME"] == "CUTOUT"


def test_ffis_on_s3(sector, bucket):
    ffis, cube = sector
    urls = [f"s3://{bucket}/ffis/{Path(f).name}" for f in ffis[:2]]
    for local, url in zip(ffis, urls):
        put_bytes(url, Path(local).read_bytes())
    coord = sky(cube, 30.5, 10.5)
    remote = fits_cut(urls, coord, 7, extension="all", single_outfile=False)
    local = fits_cut(ffis[:2], coord, 7, extension="all", single_outfile=False)
    for a, b in zip(remote, local):
        for ext in (1, 2):
            np.testing.assert_array_equal(a[ext].data, b[ext].data)
    (url,) = fits_cut(urls, coord, 7, output_dir=f"s3://{bucket}/out/")
    assert url.startswith(f"s3://{bucket}/out/cutout_")
    with fits.open(io.BytesIO(get_bytes(url)[0])) as hdul:
        assert len(hdul) == 3


def test_tica_ffis_and_image_hdus(tmp_path):
    ffis = make_sector(tmp_path, sector=27, camera=1, ccd=1, frames=1, shape=(32, 80), product="tica")
    source = FileSource(Location.parse(ffis[0]))
    (image,) = image_hdus(source)
    assert image.number == 0 and image.shape == (32, 80)
    world = image_wcs(image.header).pixel_to_world(60.0, 16.0)
    (hdul,) = fits_cut([str(ffis[0])], SkyCoord(world.ra, world.dec), 3)
    np.testing.assert_array_equal(hdul[1].data, fits.getdata(ffis[0])[15:18, 59:62])


def test_errors(sector):
    ffis, cube = sector
    with pytest.raises(OutsideCubeError, match="not on"):
        fits_cut(ffis[:1], sky(cube, 400.0, 30.0), 5)
    with pytest.raises(FFIError, match="HDU"):
        fits_cut(ffis[:1], sky(cube, 60.0, 30.0), 5, extension=[1, 5])
    with pytest.raises(FFIError, match="no 2-D image"):
        image_hdus(FileSource(Location.parse(str(cube))))


def test_image_scaling_that_is_not_a_finite_number_is_a_named_error(tmp_path):
    ffis = make_sector(tmp_path, sector=27, camera=1, ccd=1, frames=1, shape=(32, 80), product="tica")
    for value in ("'abc'", "NAN"):
        with fits.open(ffis[0]) as hdul:
            header_text = hdul[0].header.tostring()
        card = f"{'BSCALE':8s}= {value:>20s}".ljust(80)
        data = bytearray(Path(ffis[0]).read_bytes())
        end = header_text.index("END" + " " * 77)
        data[end:end + 80] = card.encode()
        data[end + 80:end + 160] = b"END".ljust(80)
        bad = tmp_path / f"bad-{value.strip(chr(39))}.fits"
        bad.write_bytes(bytes(data))
        with pytest.raises(FFIError, match="BSCALE"):
            image_hdus(FileSource(Location.parse(str(bad))))


@pytest.fixture(scope="module")
def cutouts(sector) -> list[fits.HDUList]:
    ffis, cube = sector
    return fits_cut(ffis, sky(cube, 1.3, 30.4), (8, 6), extension="all", single_outfile=False)


def test_mean_and_median_combine(cutouts):
    flux = np.stack([h[1].data for h in cutouts]).astype(np.float64)
    mean = combine_cutouts(cutouts)
    assert [h.name for h in mean] == ["PRIMARY", "CUTOUT", "CUTOUT"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        np.testing.assert_allclose(mean[1].data, np.nanmean(flux, axis=0), rtol=1e-6)
        np.testing.assert_allclose(combine_cutouts(cutouts, method="median")[1].data,
                                   np.nanmedian(flux, axis=0), rtol=1e-6)
    assert np.isnan(mean[1].data[:, 0]).all(), "off-image pixels stay NaN"
    assert mean[1].header["NCOMBINE"] == NT and mean[1].header["COMBMETH"] == "mean"
    assert "ORIG_FLE" not in mean[1].header and mean[1].header["CTYPE1"] == "RA---TAN-SIP"


def test_default_mean_equals_astrocut_combiner(cutouts):
    from astrocut import CutoutsCombiner

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = CutoutsCombiner(cutouts).combine(memory_only=True)
    ours = combine_cutouts(cutouts)
    for ext in (1, 2):
        np.testing.assert_allclose(ours[ext].data, theirs[ext].data, rtol=1e-6)
        assert np.array_equal(np.isnan(ours[ext].data), np.isnan(theirs[ext].data))


def test_inverse_variance_mean_propagates_the_error(cutouts):
    flux = np.stack([h[1].data for h in cutouts]).astype(np.float64)
    sigma = np.stack([h[2].data for h in cutouts]).astype(np.float64)
    combined = combine_cutouts(cutouts, weights=inverse_variance(2), error_extension=2)
    w = 1 / sigma ** 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        np.testing.assert_allclose(combined[1].data, np.nansum(w * flux, 0) / np.nansum(w, 0), rtol=1e-6)
        total = np.nansum(w, 0)
        np.testing.assert_allclose(combined[2].data, np.where(total > 0, 1 / np.sqrt(total), np.nan), rtol=1e-6)
    assert combined[2].header["COMBMETH"] == "error"
    assert (np.nan_to_num(combined[2].data, nan=np.inf) <= np.nan_to_num(sigma, nan=np.inf).min(axis=0)).all()


def test_combine_refuses_what_does_not_line_up(sector, cutouts):
    ffis, cube = sector
    moved = fits_cut(ffis[:1], sky(cube, 4.3, 30.4), (8, 6), extension="all")
    with pytest.raises(CombineError, match="misaligned"):
        combine_cutouts([cutouts[0], moved[0]])
    other = fits_cut(ffis[:1], sky(cube, 1.3, 30.4), (9, 6), extension="all")
    with pytest.raises(CombineError, match="shapes"):
        combine_cutouts([cutouts[0], other[0]])
    with pytest.raises(CombineError, match="extensions"):
        combine_cutouts([cutouts[0], fits_cut(ffis[:1], sky(cube, 1.3, 30.4), (8, 6))[0]])
    with pytest.raises(CombineError, match="no weights"):
        combine_cutouts(cutouts, method="median", weights=inverse_variance(2))
    with pytest.raises(CombineError, match="unknown"):
        combine_cutouts(cutouts, method="max")
