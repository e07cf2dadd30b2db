"""The per-cube TPF header template cached in the index sidecar (issue 17, cold cutouts).

A process that loads a sidecar written by ingest builds no template: it uses the stored
one, and the TPF it writes is the same file, byte for byte, as with a template built
from the cube's headers (what a sidecar without one, e.g. MAST's cubes, gives).
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from astropy.coordinates import SkyCoord

from cubecut.cutout import clear_cache, cutout_box, ffi_wcs, fill_box, load_index, read_chunks, tpf_bytes
from cubecut.cutout import tpf_template
from cubecut.cutout.reader import open_cube
from cubecut.ingest.run import ingest
from cubecut.storage import Location
from cubecut.synth import make_sector

WHEN = "2026-12-01T00:00:00"


@pytest.fixture(scope="module")
def cube(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("template")
    ffis = make_sector(folder / "ffis", sector=1, camera=1, ccd=1, frames=5, shape=(40, 50), seed=3)
    path = folder / "tess-s0001-1-1-cube.fits"
    ingest([str(p) for p in ffis], str(path))
    return path


def _tpf(cube: Path, index, coord: SkyCoord, size: int) -> bytes:
    """The TPF file of ``size`` around ``coord`` written with ``index``'s template."""
    location = Location.parse(str(cube))
    box = cutout_box(ffi_wcs(index), coord, size, image_shape=(index.nrows, index.ncols))
    chunks = read_chunks(open_cube(location, index, None), index, [box])
    return bytes(tpf_bytes(index, box, lambda f, e: fill_box(index, box, chunks, f, e), coord, timestamp=WHEN))


def _uncached() -> None:
    clear_cache()  # load_index gives new index objects, which hold no template yet


def test_ingest_stores_the_template_and_cutouts_use_it_unchanged(cube: Path, monkeypatch):
    stored = json.loads(Path(f"{cube}.index.json").read_text())["tpf_template"]
    assert stored["format"] == tpf_template.TEMPLATE_FORMAT and len(stored["headers"]) == 3
    index = load_index(cube)
    coords = [SkyCoord(*ffi_wcs(index).all_pix2world(x, y, 0), unit="deg") for x, y in ((25, 20), (1, 38), (49, 0))]

    _uncached()
    monkeypatch.setattr(tpf_template, "make_template", lambda *a: pytest.fail("built a template"))
    from_sidecar = [_tpf(cube, load_index(cube), c, size) for c, size in zip(coords, (7, 4, 10))]
    monkeypatch.undo()

    _uncached()
    bare = dataclasses.replace(load_index(cube), tpf_template=None)  # as a cube without our sidecar
    built = [_tpf(cube, bare, c, size) for c, size in zip(coords, (7, 4, 10))]
    assert from_sidecar == built


def test_a_template_of_another_writer_version_is_rebuilt(cube: Path):
    _uncached()
    index = load_index(cube)
    stale = dict(index.tpf_template or {}, format="cubecut 0.0.1 tpf-template 1")
    old = dataclasses.replace(index, tpf_template=stale)
    assert tpf_template.stored_template(old) is None
    broken = dataclasses.replace(index, tpf_template={"format": tpf_template.TEMPLATE_FORMAT, "headers": [{}]})
    assert tpf_template.stored_template(broken) is None
    coord = SkyCoord(*ffi_wcs(index).all_pix2world(20, 20, 0), unit="deg")
    _uncached()
    reference = _tpf(cube, dataclasses.replace(index, tpf_template=None), coord, 5)
    _uncached()
    assert _tpf(cube, old, coord, 5) == reference


def test_a_template_is_held_by_its_index_object_and_by_no_other(cube: Path):
    """The template lives on the index object it was made from: the same object finds it
    again; another object (even one equal to it) makes its own; nothing outlives them."""
    _uncached()
    index = dataclasses.replace(load_index(cube), tpf_template=None)
    coord = SkyCoord(*ffi_wcs(index).all_pix2world(20, 20, 0), unit="deg")
    first = tpf_template.template_for(index, coord)
    assert tpf_template.template_for(index, coord) is first
    twin = dataclasses.replace(index)
    assert twin == index and tpf_template.template_for(twin, coord) is not first
    assert json.loads(index.to_json()).keys() == json.loads(twin.to_json()).keys()  # not in the sidecar
