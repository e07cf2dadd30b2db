"""The catalog serves one cube per (product, sector, camera, CCD) and says which
(issue 25, finding 4): a second cube of the same CCD under another key does not make
``sector`` list it twice, nor ``astrocut`` zip two members of one name."""
from __future__ import annotations

import io
import json
import logging
import urllib.request
import zipfile
from urllib.parse import urlencode

import pytest

from cubecut.cutout import ffi_wcs, load_index
from cubecut.ingest.run import ingest
from cubecut.synth import make_sector
from cubecut_infra.local.stack import LocalStack

TESSCUT = "/tesscut/api/v0.1"


@pytest.mark.slow
def test_two_cubes_of_one_ccd_are_served_as_one(tmp_path, caplog):
    ffis = [str(p) for p in make_sector(tmp_path / "ffis", sector=7, camera=2, ccd=3, frames=3, shape=(40, 60), seed=3)]
    with LocalStack(bucket="cubecut-choice") as stack:
        canonical = ingest(ffis, f"s3://{stack.bucket}/cubes/", workers=1).cube
        # the same CCD again, under keys that sort before the canonical one
        for key in ("cubes/a-copy-cube.fits", "cubes/old/tess-s0007-2-3-cube.fits"):
            ingest(ffis, f"s3://{stack.bucket}/{key}", workers=1)
        ra, dec = (float(v) for v in ffi_wcs(load_index(canonical)).all_pix2world([[50, 20]], 0)[0])
        query = urlencode({"ra": ra, "dec": dec, "y": 5, "x": 5})
        with caplog.at_level(logging.WARNING, logger="cubecut.cube.catalog"):
            with urllib.request.urlopen(f"{stack.api_url}{TESSCUT}/sector?{query}", timeout=60) as response:
                sectors = json.loads(response.read())["results"]
            with urllib.request.urlopen(f"{stack.api_url}{TESSCUT}/astrocut?{query}", timeout=60) as response:
                members = zipfile.ZipFile(io.BytesIO(response.read())).namelist()
    assert [s["sectorName"] for s in sectors] == ["tess-s0007-2-3"]
    assert len(members) == 1 and members[0].startswith("tess-s0007-2-3"), members
    said = [r.getMessage() for r in caplog.records if "several cubes of one CCD" in r.getMessage()]
    assert said and f"serving {canonical}" in said[0] and "a-copy-cube.fits" in said[0], said
