"""docs/api.md's limits and constants are the code's and template.yaml's.

Each figure below is read from where it is defined (the library's and the app's constants,
the template's defaults, the pinned versions, the TESScut route's current result) and
looked up in the doc written as the doc writes it, so changing one without the other fails.
The budgets-per-cadence table and the streamed cutout are test_api_budgets.py's.
"""
from __future__ import annotations

import ast
import json
import math
import re
from dataclasses import fields
from pathlib import Path

import pytest
import yaml

from cubecut.cutout.geometry import MAX_CUTOUT_PIXELS
from cubecut.storage import PARTS_IN_FLIGHT
from cubecut.storage.s3_config import INTERACTIVE
from cubecut.storage.stream import STREAM_PART_BYTES
from cubecut.tesscut import service
from cubecut.tesscut.jsontext import MAX_JSON_DEPTH, MAX_NUMBER_DIGITS
from cubecut.tesscut.mast import MAX_FILTER_VALUES, MAX_FILTERS, MAX_FREE_TEXT_CHARS
from cubecut.tesscut.moving import MAX_EPHEMERIS_CHARS, MAX_EPHEMERIS_ROWS
from cubecut.tesscut.names import NAME_CACHE_SIZE, RESOLVER_TIMEOUT_S
from cubecut.tesscut.protocol import RESULT_FORMAT, TESS_PIXEL_DEG
from cubecut_app.forms import MAX_BODY_BYTES, MAX_FIELDS
from cubecut_app.models import MAX_BULK_CATALOG_CHARS, MAX_LIST_VALUES, MAX_MASHUP_CHARS, MAX_VALUE_CHARS
from cubecut_app.settings import AppSettings
from cubecut_infra.local.template import _Loader

ROOT = Path(__file__).resolve().parents[2]
DOC = " ".join((ROOT / "docs" / "api.md").read_text().split())
TEMPLATE = yaml.load((ROOT / "template.yaml").read_text(), Loader=_Loader)
PARAMETERS = TEMPLATE["Parameters"]
API = TEMPLATE["Resources"]["ApiFunction"]["Properties"]
MIB = 2**20


def pinned(name: str) -> str:
    return re.search(rf"^{name}==([\d.]+)$", (ROOT / "constraints.txt").read_text(), flags=re.M).group(1)


def figures() -> list[str]:
    catalog_ttl = next(f.default for f in fields(AppSettings) if f.name == "catalog_ttl")
    base64_mb = service.INLINE_LIMIT * 4 / 3 / 1e6
    route = json.loads((ROOT / "benchmarks" / "results" / "route.json").read_text())
    return [
        f"unmodified astroquery {pinned('astroquery')} and lightkurve {pinned('lightkurve').removesuffix('.0')}",
        f"a body over {MAX_BODY_BYTES // MIB} MiB (`forms.MAX_BODY_BYTES`)",
        f"at most {MAX_BULK_CATALOG_CHARS // MIB} MiB ({MAX_BULK_CATALOG_CHARS:,} characters;",
        f"`Retry-After: {service.RETRY_AFTER_S}` | S3 did not answer within the API's deadlines "
        f"({INTERACTIVE.connect_timeout:.0f} s connect, {INTERACTIVE.read_timeout:.0f} s read, {INTERACTIVE.attempts} attempts)",
        f"stored zip ({int(PARAMETERS['PresignExpirySeconds']['Default']) // 3600} h, `CUBECUT_PRESIGN_EXPIRY`)",
        f"**body**: at most {MAX_BODY_BYTES // MIB} MiB (413)",
        f"**parameters**: at most {MAX_FIELDS} fields",
        f"at most {MAX_JSON_DEPTH} levels of nesting and {MAX_NUMBER_DIGITS} digits in a number",
        f"ordinary strings at most {MAX_VALUE_CHARS} characters, lists (`sector`, `name`) at most {MAX_LIST_VALUES} values, "
        f"`request` {MAX_MASHUP_CHARS:,} characters, `ephemeris` {MAX_EPHEMERIS_CHARS:,}",
        f"at most {MAX_FILTERS} filters of {MAX_FILTER_VALUES} values, `freeText` at most {MAX_FREE_TEXT_CHARS} characters",
        f"the last {NAME_CACHE_SIZE} resolved names are kept in memory",
        f"zips up to **{service.INLINE_LIMIT // MIB} MiB are returned in the body",
        f"so {service.INLINE_LIMIT // MIB} MiB becomes {base64_mb:.1f} MB with headers to spare",
        f"a multipart upload of {STREAM_PART_BYTES // MIB} MiB parts",
        f"peak memory down by the {route['medians']['100_after']['zip_bytes'] / 1e6:.0f} MB zip",
        f"`RESULT_FORMAT` (bumped when the TPF/zip layout changes; {RESULT_FORMAT} since",
        f"`CUBECUT_CATALOG_TTL` seconds ({catalog_ttl:.0f} by default)",
        f"(template parameter, default {PARAMETERS['ResultsExpiryDays']['Default']})",
        f"`CUBECUT_MAX_CONCURRENT` (default {service.MAX_CONCURRENT})",
        f"(`ApiReservedConcurrency`, default {PARAMETERS['ApiReservedConcurrency']['Default']}: at most "
        f"{PARAMETERS['ApiReservedConcurrency']['Default']} requests",
        f"(`ApiThrottlingRateLimit` {PARAMETERS['ApiThrottlingRateLimit']['Default']} requests/s, "
        f"`ApiThrottlingBurstLimit` {PARAMETERS['ApiThrottlingBurstLimit']['Default']})",
        f"at most {MAX_CUTOUT_PIXELS:,} pixels (`cutout.geometry.MAX_CUTOUT_PIXELS`), "
        f"i.e. 10^{math.log10(MAX_CUTOUT_PIXELS**2):.0f} pixels",
        f"at most {service.MAX_PIXEL_FRAMES // 10**6} million pixel-frames summed over the matched cubes",
        f"(`CUBECUT_MAX_WORK_BYTES`, {service.MAX_WORK_BYTES:,} bytes of the API function's {API['MemorySize']} MB)",
        f"most {service.STREAM_ABOVE_BYTES // MIB} MiB (`STREAM_ABOVE_BYTES`) is built whole in memory, charged "
        f"{service.IN_MEMORY_BYTES_PER_PIXEL_FRAME} bytes per pixel-frame",
        f"error, {service.STREAMED_BYTES_PER_PIXEL_FRAME} bytes per pixel-frame)",
        f"charged {service.STREAMED_BYTES_PER_PIXEL_FRAME} bytes per pixel-frame plus {service.STREAM_OVERHEAD_BYTES // MIB} MiB",
        f"(CDS Sesame) under a {RESOLVER_TIMEOUT_S:.0f} s time-out",
        f"a pixel is {TESS_PIXEL_DEG * 3600:.0f} arcsec",
        f"at least 2 rows, at most {MAX_EPHEMERIS_ROWS:,} (and {MAX_EPHEMERIS_CHARS // 10**6} M characters)",
        f"parts written, {['one', 'two', 'three', 'four', 'five', 'six'][PARTS_IN_FLIGHT - 1]} at a time "
        "(`cubecut.storage.PARTS_IN_FLIGHT`)",
    ]


@pytest.mark.parametrize("expected", figures())
def test_every_limit_is_the_codes(expected):
    assert " ".join(expected.split()) in DOC


def test_the_work_budget_and_pixel_frames_are_the_templates():
    """The service's defaults are what the template deploys, so the doc's one figure holds for both."""
    variables = API["Environment"]["Variables"]
    assert int(variables["CUBECUT_MAX_WORK_BYTES"]) == service.MAX_WORK_BYTES
    assert int(PARAMETERS["CutoutMaxPixelFrames"]["Default"]) == service.MAX_PIXEL_FRAMES


def list_length(path: str, name: str) -> int:
    """The number of items of the module-level list ``name`` in the test module ``path``."""
    for node in ast.parse((ROOT / path).read_text()).body:
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            target = node.targets[0] if isinstance(node, ast.Assign) else node.target
            if isinstance(target, ast.Name) and target.id == name and isinstance(node.value, ast.List):
                return len(node.value.elts)
    raise AssertionError(f"{path} has no list {name}")


def max_examples(path: str) -> int:
    return int(re.search(r"@settings\(max_examples=(\d+)", (ROOT / path).read_text()).group(1))


def test_the_fuzz_and_contract_tests_are_as_large_as_the_doc_says():
    """The request counts of "A 5xx comes only from a server fault" are the tests' parameters."""
    peers, moving, contract = "tests/peers/test_tesscut_api.py", "tests/app/test_moving_api.py", "tests/app/test_api_contract.py"
    examples = re.search(r'"CUBECUT_SCHEMATHESIS_EXAMPLES", "(\d+)"', (ROOT / contract).read_text()).group(1)
    expected = [
        f"the fuzz test sends {max_examples(peers)} generated requests",
        f"plus {list_length(peers, 'BAD_REQUESTS')} named malformed ones",
        f"the moving-target routes get {max_examples(moving)} more with generated JSON ephemerides and "
        f"{list_length(moving, 'BAD')} named bad ones on each route",
        f"runs schemathesis {pinned('schemathesis')} with **all** its checks against the local stack "
        f"({examples} examples per operation",
    ]
    for figure in expected:
        assert figure in DOC, figure


def test_the_job_id_token_and_panel_sizes_are_the_codes():
    """The job id's random part, the capability token and the quick-look panel, as the code makes them."""
    submit = (ROOT / "layers" / "cubecut" / "bulk" / "submit.py").read_text()
    id_bytes = int(re.search(r"secrets\.token_hex\((\d+)\)", submit).group(1))
    token_bytes = int(re.search(r"secrets\.token_urlsafe\((\d+)\)", submit).group(1))
    assert f"`bulk-YYYYMMDDTHHMMSS-` and {2 * id_bytes} hex digits" in DOC
    assert f"(start second + {8 * id_bytes} random bits)" in DOC
    assert f"`token` ({token_bytes} random bytes, {8 * token_bytes} bits, URL-safe base64" in DOC
    width, height = re.search(r"WIDTH, HEIGHT, [^=]*= (\d+), (\d+),", (ROOT / "layers" / "cubecut" / "images.py").read_text()).groups()
    assert f"a {width} x {height} px panel" in DOC
