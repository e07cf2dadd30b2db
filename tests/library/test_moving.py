"""Moving-target cutouts: a synthetic object injected along a path stays centred (to far
better than a pixel) in every frame; reads touch only the rows the path needs; a path
crossing two CCDs gives one TPF; ephemeris tables are read and interpolated correctly."""
from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import astropy.units as u
import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.table import Table
from astropy.time import Time
from astropy.wcs import WCS

from cubecut.cutout import cutout_box, ffi_wcs, load_index
from cubecut.errors import CutoutSizeError
from cubecut.ingest.run import ingest
from cubecut.moving import (Ephemeris, EphemerisError, HorizonsError, PathOffCubesError, horizons_ephemeris,
                            load_ephemeris, moving_cutout, path_crossings, path_on_cube, path_to_footprints,
                            read_moving_box)
from cubecut.moving.path import PathCrossing, box_corners, frame_times
from cubecut.moving.reader import plan_reads
from cubecut.storage import FileSource, Location, ReadStats
from cubecut.synth import make_sector

NT = 40
SIZE = 11
#: Peak-normalised Gaussian object: 2e5 e-/s in total, far above the synthetic stars.
OBJECT_FLUX, OBJECT_SIGMA = 2e5, 1.0


def inject(paths: list[Path], positions: dict[int, tuple[float, float]]) -> None:
    """Add the object at 0-based pixel ``positions[frame]`` to those FFIs' flux images."""
    for frame, (x, y) in positions.items():
        with fits.open(paths[frame], mode="update") as hdul:
            ny, nx = hdul[1].data.shape
            gy, gx = np.mgrid[0:ny, 0:nx]
            blob = np.exp(-((gx - x) ** 2 + (gy - y) ** 2) / (2 * OBJECT_SIGMA ** 2))
            hdul[1].data += (OBJECT_FLUX / (2 * np.pi * OBJECT_SIGMA ** 2) * blob).astype(np.float32)


def mid_times(paths: list[Path]) -> np.ndarray:
    return np.array([0.5 * (h["TSTART"] + h["TSTOP"]) for h in (fits.getheader(p, 1) for p in paths)])


def ffi_wcs_of(path: Path) -> WCS:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return WCS(fits.getheader(path, 1))


class World:
    """Two cubes of sector 1 (CCD 1 and CCD 2 of camera 1) with injected objects.

    On CCD 1 the object moves on a curved path across 85 x 70 pixels during all 40
    frames (``truth``); ``path`` is its ephemeris at 9 times only (interpolated between).
    ``jump`` follows the CCD-1 object for frames 0-19, then a second object on CCD 2.
    """

    def __init__(self, folder: Path) -> None:
        self.ffis = make_sector(folder / "ccd1", sector=1, camera=1, ccd=1, frames=NT, shape=(96, 160), seed=4)
        self.ffis2 = make_sector(folder / "ccd2", sector=1, camera=1, ccd=2, frames=NT, shape=(64, 128), seed=4)
        self.mids = mid_times(self.ffis)
        self.wcs, self.wcs2 = ffi_wcs_of(self.ffis[0]), ffi_wcs_of(self.ffis2[0])
        self.t0, self.t1 = self.mids[0] - 0.05, self.mids[-1] + 0.05
        inject(self.ffis, {i: self.truth(t) for i, t in enumerate(self.mids)})
        second = {i: (60.0 + 1.5 * (i - 20), 20.0 + 1.1 * (i - 20)) for i in range(20, NT)}
        inject(self.ffis2, second)
        self.cube, self.cube2 = folder / "tess-s0001-1-1-cube.fits", folder / "tess-s0001-1-2-cube.fits"
        ingest([str(p) for p in self.ffis], str(self.cube))
        ingest([str(p) for p in self.ffis2], str(self.cube2))
        nodes = np.linspace(self.t0, self.t1, 9)
        self.path = Ephemeris(nodes, *self.sky(nodes), name="2099 XY1")
        ra, dec = self.sky(self.mids[:20])
        ra2, dec2 = self.wcs2.all_pix2world(np.array([second[i] for i in range(20, NT)]), 0).T
        self.jump = Ephemeris(self.mids, np.concatenate([ra, ra2]), np.concatenate([dec, dec2]), name="jumper")

    def truth(self, t: float) -> tuple[float, float]:
        s = (t - self.t0) / (self.t1 - self.t0)
        return 60 + 85 * s + 6 * s * s, 12 + 70 * s - 8 * s * s

    def sky(self, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x, y = np.transpose([self.truth(t) for t in times])
        return self.wcs.all_pix2world(x, y, 0)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    return World(tmp_path_factory.mktemp("moving"))


def centroids(flux: np.ndarray) -> np.ndarray:
    """Per frame, the (x, y) centroid of the object: background-subtracted flux in the
    5 x 5 pixels around the brightest pixel."""
    result = []
    for image in flux:
        image = np.nan_to_num(image - np.nanmedian(image))
        py, px = np.unravel_index(np.argmax(image), image.shape)
        gy, gx = np.mgrid[0:image.shape[0], 0:image.shape[1]]
        near = (np.abs(gx - px) <= 2) & (np.abs(gy - py) <= 2) & (image > 0)
        w = image * near
        result.append(((w * gx).sum() / w.sum(), (w * gy).sum() / w.sum()))
    return np.array(result)


def test_injected_object_stays_centred_in_every_frame(world: World):
    (tpf,) = moving_cutout([str(world.cube), str(world.cube2)], world.path, SIZE)
    table = tpf[1].data
    assert len(table) == NT and table["FLUX"].shape == (NT, SIZE, SIZE)
    found = centroids(table["FLUX"])
    centre = (SIZE - 1) / 2
    offsets = np.hypot(found[:, 0] - centre, found[:, 1] - centre)
    print(f"\nobject offset from the cutout centre: max {offsets.max():.2f} px, mean {offsets.mean():.2f} px")
    assert (offsets < 1.0).all(), "centred within 1 pixel in every frame"
    truth = np.array([world.truth(t) for t in world.mids])
    np.testing.assert_allclose(table["TGT_X"] + table["CUTOUT_X0"] - 1, truth[:, 0], atol=0.02)
    np.testing.assert_allclose(table["TGT_Y"] + table["CUTOUT_Y0"] - 1, truth[:, 1], atol=0.02)
    np.testing.assert_allclose(found, np.column_stack([table["TGT_X"], table["TGT_Y"]]), atol=0.3)
    assert (np.abs(table["TGT_X"] - centre) <= 0.5).all() and (np.abs(table["TGT_Y"] - centre) <= 0.5).all()
    assert len(set(table["CUTOUT_X0"])) > 30, "the box moves"
    np.testing.assert_allclose(table["TIME"], world.mids)
    header = tpf[0].header
    assert header["OBJECT"] == "2099 XY1" and header["RA_OBJ"] == pytest.approx(table["TGT_RA"][0])
    assert header["TSTART"] == fits.getheader(world.ffis[0], 1)["TSTART"]
    assert header["TSTOP"] == fits.getheader(world.ffis[-1], 1)["TSTOP"]
    assert header["DATE-END"] == fits.getheader(world.ffis[-1], 1)["DATE-END"]
    assert "1CRV5P" not in tpf[1].header and "CTYPE1" not in tpf[2].header
    assert tpf[1].header.comments["TTYPE5"] == "column name" and tpf[1].header["TUNIT5"] == "e-/s"
    assert tpf[2].data.shape == (SIZE, SIZE)


def test_moving_tpf_is_read_by_lightkurve(world: World, tmp_path):
    import lightkurve as lk

    (path,) = moving_cutout([str(world.cube)], world.path, (SIZE, 9), output_dir=tmp_path)
    mids = world.mids
    assert Path(path).name == f"2099_XY1_tess-s0001_{mids[0] - 1 / 96:.4f}-{mids[-1] + 1 / 96:.4f}_11-x-9_astrocut.fits"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tpf = lk.read(path)
    assert tpf.flux.shape == (NT, 9, SIZE)
    np.testing.assert_allclose(tpf.time.value, mids)


def test_reads_touch_only_the_rows_of_the_path(world: World):
    """With a small merge gap: one range per cube row the path needs, and only the columns
    and frames around the path in it; values equal slicing the whole cube."""
    index = load_index(world.cube)
    on_cube = path_on_cube(world.path, index, str(world.cube))
    x0, y0 = box_corners(on_cube.x, on_cube.y, SIZE, SIZE)
    stats = ReadStats()
    source = FileSource(Location.parse(str(world.cube)), stats)
    flux, flux_err = read_moving_box(source, index, on_cube.frames, x0, y0, SIZE, SIZE, merge_gap=4096)
    rows = {y for y_first in y0 for y in range(y_first, y_first + SIZE)}
    assert stats.requests == len(rows)
    whole_rows = len(rows) * index.ncols * index.nt * 8
    print(f"\nmoving cutout: {stats.requests} reads, {stats.bytes} bytes; whole rows {whole_rows}, "
          f"needed {NT * SIZE * SIZE * 8}")
    assert stats.bytes < whole_rows / 3
    with fits.open(world.cube) as hdul:
        cube = hdul[1].data
        for i, frame in enumerate(on_cube.frames):
            box = cube[y0[i]:y0[i] + SIZE, x0[i]:x0[i] + SIZE, frame]
            np.testing.assert_array_equal(flux[i], box[..., 0])
            np.testing.assert_array_equal(flux_err[i], box[..., 1])


def test_reader_with_boxes_partly_off_the_image(world: World):
    """Any merge gap gives the same values; a larger gap means fewer, longer reads."""
    index = load_index(world.cube2)
    rng = np.random.default_rng(7)
    frames = rng.choice(NT, size=15, replace=False)
    x0 = rng.integers(-8, index.ncols - 2, size=15)
    y0 = rng.integers(-8, index.nrows - 2, size=15)
    with fits.open(world.cube2) as hdul:
        padded = np.pad(hdul[1].data, ((8, 8), (8, 8), (0, 0), (0, 0)), constant_values=np.nan)
    counts = []
    for merge_gap in (0, 4096, 10**9):
        stats = ReadStats()
        source = FileSource(Location.parse(str(world.cube2)), stats)
        flux, flux_err = read_moving_box(source, index, frames, x0, y0, 9, 7, merge_gap=merge_gap, threads=3)
        for i, frame in enumerate(frames):
            box = padded[y0[i] + 8:y0[i] + 15, x0[i] + 8:x0[i] + 17, frame]
            np.testing.assert_array_equal(flux[i], box[..., 0])
            np.testing.assert_array_equal(flux_err[i], box[..., 1])
        ranges = plan_reads(index, frames, x0, y0, 9, 7, merge_gap=merge_gap)
        assert all(a.stop <= b.start for a, b in zip(ranges, ranges[1:])) and stats.requests == len(ranges)
        counts.append(len(ranges))
    assert counts[0] > counts[1] > counts[2] == 1


def test_a_path_across_two_ccds_makes_one_tpf(world: World):
    cubes = [str(world.cube), str(world.cube2)]
    crossings = path_crossings(world.jump, cubes, size=SIZE)
    assert [(c.sector_name, c.frames) for c in crossings] == [("tess-s0001-1-1", 20), ("tess-s0001-1-2", 20)]
    (tpf,) = moving_cutout(cubes, world.jump, SIZE, threads=2)
    table = tpf[1].data
    assert table["CCD"].tolist() == [1] * 20 + [2] * 20 and set(table["CAMERA"]) == {1}
    np.testing.assert_allclose(table["TIME"], world.mids)
    assert table["FFI_FILE"].tolist() == [p.name for p in world.ffis[:20]] + [p.name for p in world.ffis2[20:]]
    found = centroids(table["FLUX"])
    assert (np.hypot(*(found - (SIZE - 1) / 2).T) < 1.0).all()


def test_path_crossings_and_footprints_cover_the_path(world: World):
    (crossing,) = path_crossings(world.path, [str(world.cube), str(world.cube2)], size=SIZE, max_pixels=400)
    assert (crossing.sector_name, crossing.frames) == ("tess-s0001-1-1", NT)
    assert crossing.start == pytest.approx(world.mids[0]) and crossing.stop == pytest.approx(world.mids[-1])
    on_cube = path_on_cube(world.path, load_index(world.cube), str(world.cube))
    wcs = ffi_wcs(load_index(world.cube))
    assert len(crossing.footprints) > 3
    for x, y in zip(on_cube.x, on_cube.y):
        x0, y0 = box_corners(x, y, SIZE, SIZE)
        assert any(f.box.x0 <= x0 and x0 + SIZE <= f.box.x1 and f.box.y0 <= y0 and y0 + SIZE <= f.box.y1
                   for f in crossing.footprints)
    for footprint in crossing.footprints:
        assert footprint.box.nx * footprint.box.ny <= 400
        box = cutout_box(wcs, footprint.coordinates, footprint.size)
        assert (box.x0, box.y0, box.nx, box.ny) == (footprint.box.x0, footprint.box.y0, *footprint.size)
    assert path_to_footprints(on_cube.x, on_cube.y, (SIZE, SIZE), wcs, max_pixels=10**6)[0].box.nx >= 85


def test_errors(world: World):
    later = Ephemeris(world.path.time + 30.0, world.path.ra, world.path.dec)
    with pytest.raises(PathOffCubesError, match="crosses none"):
        moving_cutout([str(world.cube)], later, SIZE)
    with pytest.raises(CutoutSizeError):
        moving_cutout([str(world.cube)], world.path, 2000)
    assert moving_cutout([str(world.cube)], world.path, 4 * 21 * u.arcsec)[0][1].data["FLUX"].shape[1:] == (4, 4)


# --- ephemerides -------------------------------------------------------------------------

def test_interpolation_is_smooth_across_ra_zero():
    def truth(t):
        return (359.8 + 0.4 * t) % 360, 10.0 + 0.3 * t * t

    nodes = np.linspace(0.0, 1.0, 6)
    path = Ephemeris(nodes, *truth(nodes))
    times = np.linspace(0.0, 1.0, 101)
    ra, dec = path.at(times)
    error = SkyCoord(ra, dec, unit="deg").separation(SkyCoord(*truth(times), unit="deg")).arcsec
    assert error.max() < 0.5, "well under a TESS pixel (21 arcsec)"
    assert np.isnan(path.at([-0.01, 1.01])[0]).all() and path.covers([0.0, 1.0]).all()


def test_bad_ephemerides():
    for time, ra, dec, message in [([1.0], [0.0], [0.0], "at least 2"), ([2.0, 1.0], [0, 0], [0, 0], "increasing"),
                                   ([1.0, 1.0], [0, 0], [0, 0], "increasing"),
                                   ([1.0, 2.0], [0, np.nan], [0, 0], "finite"), ([1.0, 2.0], [0, 0], [0, 91], "-90")]:
        with pytest.raises(EphemerisError, match=message):
            Ephemeris(np.array(time), np.array(ra, dtype=float), np.array(dec, dtype=float))
    with pytest.raises(EphemerisError, match="columns"):
        load_ephemeris({"t": [1, 2], "ra": [0, 0], "dec": [0, 0]})


def test_ephemeris_inputs(tmp_path):
    jd = np.array([2458468.275827604, 2458468.900827604, 2458469.525827604])
    coords = SkyCoord([82.22813, 82.07676, 81.92551], [-1.5821, -1.54791, -1.5117], unit="deg")
    astrocut_style = Table({"time": Time(jd, format="jd"), "position": coords})
    path = load_ephemeris(astrocut_style, name="my_asteroid")
    assert not path.barycentric and path.name == "my_asteroid"
    np.testing.assert_allclose(path.time, Time(jd, format="jd").tdb.jd - 2457000, atol=1e-9)
    np.testing.assert_allclose(path.ra, coords.ra.deg)

    rows = [{"time": 1468.0 + i, "ra": 82.0 - i / 10, "dec": -1.5} for i in (2, 0, 1)]
    from_rows = load_ephemeris(rows)
    assert from_rows.barycentric and from_rows.time.tolist() == [1468.0, 1469.0, 1470.0]
    (tmp_path / "path.json").write_text(json.dumps({"time": [1.0, 2.0], "ra": [3.0, 4.0], "dec": [5.0, 6.0]}))
    assert load_ephemeris(str(tmp_path / "path.json")).ra.tolist() == [3.0, 4.0]
    Table({"time": [1.0, 2.0], "ra": [3.0, 4.0], "dec": [5.0, 6.0]}, meta={"name": "x"}).write(
        tmp_path / "path.ecsv")
    assert load_ephemeris(str(tmp_path / "path.ecsv")).name == "x"
    (tmp_path / "path.csv").write_text("time,ra,dec\n2458468.5,10,20\n2458469.5,11,21\n")
    utc = load_ephemeris(str(tmp_path / "path.csv"), time_format="jd", time_scale="utc")
    assert not utc.barycentric and utc.time[0] == pytest.approx(1468.5 + 69.184 / 86400, abs=1e-7)


def test_instants_are_matched_at_spacecraft_time(world: World):
    index = load_index(world.cube)
    times = index.time_arrays()
    mid = 0.5 * (times["tstart"] + times["tstop"])
    np.testing.assert_array_equal(frame_times(index, True), mid)
    np.testing.assert_array_equal(frame_times(index, False), mid - times["barycorr"])
    instants = Ephemeris(world.path.time, world.path.ra, world.path.dec, barycentric=False)
    np.testing.assert_allclose(path_on_cube(instants, index).times, (mid - times["barycorr"]))


def test_horizons_is_optional_and_fails_clearly(monkeypatch):
    monkeypatch.setitem(sys.modules, "astroquery.jplhorizons", None)
    with pytest.raises(HorizonsError, match="astroquery"):
        horizons_ephemeris("Ceres", 1325.0, 1326.0)


def test_a_crossing_is_named_by_its_product():
    crossing = PathCrossing("s3://b/tica-s0005-2-3-cube.fits", "TICA", 5, 2, 3, 10, 0.0, 1.0)
    assert crossing.sector_name == "tica-s0005-2-3"
    assert PathCrossing("c.fits", "SPOC", 5, 2, 3, 10, 0.0, 1.0).sector_name == "tess-s0005-2-3"
