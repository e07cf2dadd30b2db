"""Images: astrocut's stretches value for value, PNG/JPG cutouts of FFIs (grey and colour),
and the quick-look PNG of a TPF (a frame and the aperture light curve)."""
from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from PIL import Image

import cubecut
from cubecut.cutout import ffi_wcs, load_index
from cubecut.images import (STRETCHES, ImageError, aperture_light_curve, central_aperture, colour_image, encode_image,
                            img_cut, normalize, quicklook_png)
from cubecut.ingest.run import ingest
from cubecut.synth import make_sector


@pytest.fixture(scope="module")
def sector(tmp_path_factory) -> tuple[list[str], Path]:
    folder = tmp_path_factory.mktemp("images")
    ffis = [str(p) for p in make_sector(folder / "ffis", sector=1, camera=1, ccd=1, frames=8, shape=(48, 112),
                                        seed=5)]
    cube = folder / "tess-s0001-1-1-cube.fits"
    ingest(ffis, str(cube))
    return ffis, cube


def sky(cube: Path, x: float, y: float) -> SkyCoord:
    world = ffi_wcs(load_index(cube)).pixel_to_world(x, y)
    return SkyCoord(world.ra, world.dec)


@pytest.mark.parametrize("stretch", sorted(STRETCHES))
@pytest.mark.parametrize("interval", [{}, {"minmax_percent": [0.5, 99.5]}, {"minmax_percent": [10, 90]},
                                      {"minmax_value": [20.0, 800.0]}])
@pytest.mark.parametrize("invert", [False, True])
def test_normalize_equals_astrocut(stretch, interval, invert):
    from astrocut import normalize_img

    image = np.random.default_rng(1).lognormal(5.0, 1.0, size=(23, 31))
    ours = normalize(image, stretch, invert=invert, **interval)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = normalize_img(image, stretch, invert=invert, **interval)
    assert ours.dtype == np.uint8
    np.testing.assert_array_equal(ours, theirs)


def test_nan_pixels_are_the_lowest_level_and_do_not_move_the_scale():
    image = np.random.default_rng(2).normal(100.0, 10.0, size=(20, 20))
    holed = image.copy()
    holed[:, :3] = np.nan
    plain = normalize(image[:, 3:], "sqrt", minmax_percent=[1, 99])
    np.testing.assert_array_equal(normalize(holed, "sqrt", minmax_percent=[1, 99])[:, 3:], plain)
    assert (normalize(holed, "linear")[:, :3] == 0).all()
    assert (normalize(holed, "linear", invert=True)[:, :3] == 255).all()
    assert (normalize(np.full((4, 4), np.nan)) == 0).all()


def test_bad_requests():
    with pytest.raises(ImageError, match="stretch"):
        normalize(np.ones((3, 3)), "cubic")
    with pytest.raises(ImageError, match="empty"):
        normalize(np.ones((0, 3)))
    with pytest.raises(ImageError, match="format"):
        encode_image(np.zeros((3, 3), np.uint8), "gif")
    with pytest.raises(ImageError, match="shape"):
        colour_image(np.ones((3, 3)), np.ones((3, 3)), np.ones((3, 4)))


def test_encoded_images_are_flipped_and_carry_metadata():
    pixels = np.zeros((4, 6), dtype=np.uint8)
    pixels[0, 0] = 255  # FITS row 0 is the bottom of the picture
    png = Image.open(io.BytesIO(encode_image(pixels, "png", metadata={"center_ra_deg": 1.5})))
    assert png.size == (6, 4) and png.mode == "L"
    assert png.getpixel((0, 3)) == 255 and png.getpixel((0, 0)) == 0
    assert png.text["center_ra_deg"] == "1.5"
    rgb = np.dstack([pixels] * 3)
    jpg = Image.open(io.BytesIO(encode_image(rgb, "jpg", flip=False, metadata={"origin": "cubecut"})))
    assert jpg.format == "JPEG" and jpg.mode == "RGB" and "cubecut" in jpg.getexif()[270]


def test_img_cut_grey_and_colour(sector, tmp_path):
    ffis, cube = sector
    coord = sky(cube, 80.3, 20.6)
    paths = img_cut(ffis[:2], coord, (21, 15), img_format="png", output_dir=tmp_path, stretch="log")
    assert [Path(p).name for p in paths] == [
        f"{Path(f).name[:-5]}_{coord.ra.deg:.7f}_{coord.dec.deg:.7f}_21-x-15_astrocut.png" for f in ffis[:2]]
    picture = Image.open(paths[0])
    assert picture.size == (21, 15) and picture.mode == "L"
    flux = cubecut.cutout(cube, coord, (21, 15))[0][1].data["FLUX"][0]
    expected = np.flipud(normalize(flux, "log", minmax_percent=[0.5, 99.5]))
    np.testing.assert_array_equal(np.asarray(picture), expected)
    (colour,) = img_cut(ffis[:3], coord, 9, colorize=True, output_dir=tmp_path)
    assert Path(colour).name.startswith("cutout_") and colour.endswith(".jpg")
    assert Image.open(colour).mode == "RGB" and Image.open(colour).size == (9, 9)
    with pytest.raises(ImageError, match="3 images"):
        img_cut(ffis[:2], coord, 9, colorize=True, output_dir=tmp_path)


def test_quicklook_of_a_tpf(sector, tmp_path):
    ffis, cube = sector
    tpf = cubecut.cutout(cube, sky(cube, 80.3, 20.6), 15)[0]
    curve = aperture_light_curve(tpf)
    flux = tpf[1].data["FLUX"].astype(np.float64)
    np.testing.assert_allclose(curve.flux, flux[:, curve.aperture].sum(axis=1))
    np.testing.assert_array_equal(curve.time, tpf[1].data["TIME"])
    assert curve.aperture.sum() == 21 and curve.aperture[7, 7]  # radius 2.5 around the centre pixel
    path = tmp_path / "quicklook.png"
    data = quicklook_png(tpf, path)
    assert path.read_bytes() == data
    picture = Image.open(path)
    assert picture.format == "PNG" and picture.size == (980, 420) and picture.mode == "RGB"
    median = quicklook_png(tpf, frame="median")
    assert median != data
    assert curve.scale == "BTJD"  # SPOC times are barycentric
    tpf[0].header["TIMEREF"] = None  # as TICA TPFs have it: spacecraft times, the axis says TJD
    assert aperture_light_curve(tpf).scale == "TJD" and quicklook_png(tpf) != data
    pixels = np.asarray(picture)
    assert (pixels == (220, 40, 40)).all(axis=2).any(), "the aperture is outlined"
    assert (pixels == (31, 119, 180)).all(axis=2).any(), "light curve points are drawn"


def test_quicklook_of_a_cutout_partly_off_the_image(sector):
    ffis, cube = sector
    tpf = cubecut.cutout(cube, sky(cube, 111.0, 47.0), (9, 5))[0]
    assert central_aperture(5, 9, 1.0).sum() == 5
    assert Image.open(io.BytesIO(quicklook_png(tpf, radius=1.0))).size == (980, 420)
    with pytest.raises(ImageError, match="frame"):
        quicklook_png(tpf, frame="last")
