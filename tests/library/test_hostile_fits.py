"""Hostile FITS for ingest and cutouts: a named error, bounded memory, no hang.

Each case is a small file that lies about itself: truncated, wrong BITPIX/NAXIS,
enormous declared sizes, malformed cards, NaN values, no END card, non-ASCII bytes,
unusable WCS, a cube whose headers claim more than the object holds. Every call runs
under a wall-clock limit and tracemalloc: nothing may allocate what a header claims
without checking it against the object's size. A seeded mutation fuzzer (bounded
iterations) covers what the hand-made cases miss.
"""
from __future__ import annotations

import random
import threading
import tracemalloc
import warnings
from pathlib import Path
from typing import Callable, Iterator

import pytest
from astropy.io import fits

from cubecut import storage
from cubecut.cutout import clear_cache, cutout, load_index
from cubecut.cutout.geometry import ffi_wcs
from cubecut.errors import CubecutError, FFIError, NotACubeError, OutsideCubeError
from cubecut.ffi import inspect_ffi
from cubecut.fitsio import BLOCK
from cubecut.ingest.run import ingest
from cubecut.storage import open_source, put_bytes
from cubecut.synth import make_sector

#: Wall-clock limit of one hostile call, and the most it may allocate (Python + numpy).
TIME_LIMIT_S = 20.0
MEMORY_LIMIT_BYTES = 32 * 1024 * 1024


def bounded(call: Callable[[], object], limit: float = TIME_LIMIT_S) -> BaseException | None:
    """Run ``call`` in a thread under the time limit and tracemalloc; the exception it
    raised (None if it returned). Fails the test on a hang or on too much memory."""
    outcome: dict = {}

    def run() -> None:
        try:
            call()
        except BaseException as exc:  # noqa: BLE001 - reported to the caller
            outcome["error"] = exc

    tracemalloc.start()
    try:
        worker = threading.Thread(target=run, daemon=True)
        worker.start()
        worker.join(limit)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert not worker.is_alive(), f"hung for more than {limit} s"
    assert peak < MEMORY_LIMIT_BYTES, f"allocated {peak / 1e6:.0f} MB"
    return outcome.get("error")


def assert_named(error: BaseException | None, *kinds: type[BaseException]) -> None:
    assert error is not None, "a hostile file was accepted"
    assert isinstance(error, CubecutError), f"unnamed error {type(error).__name__}: {error}"
    if kinds:
        assert isinstance(error, kinds), f"{type(error).__name__}: {error}"


def card(key: str, value: str) -> bytes:
    return (f"{key:<8}= {value:>20}").ljust(80).encode("latin-1")


def replace_card(data: bytes, key: str, value: str, hdu_offset: int = 0) -> bytes:
    """``data`` with the first card ``key`` after ``hdu_offset`` replaced."""
    return overwrite(data, key, key, value, hdu_offset)


def image_header_offset(data: bytes, number: int = 1) -> int:
    """Byte offset of HDU ``number``'s header (parsing headers only, trusting the file)."""
    offset = 0
    for _ in range(number):
        end = offset
        while data[end:end + 80].rstrip() != b"END":
            end += 80
        header = fits.Header.fromstring(data[offset:end + 80].decode("ascii"))
        size = abs(header["BITPIX"]) // 8 if header["NAXIS"] else 0
        for axis in range(1, header["NAXIS"] + 1):
            size *= header[f"NAXIS{axis}"]
        offset = -(-(end + 80) // BLOCK) * BLOCK + -(-size // BLOCK) * BLOCK
    return offset


@pytest.fixture(scope="module")
def ffi_files(tmp_path_factory) -> list[Path]:
    return make_sector(tmp_path_factory.mktemp("hostile-ffis"), sector=7, camera=2, ccd=1, frames=3,
                       shape=(20, 24), seed=1)


@pytest.fixture(scope="module")
def good_ffi(ffi_files) -> bytes:
    return ffi_files[1].read_bytes()


@pytest.fixture(scope="module")
def good_cube(ffi_files, tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("hostile-cube") / "tess-s0007-2-1-cube.fits"
    ingest([str(p) for p in ffi_files], str(path))
    return path.read_bytes()


@pytest.fixture(scope="module")
def target(good_cube, tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("hostile-target") / "cube.fits"
    path.write_bytes(good_cube)
    index = load_index(path, refresh=True)
    ra, dec = ffi_wcs(index).all_pix2world([[12, 10]], 0)[0]
    clear_cache()
    return f"{ra} {dec}"


# ----------------------------------------------------------------------------- ingest side
def _inspect(path: Path) -> Callable[[], object]:
    return lambda: inspect_ffi(open_source(str(path)))


def overwrite(data: bytes, old_key: str, key: str, value: str, hdu_offset: int) -> bytes:
    """``data`` with the card ``old_key`` of the HDU at ``hdu_offset`` replaced by ``key = value``."""
    needle = f"{old_key:<8}=".encode()
    pos = hdu_offset
    while (pos := data.index(needle, pos)) % 80:
        pos += 1
    return data[:pos] + card(key, value) + data[pos + 80:]


def _image(d: bytes, key: str, value: str) -> bytes:
    return replace_card(d, key, value, image_header_offset(d))


FFI_CASES = {
    "truncated in the header": lambda d: d[:1000],
    "truncated in the data": lambda d: d[:len(d) - 3000],
    "empty": lambda d: b"",
    "BITPIX 7": lambda d: _image(d, "BITPIX", "7"),
    "BITPIX 0": lambda d: _image(d, "BITPIX", "0"),
    "BITPIX -32.0 (a float)": lambda d: _image(d, "BITPIX", "-32.0"),
    "NAXIS 1000": lambda d: _image(d, "NAXIS", "1000"),
    "NAXIS -1": lambda d: _image(d, "NAXIS", "-1"),
    "NAXIS1 negative": lambda d: _image(d, "NAXIS1", "-24"),
    "NAXIS1 = 10^12 in a tiny file": lambda d: _image(d, "NAXIS1", "1000000000000"),
    "NAXIS1 = 10^12 and PCOUNT = -10^12": lambda d: _image(_image(d, "NAXIS1", "1000000000000"), "PCOUNT",
                                                             "-1000000000000"),
    "GCOUNT = 0.5": lambda d: _image(d, "GCOUNT", "0.5"),
    "NAXIS1 = NaN": lambda d: _image(d, "NAXIS1", "NaN"),
    "TSTART = NaN": lambda d: _image(d, "TSTART", "NaN"),
    "TSTART = 'abc'": lambda d: _image(d, "TSTART", "'abc'"),
    "TSTOP = 1e400": lambda d: _image(d, "TSTOP", "1E400"),
    "BSCALE = NaN": lambda d: overwrite(d, "SIMDATA", "BSCALE", "NaN", image_header_offset(d)),
    "BZERO = 'abc'": lambda d: overwrite(d, "SIMDATA", "BZERO", "'abc'", image_header_offset(d)),
    "CAMERA = ''": lambda d: _image(d, "CAMERA", "''"),
    "CCD = 1.5": lambda d: _image(d, "CCD", "1.5"),
    "no END card": lambda d: d.replace(b"END" + b" " * 77, b"COMMENT" + b" " * 73),
    "no END card, 2 MB of cards": lambda d: (b"SIMPLE  =                    T" + b" " * 50) + card("COMMENT", "x") * 26000,
    "non-ASCII header bytes": lambda d: d[:400] + "é".encode("utf-8") * 10 + d[420:],
    "NUL bytes in the header": lambda d: d[:800] + b"\x00" * 80 + d[880:],
    "unterminated string": lambda d: _image(d, "TELESCOP", "'TESS"),
    "no uncertainty HDU": lambda d: d[:image_header_offset(d, 2)],
    "a JPEG": lambda d: b"\xff\xd8\xff\xe0" + b"\x00" * 5000,
}


@pytest.mark.parametrize("case", list(FFI_CASES))
def test_hostile_ffi_gives_a_named_error(case, good_ffi, tmp_path):
    path = tmp_path / "tess2019-s0007-2-1-0001-s_ffic.fits"
    path.write_bytes(FFI_CASES[case](good_ffi))
    assert_named(bounded(_inspect(path)), FFIError)


def test_hostile_ffi_among_good_ones_fails_the_ingest_cleanly(ffi_files, good_ffi, tmp_path):
    bad = tmp_path / ffi_files[1].name
    bad.write_bytes(replace_card(good_ffi, "NAXIS1", "1000000000000", image_header_offset(good_ffi)))
    out = tmp_path / "out" / "cube.fits"
    error = bounded(lambda: ingest([str(ffi_files[0]), str(bad), str(ffi_files[2])], str(out)))
    assert_named(error, FFIError)
    assert not out.parent.exists() or not list(out.parent.iterdir()), "nothing written"


def test_ffis_with_a_type_clash_between_headers_fail_the_plan_cleanly(ffi_files, good_ffi, tmp_path):
    """DQUALITY an integer in one FFI and text in another: the table cannot be built."""
    bad = tmp_path / ffi_files[1].name
    bad.write_bytes(replace_card(good_ffi, "DQUALITY", "'abc'", image_header_offset(good_ffi)))
    error = bounded(lambda: ingest([str(ffi_files[0]), str(bad)], str(tmp_path / "cube.fits")))
    assert_named(error, FFIError)


def test_ffis_without_any_wcs_fail_the_plan_with_a_named_error(ffi_files, tmp_path):
    paths = []
    for path in ffi_files:
        with fits.open(path) as hdul:
            for key in ("CTYPE1", "CTYPE2"):
                del hdul[1].header[key]
            hdul.writeto(tmp_path / path.name)
        paths.append(str(tmp_path / path.name))
    assert_named(bounded(lambda: ingest(paths, str(tmp_path / "cube.fits"))), NotACubeError)


# ----------------------------------------------------------------------------- cutout side
def _cube_case(data: bytes) -> dict[str, bytes]:
    image = image_header_offset(data)
    table = data.index(b"XTENSION= 'BINTABLE'")
    return {
        "truncated: no table": data[:table],
        "truncated mid-table": data[:table + 2 * BLOCK],
        "truncated mid-pixels": data[:image + 3 * BLOCK],
        "more frames than the object holds": replace_card(data, "NAXIS2", "3000", image),
        "NAXIS4 = 10^12": replace_card(data, "NAXIS4", "1000000000000", image),
        "NAXIS3 = NaN": replace_card(data, "NAXIS3", "NaN", image),
        "BITPIX 7": replace_card(data, "BITPIX", "7", image),
        "BITPIX -64": replace_card(data, "BITPIX", "-64", image),
        "NAXIS 1000": replace_card(data, "NAXIS", "1000", image),
        "primary NAXIS 2.5": replace_card(data, "NAXIS", "2.5"),
        "table rows != frames": replace_card(data, "NAXIS2", "999", table),
        "table row length = 10^12": replace_card(data, "NAXIS1", "1000000000000", table),
        "table TFORM garbage": replace_card(data, "TFORM1", "'1000000Q'", table),
        "table TFIELDS 999": replace_card(data, "TFIELDS", "999", table),
        "no END card": data.replace(b"END" + b" " * 77, b"COMMENT" + b" " * 73),
        "non-ASCII header bytes": data[:200] + b"\xff\xfe" * 40 + data[280:],
        "not FITS": b"<html>not a cube</html>" + b" " * 9000,
    }


@pytest.fixture(scope="module")
def cube_cases(good_cube) -> dict[str, bytes]:
    cases = _cube_case(good_cube)
    assert set(cases) == set(CUBE_CASES)
    return cases


CUBE_CASES = ["truncated: no table", "truncated mid-table", "truncated mid-pixels",
              "more frames than the object holds", "NAXIS4 = 10^12", "NAXIS3 = NaN", "BITPIX 7", "BITPIX -64",
              "NAXIS 1000", "primary NAXIS 2.5", "table rows != frames", "table row length = 10^12",
              "table TFORM garbage", "table TFIELDS 999", "no END card", "non-ASCII header bytes", "not FITS"]


@pytest.mark.parametrize("case", CUBE_CASES)
def test_hostile_cube_gives_a_named_error(case, cube_cases, target, tmp_path):
    path = tmp_path / "tess-s0007-2-1-cube.fits"
    path.write_bytes(cube_cases[case])
    clear_cache()
    assert_named(bounded(lambda: cutout(str(path), target, 5)), NotACubeError)


@pytest.mark.parametrize("change", [("CTYPE1", "RA---XXX"), ("CD1_1", 0.0), ("CRVAL2", "abc"),
                                    ("A_ORDER", "abc"), ("CTYPE2", 3.0)])
def test_cube_with_an_unusable_wcs_gives_a_named_error(change, ffi_files, target, tmp_path):
    paths = []
    for path in ffi_files:
        with fits.open(path) as hdul:
            hdul[1].header[change[0]] = change[1]
            if change[0] == "CD1_1":  # a singular CD matrix (an all-zero one would mean "absent")
                hdul[1].header["CD1_2"] = 0.0
            hdul.writeto(tmp_path / path.name)
        paths.append(str(tmp_path / path.name))
    clear_cache()
    cube = tmp_path / "cube.fits"

    def ingest_then_cut():
        ingest(paths, str(cube))
        cutout(str(cube), target, 5)

    # Named either way: the WCS is refused, or (CRVAL2 unreadable, so 0) the target is not on it.
    assert_named(bounded(ingest_then_cut), NotACubeError, OutsideCubeError)


def test_hostile_cube_on_s3_gives_a_named_error(cube_cases, target, bucket, s3_endpoint):
    storage.reset_clients()
    for case in ("truncated mid-table", "more frames than the object holds", "NAXIS4 = 10^12"):
        url = f"s3://{bucket}/cubes/hostile-{len(case)}-cube.fits"
        put_bytes(url, cube_cases[case])
        clear_cache()
        assert_named(bounded(lambda: cutout(url, target, 5)), NotACubeError)


def test_a_sidecar_that_overstates_the_cube_is_not_trusted(good_cube, target, bucket, s3_endpoint):
    """The sidecar promises more rows than its own cube_size holds: it is ignored and the
    index is built from the cube itself."""
    storage.reset_clients()
    url = f"s3://{bucket}/cubes/tess-s0007-2-1-cube.fits"
    put_bytes(url, good_cube)
    index = load_index(url, refresh=True)
    index.nrows *= 1000
    put_bytes(url + ".index.json", index.to_json())
    clear_cache()
    assert load_index(url).nrows == 20
    (tpf,) = cutout(url, target, 5)
    assert tpf[1].data["FLUX"].shape == (3, 5, 5)


# ----------------------------------------------------------------------------- fuzzing
_KEYS = [b"NAXIS", b"NAXIS1", b"NAXIS2", b"BITPIX", b"PCOUNT", b"GCOUNT", b"BSCALE", b"BZERO", b"TSTART",
         b"TSTOP", b"CAMERA", b"CCD", b"SECTOR", b"XTENSION", b"SIMPLE", b"DQUALITY", b"CTYPE1", b"CD1_1",
         b"TFORM1", b"TFIELDS", b"NAXIS3", b"NAXIS4", b"TTYPE1"]
_VALUES = [b"NaN", b"-1", b"0", b"1000000000000", b"7", b"1e308", b"'abc'", b"T", b"2.5", b"-32", b"'",
           b"999999", b"''", b"-9223372036854775809", b"'1000000A'", b"3"]


def mutate(data: bytes, rng: random.Random, header_blocks: int = 6) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        roll = rng.random()
        if roll < 0.3 and out:
            pos = rng.randrange(0, min(len(out), header_blocks * BLOCK))
            out[pos] = rng.choice(b"0123456789-+.EeTF' =/NaI\x00\xff\x80")
        elif roll < 0.75:
            index = rng.randrange(0, header_blocks * 36)
            if (index + 1) * 80 <= len(out):
                out[index * 80:(index + 1) * 80] = (rng.choice(_KEYS).ljust(8) + b"= " +
                                                    rng.choice(_VALUES).rjust(20)).ljust(80)
        elif roll < 0.9:
            out = out[:rng.randrange(0, len(out) + 1)]
        elif out:
            pos = rng.randrange(0, min(len(out), header_blocks * BLOCK))
            out[pos:pos + 80] = b" " * 80
    return bytes(out)


def assert_only_named_errors(cases: Iterator[Callable[[], object]], limit: float) -> None:
    """Run every call ``cases`` yields (each after the case's file is written), all within
    ``limit`` seconds; any exception but a CubecutError is collected and fails the test."""
    unnamed = []

    def run_all() -> None:
        for call in cases:
            try:
                call()
            except CubecutError:
                pass
            except Exception as exc:  # noqa: BLE001 - collected and reported
                unnamed.append(f"{type(exc).__name__}: {exc}")

    assert bounded(run_all, limit=limit) is None
    assert not unnamed, unnamed[:5]


@pytest.mark.slow
def test_fuzzed_ffis_give_named_errors_only(good_ffi, tmp_path):
    rng = random.Random(20261123)
    path = tmp_path / "tess2019-s0007-2-1-0001-s_ffic.fits"

    def cases():
        for _ in range(200):
            path.write_bytes(mutate(good_ffi, rng))
            yield lambda: inspect_ffi(open_source(str(path)))

    assert_only_named_errors(cases(), limit=60)


@pytest.mark.slow
def test_fuzzed_cubes_give_named_errors_only(good_cube, target, tmp_path):
    rng = random.Random(112026)
    table_block = good_cube.index(b"XTENSION= 'BINTABLE'") // BLOCK
    path = tmp_path / "cube.fits"

    def cut() -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cutout(str(path), target, 5)

    def cases():
        for i in range(80):
            data = good_cube
            if i % 2:  # the table's header
                head, tail = data[:table_block * BLOCK], data[table_block * BLOCK:]
                data = head + mutate(tail, rng, header_blocks=2)
            else:
                data = mutate(data, rng, header_blocks=2)
            path.write_bytes(data)
            clear_cache()
            yield cut

    assert_only_named_errors(cases(), limit=90)
