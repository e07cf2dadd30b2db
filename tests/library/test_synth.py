"""Tests of the synthetic FFI generator ``cubecut.synth``."""
from __future__ import annotations

import re
import warnings

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from astropy.time import Time
from astropy.wcs import WCS, FITSFixedWarning

from cubecut.errors import InputError
from cubecut.synth import make_sector, star_catalog

tesswcs = pytest.importorskip("tesswcs")

SMALL = (40, 50)
SPOC_NAME = re.compile(r"^tess(\d{13})-s(\d{4})-(\d)-(\d)-(\d{4})-s_ffic\.fits$")
TICA_NAME = re.compile(r"^hlsp_tica_tess_ffi_s(\d{4})-o([12])-(\d{8})-cam(\d)-ccd(\d)_tess_v01_img\.fits$")


def header_wcs(header: fits.Header) -> WCS:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        return WCS(header)


@pytest.fixture(scope="module")
def spoc(tmp_path_factory):
    """Three small SPOC frames of sector 6, camera 1, CCD 1."""
    out = tmp_path_factory.mktemp("spoc")
    return make_sector(out, sector=6, camera=1, ccd=1, frames=3, shape=SMALL, seed=1)


@pytest.fixture(scope="module")
def stars_frame(tmp_path_factory):
    """One wider crop with plenty of stars on science pixels (cols 44..127)."""
    out = tmp_path_factory.mktemp("stars")
    return make_sector(out, sector=27, camera=3, ccd=2, frames=1, shape=(64, 128), seed=3)[0]


# --- SPOC layout and headers ---------------------------------------------------------------

def test_spoc_layout(spoc):
    assert len(spoc) == 3
    for path in spoc:
        assert len(path.name) == 44
        m = SPOC_NAME.match(path.name)
        assert m and m.group(2, 3, 4) == ("0006", "1", "1")
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # checksum failures and bad cards warn
            with fits.open(path, checksum=True) as hdus:
                assert len(hdus) == 3
                assert hdus[0].data is None
                for ext in (1, 2):
                    assert hdus[ext].data.dtype == np.dtype(">f4")
                    assert hdus[ext].data.shape == SMALL
                    assert np.isfinite(hdus[ext].data).all()
                assert (hdus[2].data > 0).all()


def test_spoc_headers(spoc):
    with fits.open(spoc[0]) as hdus:
        h0, h1, h2 = (hdu.header for hdu in hdus)
    assert (h0["BITPIX"], h0["NAXIS"], h0["NEXTEND"]) == (8, 0, 2)
    assert h0["ORIGIN"] == "NASA/Ames" and h0["TELESCOP"] == "TESS"
    assert h0["INSTRUME"] == "TESS Photometer"
    for key in ["DATE", "TSTART", "TSTOP", "DATE-OBS", "DATE-END", "CREATOR", "PROCVER", "FILEVER",
                "TIMVERSN", "DATA_REL", "CAMERA", "CCD", "CHECKSUM"]:
        assert key in h0, key
    required = [
        "INHERIT", "EXTNAME", "TELESCOP", "INSTRUME", "CAMERA", "CCD", "EXPOSURE", "TIMEREF", "TASSIGN",
        "TIMESYS", "BJDREFI", "BJDREFF", "TIMEUNIT", "TELAPSE", "LIVETIME", "TSTART", "TSTOP", "DATE-OBS",
        "DATE-END", "DEADC", "TIMEPIXR", "TIERRELA", "INT_TIME", "READTIME", "FRAMETIM", "NUM_FRM",
        "TIMEDEL", "BACKAPP", "DEADAPP", "VIGNAPP", "NREADOUT", "FXDOFF", "RADESYS", "EQUINOX", "WCSAXES",
        "CTYPE1", "CTYPE2", "CRVAL1", "CRVAL2", "CRPIX1", "CRPIX2", "CD1_1", "CD1_2", "CD2_1", "CD2_2",
        "A_ORDER", "B_ORDER", "AP_ORDER", "BP_ORDER", "WCSNAMEP", "WCSAXESP", "CTYPE1P", "CTYPE2P",
        "CRPIX1P", "CRVAL1P", "CDELT1P", "CRPIX2P", "CRVAL2P", "CDELT2P", "DQUALITY", "BARYCORR",
        "IMAGTYPE", "CHECKSUM", "DATASUM",
        *[f"{k}{o}" for k in ("GAIN", "READNOI", "MEANBLC") for o in "ABCD"],
    ]
    for key in required:
        assert key in h1, key
        assert key in h2, key
    assert h1["EXTNAME"] == "CAMERA.CCD 1.1 cal" and h1["IMAGTYPE"] == "cal"
    assert h2["EXTNAME"] == "CAMERA.CCD 1.1 uncert" and h2["IMAGTYPE"] == "uncert"
    assert (h1["BJDREFI"], h1["BJDREFF"], h1["WCSAXES"]) == (2457000, 0.0, 2)
    assert (h1["CTYPE1"], h1["CTYPE2"]) == ("RA---TAN-SIP", "DEC--TAN-SIP")
    assert (h1["CTYPE1P"], h1["CTYPE2P"]) == ("RAWX", "RAWY")
    assert h1["NUM_FRM"] == 900 and h1["DEADC"] == pytest.approx(0.792)
    assert h1["EXPOSURE"] == pytest.approx(h1["LIVETIME"]) == pytest.approx(h1["TELAPSE"] * 0.792)
    assert h1["TSTART"] == h0["TSTART"] and h1["DATE-END"] == h0["DATE-END"]
    for header in (h1, h2):
        assert "COMMENT" not in header and "HISTORY" not in header
        assert all(value != "" for value in header.values())
    assert h1["A_ORDER"] >= 2 and "A_2_0" in h1 and "AP_1_0" in h1


def test_string_keywords_keep_their_length(spoc):
    """astrocut sizes table columns from the template FFI; strings must not vary in length."""
    headers = [fits.getheader(p, 1) for p in spoc]
    for key, value in headers[0].items():
        if isinstance(value, str) and key != "DATASUM":
            assert {len(h[key]) for h in headers} == {len(value)}, key


# --- WCS ---------------------------------------------------------------------------------

@pytest.mark.parametrize("sector,camera,ccd", [(6, 1, 1), (27, 3, 2), (61, 4, 4)])
def test_wcs_matches_tesswcs(tmp_path, sector, camera, ccd):
    path = make_sector(tmp_path, sector=sector, camera=camera, ccd=ccd, frames=1, shape=(8, 8))[0]
    header = fits.getheader(path, 1)
    ours = header_wcs(header)
    truth = tesswcs.WCS.from_sector(sector, camera, ccd)
    assert (header["CRPIX1"], header["CRPIX2"]) == tuple(truth.wcs.crpix)
    # Corners and middle of the full FFI (0-based pixels), collateral corners included.
    x = np.array([0.0, 2135.0, 0.0, 2135.0, 1044.0, 44.0, 2091.0, 700.3])
    y = np.array([0.0, 0.0, 2077.0, 2077.0, 1000.0, 0.0, 2047.0, 1500.7])
    # Same sky for the same pixel (the header carries tesswcs' coefficients) ...
    np.testing.assert_allclose(ours.all_pix2world(x, y, 0), truth.all_pix2world(x, y, 0), rtol=0, atol=1e-9)
    # ... and the same pixel for the same sky, to the precision of the iterative inversion.
    x2, y2 = ours.world_to_pixel(truth.pixel_to_world(x, y))
    assert np.hypot(x2 - x, y2 - y).max() < 1e-3


def test_crop_keeps_wcs(tmp_path):
    small = make_sector(tmp_path / "a", sector=6, camera=1, ccd=1, frames=1, shape=(8, 8))[0]
    wide = make_sector(tmp_path / "b", sector=6, camera=1, ccd=1, frames=1, shape=(30, 90))[0]
    h_small, h_wide = fits.getheader(small, 1), fits.getheader(wide, 1)
    for key in ("CRPIX1", "CRPIX2", "CRVAL1", "CRVAL2", "CD1_1", "CD2_2", "A_2_0"):
        assert h_small[key] == h_wide[key]
    assert (h_small["NAXIS1"], h_small["NAXIS2"]) == (8, 8)
    assert (h_wide["NAXIS1"], h_wide["NAXIS2"]) == (90, 30)


# --- times and quality -------------------------------------------------------------------

@pytest.mark.parametrize("sector,cadence_s", [(6, 1800.0), (27, 600.0), (61, 200.0)])
def test_times_follow_the_real_cadence(tmp_path, sector, cadence_s):
    paths = make_sector(tmp_path, sector=sector, camera=2, ccd=3, frames=4, shape=(6, 6))
    headers = [fits.getheader(p, 1) for p in paths]
    tstart = np.array([h["TSTART"] for h in headers])
    tstop = np.array([h["TSTOP"] for h in headers])
    cadence_d = cadence_s / 86400.0
    start = float(tesswcs.pointings[tesswcs.pointings["Sector"] == sector]["Start"][0]) - 2457000
    assert tstart[0] == pytest.approx(start)
    assert np.all(np.diff(tstart) > 0)
    np.testing.assert_allclose(np.diff(tstart), cadence_d, rtol=1e-9)
    np.testing.assert_allclose(tstop - tstart, cadence_d, rtol=1e-9)
    for h, path in zip(headers, paths):
        assert h["TELAPSE"] == pytest.approx(cadence_d) and h["TIMEDEL"] == pytest.approx(cadence_d)
        assert h["NUM_FRM"] == round(cadence_s / 2)
        assert 0 < abs(h["BARYCORR"]) < 0.0058  # at most 1 AU of light travel
        # DATE-OBS/END: the UTC dates of TSTART/TSTOP at the spacecraft.
        for key, btjd in (("DATE-OBS", h["TSTART"]), ("DATE-END", h["TSTOP"])):
            assert h[key].endswith("Z")
            utc = Time(h[key][:-1], format="isot", scale="utc")
            assert abs((utc.tdb.jd - (btjd + 2457000 - h["BARYCORR"])) * 86400) < 0.002
        end = Time(h["DATE-END"][:-1], format="isot", scale="utc").yday
        assert SPOC_NAME.match(path.name).group(1) == re.sub(r"\D", "", end)[:13]
    assert [p.name for p in paths] == sorted(p.name for p in paths)
    barycorr = np.array([h["BARYCORR"] for h in headers])
    assert np.abs(np.diff(barycorr)).max() < 1e-5  # slowly varying


def test_momentum_dumps_flag_frames(tmp_path):
    from cubecut.synth.sector import load_sector
    from cubecut.synth.timing import MOMENTUM_DUMP_FLAGS, frame_times

    info = load_sector(6, 1, 1)
    whole = frame_times(info, 0, 1300)
    flagged = np.flatnonzero(whole.quality)
    assert 6 <= len(flagged) <= 12
    assert set(whole.quality[flagged]) == {MOMENTUM_DUMP_FLAGS}
    assert MOMENTUM_DUMP_FLAGS & 32 and MOMENTUM_DUMP_FLAGS & 128
    np.testing.assert_allclose(np.diff(whole.tstart[flagged]), 3.125, atol=0.021)

    first = int(flagged[0])
    paths = make_sector(tmp_path, sector=6, camera=1, ccd=1, frames=3, shape=(6, 6), first_frame=first - 1)
    assert [fits.getheader(p, 1)["DQUALITY"] for p in paths] == [0, MOMENTUM_DUMP_FLAGS, 0]
    for p in paths:
        assert np.isfinite(fits.getdata(p, 1)).all()


# --- pixels and stars --------------------------------------------------------------------

def test_catalog_file_matches_star_catalog(stars_frame):
    written = Table.read(stars_frame.parent / "stars.ecsv")
    made = star_catalog(sector=27, camera=3, ccd=2, shape=(64, 128), seed=3)
    assert len(made) > 5
    assert written.colnames[:6] == ["ra", "dec", "col", "row", "flux", "variable"]
    for name in made.colnames:
        np.testing.assert_array_equal(np.asarray(written[name]), np.asarray(made[name]))
    assert written["variable"].dtype == bool
    # Inside the crop, on science pixels, and at the sky position the header WCS gives.
    assert (made["col"] >= 43.5).all() and (made["col"] < 127.5).all()
    assert (made["row"] >= -0.5).all() and (made["row"] < 63.5).all()
    x, y = header_wcs(fits.getheader(stars_frame, 1)).all_world2pix(made["ra"], made["dec"], 0)
    assert np.hypot(x - made["col"], y - made["row"]).max() < 1e-4


def test_catalog_is_deterministic_and_crops_are_subsets():
    full = star_catalog(sector=6, camera=1, ccd=1, seed=5)
    again = star_catalog(sector=6, camera=1, ccd=1, seed=5)
    other = star_catalog(sector=6, camera=1, ccd=1, seed=6)
    np.testing.assert_array_equal(full["ra"], again["ra"])
    assert len(other) == len(full) and not np.array_equal(other["ra"], full["ra"])
    crop = star_catalog(sector=6, camera=1, ccd=1, shape=(64, 64), seed=5)
    inside = full[(full["col"] < 63.5) & (full["row"] < 63.5)]
    np.testing.assert_array_equal(crop["col"], inside["col"])
    # Many faint, few bright; realistic fluxes (T = 10 gives 15,000 e-/s); some variables.
    counts = np.histogram(full["tmag"], bins=[6, 8, 10, 12, 14, 15.5])[0]
    assert np.all(np.diff(counts) > 0)
    np.testing.assert_allclose(full["flux"], 15000 * 10 ** (-0.4 * (full["tmag"] - 10)))
    kinds = set(full["var_type"][full["variable"]])
    assert kinds == {"sine", "transit"} and 0 < full["variable"].mean() < 0.05


@pytest.mark.parametrize("sector,camera,ccd,seed", [(1, 1, 1, 0), (27, 4, 3, 0), (61, 2, 2, 7)])
def test_small_crops_get_stars(sector, camera, ccd, seed):
    crop = star_catalog(sector=sector, camera=camera, ccd=ccd, shape=(64, 64), seed=seed)
    assert len(crop) >= 3
    assert crop["flux"].max() > 1000


def test_catalog_stars_are_local_maxima(stars_frame):
    image = fits.getdata(stars_frame, 1)
    rows, cols = image.shape
    cat = star_catalog(sector=27, camera=3, ccd=2, shape=(64, 128), seed=3)
    everywhere = star_catalog(sector=27, camera=3, ccd=2, shape=(80, 144), seed=3)  # neighbours off the crop
    checked = 0
    for star in cat[np.argsort(cat["flux"])[::-1]]:
        c, r = int(round(star["col"])), int(round(star["row"]))
        if not (45 <= c < cols - 1 and 1 <= r < rows - 1) or star["flux"] < 300:
            continue
        if max(abs(star["col"] - c), abs(star["row"] - r)) > 0.3:
            continue  # near a pixel edge the neighbour gets as much light
        near = np.hypot(everywhere["col"] - star["col"], everywhere["row"] - star["row"]) < 6
        if everywhere["flux"][near].sum() > 1.1 * star["flux"]:
            continue  # crowded: other stars add > 10 % of its light nearby
        patch = image[r - 1:r + 2, c - 1:c + 2]
        assert image[r, c] == patch.max(), (star["col"], star["row"])
        checked += 1
    assert checked >= 2


def test_noise_matches_uncertainty(spoc):
    from cubecut.synth.scene import Scene
    from cubecut.synth.sector import load_sector

    scene = Scene(load_sector(6, 1, 1), SMALL, seed=1)
    for path in spoc:
        with fits.open(path) as hdus:
            flux, sigma, h = hdus[1].data, hdus[2].data, hdus[1].header
        z = (flux - scene.signal(0.5 * (h["TSTART"] + h["TSTOP"]))) / sigma
        assert abs(z.mean()) < 0.1 and 0.9 < z.std() < 1.1
    # Collateral columns (0-43) see no sky: zero signal, read noise only.
    assert abs(np.median(flux[:, :44])) < 1.0 and np.median(flux[:, 44:]) > 20


def test_sky_varies_slowly(tmp_path):
    paths = make_sector(tmp_path, sector=6, camera=1, ccd=1, frames=2, shape=(20, 60), seed=2)
    first, second = (fits.getdata(p, 1)[:, 44:] for p in paths)
    sigma = fits.getdata(paths[0], 2)[:, 44:]
    assert np.median(np.abs(second - first) / sigma) < 3


def test_variable_stars_vary():
    from cubecut.synth.scene import Scene
    from cubecut.synth.sector import load_sector

    shape = (500, 500)
    cat = star_catalog(sector=6, camera=1, ccd=1, shape=shape)
    scene = Scene(load_sector(6, 1, 1), shape, seed=0)
    transit = cat[(cat["var_type"] == "transit") & (cat["col"] > 50) & (cat["row"] > 5)
                  & (cat["col"] < 490) & (cat["row"] < 490)][0]
    r, c = int(round(transit["row"])), int(round(transit["col"]))
    before = scene.star_image(transit["epoch"] - transit["duration"])[r, c]
    during = scene.star_image(transit["epoch"])[r, c]
    after = scene.star_image(transit["epoch"] + transit["period"] + transit["duration"])[r, c]
    assert before == after
    dip = (before - during) / (transit["amplitude"] * transit["flux"])
    assert 0.05 < dip < 0.3  # depth times the share of the star's light on its peak pixel

    sine = cat[cat["var_type"] == "sine"][0]
    r, c = int(round(sine["row"])), int(round(sine["col"]))
    quarter = sine["period"] / 4
    high = scene.star_image(sine["epoch"] + quarter)[r, c]
    low = scene.star_image(sine["epoch"] + 3 * quarter)[r, c]
    assert high > low


# --- determinism and continuity ------------------------------------------------------------

def test_same_seed_same_bytes(tmp_path, spoc):
    again = make_sector(tmp_path, sector=6, camera=1, ccd=1, frames=3, shape=SMALL, seed=1)
    assert [p.name for p in again] == [p.name for p in spoc]
    for a, b in zip(again, spoc):
        assert a.read_bytes() == b.read_bytes()
    other = make_sector(tmp_path / "other", sector=6, camera=1, ccd=1, frames=1, shape=SMALL, seed=2)[0]
    assert not np.array_equal(fits.getdata(other, 1), fits.getdata(spoc[0], 1))


def test_first_frame_continues_the_sector(tmp_path):
    whole = make_sector(tmp_path / "whole", sector=27, camera=1, ccd=2, frames=5, shape=(12, 60), seed=4)
    later = make_sector(tmp_path / "later", sector=27, camera=1, ccd=2, frames=2, shape=(12, 60), seed=4,
                        first_frame=3)
    assert [p.name for p in later] == [p.name for p in whole[3:]]
    for a, b in zip(later, whole[3:]):
        assert a.read_bytes() == b.read_bytes()


# --- TICA --------------------------------------------------------------------------------

def test_tica_layout(tmp_path):
    tica = make_sector(tmp_path / "tica", sector=27, camera=1, ccd=4, frames=2, shape=SMALL,
                       product="tica", seed=9)
    spoc = make_sector(tmp_path / "spoc", sector=27, camera=1, ccd=4, frames=2, shape=SMALL, seed=9)
    for t_path, s_path in zip(tica, spoc):
        m = TICA_NAME.match(t_path.name)
        assert m and m.group(1, 2, 4, 5) == ("0027", "1", "1", "4")
        with fits.open(t_path, checksum=True) as hdus:
            assert len(hdus) == 1
            header, image = hdus[0].header, hdus[0].data
        assert header["NAXIS"] == 2 and image.shape == SMALL and image.dtype == np.dtype(">f4")
        spoc_header = fits.getheader(s_path, 1)
        assert header["STARTTJD"] == spoc_header["TSTART"] and header["ENDTJD"] == spoc_header["TSTOP"]
        assert header["MIDTJD"] == pytest.approx(0.5 * (header["STARTTJD"] + header["ENDTJD"]))
        assert (header["CAMNUM"], header["CCDNUM"], header["QUAL_BIT"]) == (1, 4, 0)
        assert header["CRM"] is True and header["CADENCE"] == int(m.group(3))
        assert header["EXPTIME"] == pytest.approx(600 * 0.792) and header["UNITS"] == "electrons"
        assert "SECTOR" not in header
        assert header_wcs(header).wcs.ctype[1] == "DEC--TAN-SIP"
        # Same sky as the SPOC product, in electrons per exposure.
        np.testing.assert_allclose(image, fits.getdata(s_path, 1) * header["EXPTIME"], rtol=1e-6)
    assert fits.getheader(tica[1])["CADENCE"] == fits.getheader(tica[0])["CADENCE"] + 1


# --- interoperability and scale ------------------------------------------------------------

# DATASUM varies in length between FFIs (as in real ones); astrocut truncates it in its table.
@pytest.mark.filterwarnings("ignore:truncated right side string")
def test_astrocut_makes_a_cube_of_the_spoc_files(tmp_path, spoc):
    from astrocut import CubeFactory

    cube = CubeFactory().make_cube([str(p) for p in spoc[::-1]], str(tmp_path / "cube.fits"), verbose=False)
    with fits.open(cube) as hdus:
        assert hdus[1].data.shape == (*SMALL, 3, 2)
        for t, path in enumerate(spoc):
            np.testing.assert_array_equal(hdus[1].data[:, :, t, 0], fits.getdata(path, 1))
            np.testing.assert_array_equal(hdus[1].data[:, :, t, 1], fits.getdata(path, 2))
        table = hdus[2].data
        assert list(table["FFI_FILE"]) == [p.name for p in spoc]
        assert np.all(np.diff(table["TSTART"]) > 0)
        assert hdus[0].header["CAMERA"] == 1 and hdus[0].header["TSTOP"] == fits.getheader(spoc[-1], 1)["TSTOP"]


def test_full_size_frame_is_the_uncropped_small_frame(tmp_path, spoc):
    full = make_sector(tmp_path, sector=6, camera=1, ccd=1, frames=1, seed=1)[0]
    with fits.open(full) as hdus:
        flux, sigma, header = hdus[1].data, hdus[2].data, hdus[1].header
        assert flux.shape == sigma.shape == (2078, 2136)
        assert (header["NAXIS1"], header["NAXIS2"]) == (2136, 2078)
        with fits.open(spoc[0]) as small:
            np.testing.assert_array_equal(flux[:SMALL[0], :SMALL[1]], small[1].data)
            np.testing.assert_array_equal(sigma[:SMALL[0], :SMALL[1]], small[2].data)
        assert np.isfinite(flux).all()
        science = flux[:2048, 44:2092]
        assert np.median(science) > 20 and science.max() > 1e4
        assert abs(np.median(flux[2048:, :])) < 1.0  # collateral rows


def test_progress_bar(tmp_path, capsys):
    make_sector(tmp_path, sector=6, camera=1, ccd=1, frames=2, shape=(4, 4), progress=True)
    assert "2/2" in capsys.readouterr().err


@pytest.mark.parametrize("kwargs", [
    {"product": "kepler"},
    {"shape": (0, 5)},
    {"shape": (3000, 10)},
    {"frames": 0},
    {"first_frame": -1},
    {"sector": 99999},
    {"camera": 5},
])
def test_bad_arguments(tmp_path, kwargs):
    args = {"sector": 6, "camera": 1, "ccd": 1, "frames": 1, "shape": (4, 4)} | kwargs
    with pytest.raises(InputError):
        make_sector(tmp_path, **args)
