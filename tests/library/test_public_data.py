"""Real data sources: public buckets without an AWS account, and FFIs/cubes behind any fsspec URL.

The public bucket is moto's server behind :class:`RecordingProxy`, which records whether
each request was signed (moto accepts both); the cutout runs in a subprocess whose
environment holds no AWS credentials at all (no AWS_* variables, HOME an empty folder, so
no ~/.aws). HTTPS-style FFIs and cubes come from :class:`RangeServer`, which serves byte
ranges over HTTP on 127.0.0.1 and records every byte it sends.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import boto3
import fsspec
import numpy as np
import pytest
from astropy.io import fits

import cubecut
from cubecut import storage
from cubecut.cutout import clear_cache, load_index
from cubecut.errors import AccessDeniedError, StorageError, TargetNotWritableError
from cubecut.fficut import fits_cut
from cubecut.ingest.inputs import resolve_inputs
from cubecut.ingest.run import ingest
from cubecut.storage import Location, ReadStats, open_source, put_bytes
from cubecut.synth import make_sector
from public_servers import RangeServer, RecordingProxy
from test_cutout import make_astrocut_cube, sky
from test_ingest import assert_same_cube

NROWS, NCOLS, NT = 40, 48, 5


#: Every test here starts and ends with no cached index, WCS or S3 client (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("fresh_clients")


@pytest.fixture(scope="module")
def local_cube(tmp_path_factory) -> Path:
    """An astrocut-made cube (so it has no .index.json sidecar)."""
    return make_astrocut_cube(tmp_path_factory.mktemp("public"), shape=(NROWS, NCOLS), frames=NT)


@pytest.fixture
def public_cube(bucket: str, local_cube: Path) -> str:
    """The cube in a bucket that, like MAST's stpubdata, anyone may list and read (moto
    refuses unsigned requests to objects that are not public)."""
    s3 = boto3.client("s3")
    key = f"tess/public/mast/{local_cube.name}"
    s3.put_object(Bucket=bucket, Key=key, Body=local_cube.read_bytes(), ACL="public-read")
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": "*", "Action": ["s3:GetObject", "s3:ListBucket"],
        "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"]}]}))
    return f"s3://{bucket}/{key}"


def no_credentials_environment(home: Path, endpoint: str) -> dict[str, str]:
    """This process's environment without anything botocore could find credentials in."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CUBECUT_", "BOTO"))}
    home.mkdir(exist_ok=True)
    env.update(HOME=str(home), AWS_ENDPOINT_URL=endpoint,
               # not a credential: stops botocore probing the EC2 metadata service off-machine
               AWS_EC2_METADATA_DISABLED="true")
    return env


def test_public_bucket_cutout_with_no_credentials_anywhere(public_cube, local_cube, s3_endpoint, tmp_path):
    coord = sky(load_index(local_cube), 20.3, 18.8)
    with RecordingProxy(s3_endpoint) as proxy:
        env = no_credentials_environment(tmp_path / "home", proxy.url)
        check = subprocess.run([sys.executable, "-c", "import boto3; print(boto3.session.Session().get_credentials())"],
                               env=env, capture_output=True, text=True, check=True)
        assert check.stdout.strip() == "None"  # botocore finds no credentials in this environment
        run = subprocess.run([sys.executable, "-m", "cubecut_infra.cli", "cutout", public_cube, "--ra",
                              str(float(coord.ra.deg)), "--dec", str(float(coord.dec.deg)), "--size", "5",
                              "--out", str(tmp_path / "tpfs")], env=env, capture_output=True, text=True)
        assert run.returncode == 0, run.stderr
        assert "credentials" not in run.stderr
        signed = proxy.signed
    assert signed and not any(signed), f"{sum(signed)} of {len(signed)} requests were signed"
    (path,) = run.stdout.split()
    expected = cubecut.cutout(local_cube, coord, 5)[0]
    with fits.open(path) as tpf:
        np.testing.assert_array_equal(tpf[1].data["FLUX"], expected[1].data["FLUX"])
        assert tpf[0].header["SECTOR"] == expected[0].header["SECTOR"]


def test_anon_is_unsigned_even_with_credentials_and_default_is_signed(public_cube, local_cube, s3_endpoint,
                                                                      monkeypatch, tmp_path):
    coord = sky(load_index(local_cube), 20.3, 18.8)
    with RecordingProxy(s3_endpoint) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        storage.reset_clients()
        cubecut.cutout(public_cube, coord, 3)  # credentials are configured (conftest): signed
        assert proxy.signed and all(proxy.signed)
        proxy.seen.requests.clear()
        clear_cache()
        cubecut.cutout(public_cube, coord, 3, anon=True)
        assert proxy.signed and not any(proxy.signed)
        proxy.seen.requests.clear()
        clear_cache()
        assert cubecut_cli(["cutout", public_cube, "--ra", str(float(coord.ra.deg)), "--dec", str(float(coord.dec.deg)),
                            "--size", "3", "--out", str(tmp_path), "--anon"]) == 0
        assert proxy.signed and not any(proxy.signed)
    assert "CUBECUT_ANON" not in os.environ  # --anon lasts for its command only


def cubecut_cli(argv: list[str]) -> int:
    from cubecut_infra.cli import main

    return main(argv)


def test_unsigned_request_to_a_private_object_says_why(bucket, local_cube):
    coord = sky(load_index(local_cube), 20.3, 18.8)
    private = f"s3://{bucket}/private/{local_cube.name}"
    put_bytes(private, local_cube.read_bytes())
    with pytest.raises(AccessDeniedError, match="unsigned.*not public"):
        cubecut.cutout(private, coord, 3, anon=True)
    assert cubecut.cutout(private, coord, 3)  # signed, with the credentials configured


# --- fsspec URLs: HTTP byte ranges, memory:// --------------------------------------------

@pytest.fixture(scope="module")
def sector(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("https")
    make_sector(folder / "ffis", sector=3, camera=2, ccd=1, frames=NT, shape=(NROWS, NCOLS), seed=4)
    names = sorted(p.name for p in (folder / "ffis").glob("*.fits"))
    (folder / "ffis" / "manifest.txt").write_text("\n".join(names) + "\n")
    return folder


def test_ingest_from_https_ffis_equals_local_ingest(sector, tmp_path):
    local = tmp_path / "local-cube.fits"
    ingest(sorted(str(p) for p in (sector / "ffis").glob("*.fits")), str(local))
    with RangeServer(sector) as server:
        urls = resolve_inputs([f"{server.url}/ffis/manifest.txt"])
        assert urls[0].startswith(f"{server.url}/ffis/") and len(urls) == NT
        remote = tmp_path / "remote-cube.fits"
        ingest(urls, str(remote))
        ranged = [r for r in server.seen.requests if r["method"] == "GET" and r["path"].endswith(".fits")]
    assert ranged and all(r["range"] and r["status"] == 206 for r in ranged)
    assert_same_cube(remote, local)


def test_ffi_cutout_from_https_reads_only_the_box_rows(sector, tmp_path):
    files = sorted(str(p) for p in (sector / "ffis").glob("*.fits"))
    coord = sky_of_ffi(files[0], 24.0, 20.0)
    local = ReadStats()
    (expected,) = fits_cut(files, coord, 5, stats=local)
    with RangeServer(sector) as server:
        urls = [f"{server.url}/ffis/{Path(f).name}" for f in files]
        remote_stats = ReadStats()
        (remote,) = fits_cut(urls, coord, 5, stats=remote_stats)
        sent = server.bytes_sent
    print(f"\nffi-cutout over HTTP: {sent} bytes sent, {local.bytes} read locally")
    assert sent == remote_stats.bytes == local.bytes  # the same byte ranges as from local files
    for a, b in zip(remote[1:], expected[1:]):
        np.testing.assert_array_equal(a.data, b.data)


def sky_of_ffi(path: str, x: float, y: float):
    from astropy.wcs import WCS

    with fits.open(path) as hdul:
        return WCS(hdul[1].header).pixel_to_world(x, y)


def test_cutout_of_a_cube_over_https_and_memory_equals_local(local_cube, tmp_path):
    coord = sky(load_index(local_cube), 30.2, 11.7)
    expected = cubecut.cutout(local_cube, coord, (7, 4))[0]
    clear_cache()
    local = ReadStats()
    cubecut.cutout(local_cube, coord, (7, 4), stats=local)  # no sidecar: indexed from the cube
    with RangeServer(local_cube.parent) as server:
        stats = ReadStats()
        (remote,) = cubecut.cutout(f"{server.url}/{local_cube.name}", coord, (7, 4), stats=stats)
        assert server.bytes_sent == stats.bytes == local.bytes
        pixel_reads = [r for r in server.seen.requests if r["status"] == 206][2:]  # after the two metadata reads
        assert len(pixel_reads) == 4  # one per cutout row
    np.testing.assert_array_equal(remote[1].data["FLUX"], expected[1].data["FLUX"])
    def cards(header):  # the checksum cards' comments carry the time they were computed
        return [card for card in header.cards if card.keyword not in {"CHECKSUM", "DATASUM"}]

    assert [tuple(c) for c in cards(remote[2].header)] == [tuple(c) for c in cards(expected[2].header)]
    with fsspec.open(f"memory://cubes/{local_cube.name}", "wb") as f:
        f.write(local_cube.read_bytes())
    (memory,) = cubecut.cutout(f"memory://cubes/{local_cube.name}", coord, (7, 4))
    np.testing.assert_array_equal(memory[1].data["FLUX"], expected[1].data["FLUX"])


def test_server_that_ignores_ranges_and_read_only_urls_are_named_errors(local_cube, sector):
    coord = sky(load_index(local_cube), 30.2, 11.7)
    with RangeServer(local_cube.parent, ignore_range=True) as server:
        with pytest.raises(StorageError, match="ignores byte ranges"):
            cubecut.cutout(f"{server.url}/{local_cube.name}", coord, 3)
    with RangeServer(local_cube.parent) as server:
        with pytest.raises(StorageError, match="not found"):
            open_source(f"{server.url}/missing-cube.fits")
        with pytest.raises(TargetNotWritableError, match="read-only"):
            put_bytes(f"{server.url}/x.fits", b"data")
        with pytest.raises(TargetNotWritableError):
            ingest(sorted(str(p) for p in (sector / "ffis").glob("*.fits")), f"{server.url}/cubes/")
    assert Location.parse(f"{server.url}/a/b-cube.fits").url == f"{server.url}/a/b-cube.fits"


def test_every_s3_call_of_an_anon_location_is_unsigned(public_cube, s3_endpoint, monkeypatch):
    """Not only the cutout's reads: HEAD, whole GETs and listings of an ``anon`` location too,
    though credentials are configured (conftest)."""
    location = Location.parse(public_cube, anon=True)
    with RecordingProxy(s3_endpoint) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        storage.reset_clients()
        assert storage.head(location).size > 0
        storage.get_bytes(location)
        assert list(storage.list_objects(Location.parse(public_cube.rsplit("/", 1)[0] + "/", anon=True)))
        assert len(proxy.signed) == 3 and not any(proxy.signed), proxy.signed
