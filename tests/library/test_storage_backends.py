"""The storage package's shape: one backend per kind of location, chosen once from the
scheme (as docs/architecture.md's table says), and the functions of ``cubecut.storage``
answering alike through every backend; ``list_etags`` lists like ``list_objects`` (the
whole tree under a prefix, signed or not as the location asks)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from cubecut import storage
from cubecut.errors import StaleObjectError, TargetNotWritableError
from cubecut.storage import Location, ObjectStreamWriter, backend_for, list_etags, list_objects, put_bytes
from public_servers import RecordingProxy

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.usefixtures("fresh_clients")


def _documented_backends() -> dict[str, list[str]]:
    """``{backend class: example URLs}`` from docs/architecture.md's data-source table (a
    row's first cell names the locations: backticked URLs or schemes, and "local path")."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    found = {}
    for first, backend in re.findall(r"^\|([^|]+)\| `(\w+Backend)` \|", text, flags=re.M):
        examples = [t + "host/x.fits" if t.endswith("://") else t for t in re.findall(r"`([^`]+)`", first)]
        found[backend] = examples + (["/tmp/x.fits", "rel/x.fits"] if "local path" in first else [])
    return found


def test_each_scheme_has_the_backend_the_docs_name():
    documented = _documented_backends()
    assert set(documented) == {"S3Backend", "LocalBackend", "FsspecBackend"}, documented
    for backend, examples in documented.items():
        assert examples, backend
        for url in examples:
            assert type(backend_for(Location.parse(url))).__name__ == backend, url


def test_s3_reads_go_through_the_client_the_docs_name(bucket):
    """The S3 row: obstore (``ObstoreSource``) for ``open_pinned``, botocore (``S3Source``)
    for ``open_source``."""
    row = next(line for line in (ROOT / "docs" / "architecture.md").read_text().splitlines()
               if line.startswith("| `s3://"))
    assert "obstore (`ObstoreSource`, `open_pinned`)" in row and "botocore (`S3Source`)" in row, row
    url = f"s3://{bucket}/x.fits"
    etag = put_bytes(url, b"0123")
    assert type(storage.open_pinned(url, size=4, etag=etag)).__name__ == "ObstoreSource"
    assert type(storage.open_source(url)).__name__ == "S3Source"


def _tree(root: Path) -> dict[str, bytes]:
    files = {"a.fits": b"a", "b.fits.index.json": b"{}", "s1/c.fits": b"cc", "s1/deeper/d.fits": b"ddd"}
    for name, data in files.items():
        put_bytes(str(root / name), data)
    return files


def test_local_list_etags_lists_the_whole_tree_as_s3_lists_a_prefix(tmp_path):
    files = _tree(tmp_path)
    etags = list_etags(tmp_path)
    assert sorted(etags) == sorted(str(tmp_path / name) for name in files), "files in subfolders too"
    assert sorted(etags) == sorted(location.url for location, _ in list_objects(tmp_path))
    assert etags[str(tmp_path / "s1/deeper/d.fits")] == storage.head(tmp_path / "s1/deeper/d.fits").etag


def test_s3_list_etags_lists_the_whole_prefix(bucket):
    for name, data in {"p/a.fits": b"a", "p/s1/c.fits": b"cc", "q/x": b"x"}.items():
        put_bytes(f"s3://{bucket}/{name}", data)
    etags = list_etags(f"s3://{bucket}/p/")
    assert sorted(etags) == [f"s3://{bucket}/p/a.fits", f"s3://{bucket}/p/s1/c.fits"]
    assert etags[f"s3://{bucket}/p/a.fits"] == storage.head(f"s3://{bucket}/p/a.fits").etag


def test_s3_list_etags_is_signed_or_not_as_the_location_asks(bucket, s3_endpoint, monkeypatch):
    """``anon`` on the location decides whether LIST is signed, for ``list_etags`` as for
    ``list_objects`` (moto answers unsigned LISTs too: a proxy records the signatures)."""
    put_bytes(f"s3://{bucket}/p/a.fits", b"a")
    with RecordingProxy(s3_endpoint) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        storage.reset_clients()
        for anon in (True, False):
            proxy.seen.requests.clear()
            location = Location.parse(f"s3://{bucket}/p/", anon=anon)
            assert list(list_etags(location)) == [f"s3://{bucket}/p/a.fits"]
            assert [found for found, _ in list_objects(location)] == [location.sibling("a.fits")]
            assert proxy.signed == [not anon, not anon], (anon, proxy.signed)


@pytest.mark.parametrize("write", [
    lambda url: storage.put_bytes(url, b"x"),
    lambda url: storage.put_bytes_fast(url, b"x"),
    lambda url: storage.delete(url),
    lambda url: ObjectStreamWriter(url),
])
def test_fsspec_locations_are_read_only_for_every_writer(write):
    with pytest.raises(TargetNotWritableError, match=r"https:// locations are read-only"):
        write("https://example.invalid/x.fits")


def test_a_pinned_local_source_is_the_version_asked_for(tmp_path):
    path = tmp_path / "cube.fits"
    etag = put_bytes(str(path), b"0123456789")
    source = storage.open_pinned(path, size=10, etag=etag)
    assert bytes(source.read(2, 5)) == b"234"
    put_bytes(str(path), b"0123456789")  # the same bytes, a new version
    with pytest.raises(StaleObjectError):
        storage.open_pinned(path, size=10, etag=etag)
    with pytest.raises(StaleObjectError):
        storage.open_pinned(path, size=11, etag=None)


def test_a_pinned_s3_source_refuses_another_version(bucket):
    url = f"s3://{bucket}/cube.fits"
    etag = put_bytes(url, b"0123456789")
    source = storage.open_pinned(url, size=10, etag=etag)
    assert bytes(source.read(2, 5)) == b"234"
    put_bytes(url, b"9876543210")
    with pytest.raises(StaleObjectError):
        source.read(2, 5)


@pytest.mark.parametrize("where", ["local", "s3"])
def test_fast_and_plain_calls_store_and_return_the_same_bytes(where, tmp_path, request):
    base = str(tmp_path) if where == "local" else f"s3://{request.getfixturevalue('bucket')}"
    storage.put_bytes_fast(f"{base}/fast/a.fits", b"fast bytes")
    put_bytes(f"{base}/plain/a.fits", b"plain bytes")
    for name, data in (("fast", b"fast bytes"), ("plain", b"plain bytes")):
        plain, etag = storage.get_bytes(f"{base}/{name}/a.fits")
        fast, fast_etag = storage.get_bytes_fast(f"{base}/{name}/a.fits")
        assert plain == fast == data and etag == fast_etag == storage.head(f"{base}/{name}/a.fits").etag
