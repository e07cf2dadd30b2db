"""TESScut's moving-target routes over real HTTP, with the path sent as an ephemeris.

The path is made from the fixture's stars: on each of the three cubes (sectors 2, 62 and
89, years apart) it starts at that cube's brightest isolated star and drifts across the
CCD during the cube's frames, so every frame's box is somewhere else and the star's image
moves inside it by exactly the drift. One ephemeris holds all three segments.
"""
from __future__ import annotations

import io
import json
import zipfile
from urllib.parse import urlencode

import numpy as np
import pytest
from astropy.io import fits
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from cubecut.cutout import ffi_wcs, load_index
from cubecut.moving import moving_cutout
from stack_fixtures import BUCKET, TesscutSky, tesscut_sky  # noqa: F401 - the fixture
from test_tesscut_api import http

MOVING = "/tesscut/api/v0.1/moving_target"
SIZE = 9
#: Drift of the path on each CCD, pixels per frame (columns, rows).
DRIFT = (0.35, -0.2)
NAME = "2099 XY1"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def cube_url(name: str) -> str:
    return f"s3://{BUCKET}/cubes/{name}-cube.fits"


def segment(sky: TesscutSky, name: str) -> dict[str, np.ndarray]:
    """The path on one cube at its frames' mid-times (BTJD): its star plus the drift."""
    index = load_index(cube_url(name))
    times = index.time_arrays()
    mid = 0.5 * (times["tstart"] + times["tstop"])
    star = sky.bright_star(name)
    step = np.arange(index.nt) - index.nt // 2
    col, row = star.col + DRIFT[0] * step, star.row + DRIFT[1] * step
    ra, dec = ffi_wcs(index).all_pix2world(col, row, 0)
    return {"time": mid, "ra": ra, "dec": dec, "col": col, "row": row, "star": (star.col, star.row)}


@pytest.fixture(scope="module")
def path(tesscut_sky: TesscutSky) -> dict:
    """Segments per cube and the whole ephemeris (JSON columns), in time order."""
    segments = {name: segment(tesscut_sky, name) for name in tesscut_sky.sector_names}
    order = sorted(segments.values(), key=lambda s: s["time"][0])
    ephemeris = {key: np.concatenate([s[key] for s in order]).tolist() for key in ("time", "ra", "dec")}
    return {"segments": segments, "ephemeris": ephemeris}


def get(sky: TesscutSky, route: str, **query) -> tuple[int, dict[str, str], bytes]:
    return http("GET", f"{sky.api_url}{MOVING}/{route}?{urlencode(query, doseq=True)}")


def post_json(sky: TesscutSky, route: str, document: dict) -> tuple[int, dict[str, str], bytes]:
    return http("POST", f"{sky.api_url}{MOVING}/{route}", data=json.dumps(document).encode(),
                headers={"Content-Type": "application/json"})


def members(body: bytes) -> dict[str, fits.HDUList]:
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        return {name: fits.open(io.BytesIO(archive.read(name))) for name in archive.namelist()}


@pytest.mark.slow
def test_sector_route_lists_the_cubes_the_path_crosses(tesscut_sky, path):
    status, headers, body = get(tesscut_sky, "sector", obj_id=NAME, ephemeris=json.dumps(path["ephemeris"]))
    assert status == 200 and headers["content-type"] == "application/json"
    assert json.loads(body) == {"results": [
        {"sectorName": "tess-s0002-4-3", "sector": "0002", "camera": "4", "ccd": "3"},
        {"sectorName": "tess-s0062-4-1", "sector": "0062", "camera": "4", "ccd": "1"},
        {"sectorName": "tess-s0089-4-1", "sector": "0089", "camera": "4", "ccd": "1"}]}
    status, _, body = get(tesscut_sky, "sector", ephemeris=json.dumps(path["ephemeris"]), sector="62,89")
    assert [r["sectorName"] for r in json.loads(body)["results"]] == ["tess-s0062-4-1", "tess-s0089-4-1"]


@pytest.mark.slow
def test_astrocut_route_follows_the_path_in_every_frame(tesscut_sky, path):
    query = {"obj_id": NAME, "ephemeris": json.dumps(path["ephemeris"]), "x": SIZE}
    status, headers, body = get(tesscut_sky, "astrocut", **query)
    assert status == 200 and headers["content-type"] == "application/zip", body[:300]
    assert headers["x-cubecut-cache"] == "miss" and int(headers["x-cubecut-reads"]) > 0
    tpfs = members(body)
    assert sorted(tpfs) == [f"{name}_2099_XY1_{SIZE}x{SIZE}_astrocut.fits" for name in tesscut_sky.sector_names]
    centre = (SIZE - 1) / 2
    for member, tpf in tpfs.items():
        seg = path["segments"][member[:14]]
        table = tpf["PIXELS"].data
        assert tpf[0].header["OBJECT"] == NAME and len(table) == len(seg["time"])
        np.testing.assert_allclose(table["TGT_RA"], seg["ra"], atol=1e-7)
        np.testing.assert_allclose(table["TGT_DEC"], seg["dec"], atol=1e-7)
        # The box follows the path: the target is within half a pixel of the middle.
        assert np.all(np.abs(table["TGT_X"] - centre) <= 0.5) and np.all(np.abs(table["TGT_Y"] - centre) <= 0.5)
        np.testing.assert_allclose(table["CUTOUT_X0"] - 1 + table["TGT_X"], seg["col"], atol=1e-6)
        # The pixels are the cube's: the (fixed) star sits where the moving box puts it.
        checked = 0
        for frame, flux in enumerate(table["FLUX"]):
            iy, ix = np.unravel_index(np.nanargmax(flux), flux.shape)
            expect = (seg["star"][0] - (table["CUTOUT_X0"][frame] - 1),
                      seg["star"][1] - (table["CUTOUT_Y0"][frame] - 1))
            if 0.5 <= expect[0] <= SIZE - 1.5 and 0.5 <= expect[1] <= SIZE - 1.5:
                assert abs(ix - expect[0]) <= 1 and abs(iy - expect[1]) <= 1, (member, frame)
                checked += 1
        assert checked >= 10, f"{member}: the star is inside the box in only {checked} frames"

    # Value for value what the library makes from the same cubes and ephemeris.
    library = moving_cutout([cube_url(n) for n in tesscut_sky.sector_names], path["ephemeris"], SIZE, target=NAME)
    for hdul, (member, tpf) in zip(library, sorted(tpfs.items())):
        assert hdul[0].header["SECTOR"] == int(member[6:10])
        np.testing.assert_array_equal(hdul["PIXELS"].data["FLUX"], tpf["PIXELS"].data["FLUX"])

    status, headers, again = get(tesscut_sky, "astrocut", **query)
    assert (status, headers["x-cubecut-cache"], headers["x-cubecut-reads"], again) == (200, "hit", "0", body)


@pytest.mark.slow
def test_rows_in_a_json_body_and_columns_in_a_form_are_the_same_request(tesscut_sky, path):
    eph = path["ephemeris"]
    rows = [{"time": t, "ra": a, "dec": d} for t, a, d in zip(eph["time"], eph["ra"], eph["dec"])]
    status, headers, body = post_json(tesscut_sky, "astrocut", {"ephemeris": rows, "x": 5, "sector": 62})
    assert status == 200 and headers["x-cubecut-cache"] == "miss"
    assert list(members(body)) == ["tess-s0062-4-1_path_5x5_astrocut.fits"]
    form = urlencode({"ephemeris": json.dumps(eph), "x": "5", "sector": "62"}).encode()
    status, headers, same = http("POST", f"{tesscut_sky.api_url}{MOVING}/astrocut", data=form, headers=FORM)
    assert (status, headers["x-cubecut-cache"], same) == (200, "hit", body)


@pytest.mark.slow
def test_jd_instants_of_a_still_target_keep_it_centred(tesscut_sky):
    """Times as JD (TDB instants) sampled every 0.25 d around the cube: a constant position."""
    index = load_index(cube_url("tess-s0062-4-1"))
    star = tesscut_sky.bright_star("tess-s0062-4-1")
    times = np.arange(index.tstart[0] - 1, index.tstop[-1] + 1, 0.25) + 2457000.0
    ephemeris = {"time": times.tolist(), "ra": [star.ra] * len(times), "dec": [star.dec] * len(times)}
    status, _, body = post_json(tesscut_sky, "astrocut", {"ephemeris": ephemeris, "time_format": "jd",
                                                          "obj_id": "still", "x": 7, "sector": 62})
    assert status == 200, body[:300]
    (tpf,) = members(body).values()
    for flux in tpf["PIXELS"].data["FLUX"]:
        assert np.unravel_index(np.nanargmax(flux), flux.shape) == (3, 3)


@pytest.mark.slow
def test_a_path_that_misses_every_cube_is_a_200_msg(tesscut_sky, path):
    eph = path["ephemeris"]
    far = {"time": eph["time"], "ra": [10.0] * len(eph["time"]), "dec": [10.0] * len(eph["time"])}
    never = {"time": [100.0, 100.5, 101.0], "ra": [132.5] * 3, "dec": [-69.2] * 3}
    for ephemeris in (far, never):
        status, headers, body = get(tesscut_sky, "astrocut", obj_id=NAME, ephemeris=json.dumps(ephemeris))
        assert status == 200 and headers["content-type"] == "application/json"
        assert json.loads(body)["msg"].startswith(f"No data found for the path of {NAME} (TJD ")
        status, _, body = get(tesscut_sky, "sector", ephemeris=json.dumps(ephemeris))
        assert (status, json.loads(body)) == (200, {"results": []})


COLUMNS = {"time": [3000.0, 3000.5, 3001.0], "ra": [132.5, 132.6, 132.7], "dec": [-69.2, -69.2, -69.2]}
BAD = [
    ("no ephemeris", {}, "ephemeris"),
    ("empty ephemeris", {"ephemeris": " "}, "ephemeris"),
    ("not JSON", {"ephemeris": "{time: 1"}, "not valid JSON"),
    ("a number", {"ephemeris": "5"}, "ephemeris must be"),
    ("a file name", {"ephemeris": json.dumps("s3://cubecut-tesscut-tests/cubes/x.json")}, "ephemeris must be"),
    ("no dec", {"ephemeris": json.dumps({"time": [1, 2], "ra": [1, 2]})}, "ephemeris must be"),
    ("row without dec", {"ephemeris": json.dumps([{"time": 1, "ra": 1, "dec": 1}, {"time": 2, "ra": 1}])}, "row 1"),
    ("rows not objects", {"ephemeris": "[1, 2]"}, "rows must be objects"),
    ("nested values", {"ephemeris": json.dumps({**COLUMNS, "ra": [[1], [2], [3]]})}, "list of numbers"),
    ("booleans", {"ephemeris": json.dumps({**COLUMNS, "dec": [True, False, True]})}, "list of numbers"),
    ("one row", {"ephemeris": json.dumps({"time": [1], "ra": [1], "dec": [1]})}, "at least 2 rows"),
    ("repeated time", {"ephemeris": json.dumps({**COLUMNS, "time": [1, 1, 2]})}, "strictly increasing"),
    ("lengths differ", {"ephemeris": json.dumps({**COLUMNS, "ra": [1, 2]})}, "different lengths"),
    ("NaN", {"ephemeris": '{"time": [1, 2], "ra": [NaN, 1], "dec": [1, 1]}'}, "finite"),
    ("dec above 90", {"ephemeris": json.dumps({**COLUMNS, "dec": [95, 0, 0]})}, "[-90, 90]"),
    ("time strings as BTJD", {"ephemeris": json.dumps({**COLUMNS, "time": ["a", "b", "c"]})}, "must be numbers"),
    ("bad isot", {"ephemeris": json.dumps({**COLUMNS, "time": ["x", "y", "z"]}), "time_format": "isot"},
     "cannot read ephemeris times"),
    ("ra strings", {"ephemeris": json.dumps({**COLUMNS, "ra": ["1", "2", "3"]})}, "list of numbers"),
    ("huge number", {"ephemeris": '{"time": [1, 2], "ra": [1, 1], "dec": [1, ' + "9" * 400 + "]}"}, "too large"),
    ("too many rows", {"ephemeris": json.dumps({k: list(range(50_001)) for k in ("time", "ra", "dec")})},
     "at most 50,000 rows"),
    ("deep nesting", {"ephemeris": "[" * 100_000 + "]" * 100_000}, "nested too deeply"),
    ("time format", {"ephemeris": json.dumps(COLUMNS), "time_format": "fortnights"}, "time_format must be"),
    ("time scale", {"ephemeris": json.dumps(COLUMNS), "time_scale": "martian"}, "time_scale must be"),
    ("obj_type", {"ephemeris": json.dumps(COLUMNS), "obj_type": "comet"}, "obj_type must be"),
    ("negative size", {"ephemeris": json.dumps(COLUMNS), "x": "-3"}, "positive"),
    ("units", {"ephemeris": json.dumps(COLUMNS), "units": "furlong"}, "units"),
    ("sector", {"ephemeris": json.dumps(COLUMNS), "sector": "[a"}, "sector"),
    ("product", {"ephemeris": json.dumps(COLUMNS), "product": "FOO"}, "product"),
    ("non-ASCII name", {"ephemeris": json.dumps(COLUMNS), "obj_id": "\u00e9t\u00e9"}, "printable ASCII"),
    ("control in name", {"ephemeris": json.dumps(COLUMNS), "obj_id": "a\nb"}, "printable ASCII"),
    ("long name", {"ephemeris": json.dumps(COLUMNS), "obj_id": "x" * 101}, "at most 100"),
]


@pytest.mark.slow
@pytest.mark.parametrize("route", ["sector", "astrocut"])
@pytest.mark.parametrize("name,fields,message", BAD, ids=[b[0] for b in BAD])
def test_bad_requests_are_400_msg(tesscut_sky, route, name, fields, message):
    status, headers, body = http("POST", f"{tesscut_sky.api_url}{MOVING}/{route}", data=urlencode(fields).encode(),
                                 headers=FORM)
    assert status == 400 and headers["content-type"] == "application/json", body[:300]
    assert message in json.loads(body)["msg"]


@pytest.mark.slow
def test_an_object_name_alone_is_a_400_that_explains_the_ephemeris(tesscut_sky, path):
    status, _, body = get(tesscut_sky, "astrocut", obj_id="Ceres", obj_type="smallbody", x=5)
    msg = json.loads(body)["msg"]
    assert status == 400
    assert "'Ceres'" in msg and "ephemeris" in msg and "Horizons" in msg and "--horizons" in msg
    nested = {"ephemeris": path["ephemeris"], "ra": {"a": 1}}  # only 'ephemeris' may nest in a JSON body
    status, _, body = post_json(tesscut_sky, "astrocut", nested)
    assert status == 415 and "'ra'" in json.loads(body)["msg"]
    status, _, body = http("POST", f"{tesscut_sky.api_url}{MOVING}/astrocut",
                           data=b'{"ephemeris": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
                           headers={"Content-Type": "application/json"})
    assert status == 400 and "nested too deeply" in json.loads(body)["msg"]


_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(min_value=-10**30, max_value=10**30),
                     st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8),
                     st.sampled_from(["2024-01-01T00:00:00", "nan", "1e999", "3000.5", ""]))
_JSON = st.recursive(_SCALARS, lambda inner: st.lists(inner, max_size=5) | st.dictionaries(
    st.sampled_from(["time", "ra", "dec", "TIME", "position", "x"]) | st.text(max_size=4), inner, max_size=4),
    max_leaves=20)
#: Columns of the right names with junk values, to get past the shape checks.
_COLUMN_JUNK = st.fixed_dictionaries({key: st.lists(_SCALARS, min_size=0, max_size=5) for key in ("time", "ra", "dec")})
#: Well-formed paths anywhere on the sky at times around the three cubes' (most miss them).
_PATHS = st.integers(min_value=2, max_value=6).flatmap(lambda n: st.fixed_dictionaries({
    "time": st.lists(st.floats(1300, 3100), min_size=n, max_size=n, unique=True).map(sorted),
    "ra": st.lists(st.floats(0, 360), min_size=n, max_size=n),
    "dec": st.lists(st.floats(-90, 90), min_size=n, max_size=n)}))


@st.composite
def _moving_requests(draw: st.DrawFn) -> tuple[str, bytes, dict[str, str]]:
    document = draw(st.one_of(_JSON, _COLUMN_JUNK, _PATHS))
    fields = {"ephemeris": document, **draw(st.dictionaries(
        st.sampled_from(["obj_id", "obj_type", "time_format", "time_scale", "x", "y", "units", "sector", "product"]),
        st.sampled_from(["", "jd", "mjd", "isot", "utc", "5", "-1", "1e9", "deg", "[1, 2]", "smallbody", "SPOC",
                         "x", "\u00e9"]), max_size=4))}
    route = draw(st.sampled_from(["sector", "astrocut"]))
    if draw(st.booleans()):
        return route, json.dumps(fields).encode(), {"Content-Type": "application/json"}
    fields["ephemeris"] = json.dumps(document)
    return route, urlencode(fields).encode(), FORM


@pytest.mark.slow
@settings(max_examples=120, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(request=_moving_requests())
def test_fuzzed_ephemerides_never_get_5xx(tesscut_sky, request):
    route, body, headers = request
    status, answer_headers, answer = http("POST", f"{tesscut_sky.api_url}{MOVING}/{route}", data=body,
                                          headers=headers)
    event(f"{route} -> {status}")
    assert status < 500, (status, answer[:300])
    if status >= 400:
        assert answer_headers["content-type"] == "application/json" and isinstance(json.loads(answer)["msg"], str)
