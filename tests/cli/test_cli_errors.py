"""Issue 26's rough edges a TESS user meets on day one, one test each: every failure is one
``cubecut: error: ...`` line with exit status 2 (S3 unreachable or refusing, through either
client, in the same words; folders that cannot be written; TPFs given to ``combine``; a
folder given as a cube; three sizes), and nothing is written by a command that fails.
"""
from __future__ import annotations

import socket
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

import cubecut
from cubecut import storage
from cubecut.cutout import ffi_wcs, load_index
from cubecut.errors import AccessDeniedError, HostUnreachableError, ObjectNotFoundError, TargetNotWritableError
from cubecut.fficut.combine import CombineError, combine_cutouts
from cubecut.ingest.inputs import resolve_inputs
from cubecut.ingest.run import ingest
from cubecut.storage import Location, translate_client_error
from cubecut.synth import make_sector
from cubecut_infra.cli import main


#: Every test here starts and ends with no cached index, WCS or S3 client (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("fresh_clients")


@pytest.fixture(scope="module")
def cube(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("day1")
    ffis = make_sector(root / "ffis", sector=1, camera=1, ccd=1, frames=3, shape=(16, 16))
    out = root / "tess-s0001-1-1-cube.fits"
    ingest(resolve_inputs([str(p) for p in ffis]), str(out))
    return out


def position(cube: Path) -> tuple[str, str]:
    world = ffi_wcs(load_index(cube)).pixel_to_world(8, 8)
    return repr(float(world.ra.deg)), repr(float(world.dec.deg))


def one_error_line(capsys) -> str:
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("cubecut: error: "), captured.err
    return lines[0]


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_unreachable_s3_is_one_line_through_obstore(monkeypatch, capsys, cube):
    port = closed_port()
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    ra, dec = position(cube)
    assert main(["cutout", "s3://nowhere/tess-s0001-1-1-cube.fits", "--ra", ra, "--dec", dec, "--size", "3"]) == 2
    line = one_error_line(capsys)
    assert f"cannot reach host 127.0.0.1:{port}" in line and "Debug" not in line


def test_unreachable_s3_through_botocore_has_the_same_words():
    error = translate_client_error(EndpointConnectionError(endpoint_url="http://127.0.0.1:9/b?list-type=2"),
                                   "s3://b/")
    assert isinstance(error, HostUnreachableError)
    assert str(error).startswith("s3://b/: cannot reach host 127.0.0.1:9;")


def test_unsigned_403_is_one_line_through_both_clients(bucket, cube, capsys):
    """A private object read unsigned: obstore (cutout) and botocore (sectors --cubes) say
    the same: access denied, the request was unsigned, the object is not public."""
    s3 = boto3.client("s3")
    s3.put_object(Bucket=bucket, Key="c/tess-s0001-1-1-cube.fits", Body=cube.read_bytes())
    ra, dec = position(cube)
    assert main(["cutout", f"s3://{bucket}/c/tess-s0001-1-1-cube.fits", "--anon", "--ra", ra, "--dec", dec,
                 "--size", "3"]) == 2
    first = one_error_line(capsys)
    assert "access denied (403" in first and "unsigned" in first and "not public" in first
    with pytest.raises(AccessDeniedError, match=r"access denied \(.*\); the request was unsigned"):
        storage.get_bytes(Location.parse(f"s3://{bucket}/c/tess-s0001-1-1-cube.fits", anon=True))


def test_a_refused_signed_read_suggests_anon():
    refused = ClientError({"Error": {"Code": "AccessDenied"}, "ResponseMetadata": {"HTTPStatusCode": 403}},
                          "GetObject")
    with pytest.raises(AccessDeniedError) as error:
        with storage.s3.s3_errors("s3://stpubdata/x", read=True, anon=False):
            raise refused
    assert str(error.value) == "s3://stpubdata/x: access denied (AccessDenied) (use --anon for public data)"
    assert str(storage.read_denied("s3://b/k", "403 Forbidden", False)).endswith("(use --anon for public data)")


def test_cutout_into_an_unwritable_folder_fails_before_reading(cube, tmp_path, capsys):
    blocker = tmp_path / "afile"
    blocker.write_text("")
    ra, dec = position(cube)
    stats = storage.ReadStats()
    with pytest.raises(TargetNotWritableError, match="cannot create the folder"):
        cubecut.cutout(cube, f"{ra} {dec}", 3, output_dir=blocker / "tpfs", stats=stats)
    assert stats.requests == 0
    assert main(["cutout", str(cube), "--ra", ra, "--dec", dec, "--size", "3", "--out", str(blocker / "t")]) == 2
    assert "cannot create the folder" in one_error_line(capsys)


def test_synth_into_an_unwritable_folder(tmp_path, capsys):
    (tmp_path / "afile").write_text("")
    assert main(["synth", str(tmp_path / "afile" / "ffis"), "--sector", "1", "--camera", "1", "--ccd", "1",
                 "--frames", "1", "--shape", "4", "4", "-q"]) == 2
    assert "cannot create the folder" in one_error_line(capsys)


def test_combine_of_tpfs_is_a_named_error(cube, tmp_path, capsys):
    ra, dec = position(cube)
    tpfs = cubecut.cutout(cube, [f"{ra} {dec}"], 3, output_dir=tmp_path)
    with pytest.raises(CombineError, match="not a 2-D image"):
        combine_cutouts(tpfs * 2)
    assert main(["combine", *tpfs, tpfs[0], "--out", str(tmp_path / "c.fits")]) == 2
    assert "not target pixel files" in one_error_line(capsys)
    assert not (tmp_path / "c.fits").exists()


def test_a_folder_as_one_cube_and_three_sizes(cube, capsys):
    ra, dec = position(cube)
    with pytest.raises(ObjectNotFoundError, match="is a folder"):
        cubecut.cutout(cube.parent, f"{ra} {dec}", 3)
    assert main(["cutout", str(cube), "--ra", ra, "--dec", dec, "--size", "11", "11", "11"]) == 2
    assert "--size: cutout size must have 1 or 2 values, got 3" in one_error_line(capsys)


def test_the_public_python_api_is_listed_typed_and_ingests_globs(cube, tmp_path):
    import pydoc

    assert {"cutout", "cutout_sectors", "find_sectors", "ingest_cube"} <= set(cubecut.__all__) <= set(dir(cubecut))
    assert "cutout_sectors" in pydoc.render_doc(cubecut)
    assert (Path(cubecut.__file__).parent / "py.typed").exists()
    result = cubecut.ingest_cube(str(cube.parent / "ffis" / "*ffic.fits"), str(tmp_path / "cubes") + "/")
    assert Path(result.cube) == tmp_path / "cubes" / "tess-s0001-1-1-cube.fits" and result.nt == 3


def test_image_writes_into_its_own_folder(cube, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    ra, dec = position(cube)
    ffis = sorted(str(p) for p in (cube.parent / "ffis").glob("*ffic.fits"))
    assert main(["image", *ffis, "--ra", ra, "--dec", dec, "--size", "5"]) == 0
    printed = capsys.readouterr().out.split()
    assert len(printed) == 3 and all(Path(p).parent == tmp_path / "images" for p in printed)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images"]


def test_openapi_and_tpfs_carry_one_version(cube):
    from cubecut_app.app import openapi_document

    (tpf,) = cubecut.cutout(cube, " ".join(position(cube)), 3)
    assert openapi_document()["info"]["version"] == tpf[0].header["PROCVER"] != "1.0.0"
