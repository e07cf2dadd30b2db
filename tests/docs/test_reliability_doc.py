"""docs/reliability.md's limits are the code's, botocore's, template.yaml's and the tests'.

The retry and deadline tables are read from ``cubecut.storage`` and botocore, the public
policy's budgets from template.yaml and the library, and the bounds the hostile-FITS tests
hold every input to from that test module: changing one without the doc fails here. The
blocks between ``figures:`` markers are written by the tests that measure them
(``CUBECUT_RECORD_FIGURES=1``) and are not checked here.
"""
from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import yaml
from botocore.retries import quota, standard

from cubecut.ingest.policy import QUOTE_CHARS
from cubecut.storage import BATCH, INTERACTIVE
from cubecut.storage.base import READ_ATTEMPTS, RETRY_BASE_SECONDS, RETRY_MAX_SECONDS
from cubecut.tesscut.service import IN_MEMORY_BYTES_PER_PIXEL_FRAME
from cubecut_app.models import MAX_BULK_SIDE
from cubecut_infra.local.template import _Loader

ROOT = Path(__file__).resolve().parents[2]
DOC = " ".join((ROOT / "docs" / "reliability.md").read_text().split())
TEMPLATE = yaml.load((ROOT / "template.yaml").read_text(), Loader=_Loader)
PARAMETERS, RESOURCES = TEMPLATE["Parameters"], TEMPLATE["Resources"]
HOSTILE = (ROOT / "tests" / "library" / "test_hostile_fits.py").read_text()


def default(name: str) -> int:
    return int(PARAMETERS[name]["Default"])


def hostile_bound(name: str) -> float:
    """A bound of tests/library/test_hostile_fits.py: a number or a product of numbers."""
    expression = re.search(rf"^{name} = ([\d. *]+)$", HOSTILE, flags=re.M).group(1)
    return math.prod(float(factor) for factor in expression.split("*"))


def seconds(value: float) -> str:
    return f"{value:g} s"


def figures() -> list[str]:
    work_bytes = int(RESOURCES["ApiFunction"]["Properties"]["Environment"]["Variables"]["CUBECUT_MAX_WORK_BYTES"])
    token_bytes = int(re.search(r"secrets\.token_urlsafe\((\d+)\)", (ROOT / "layers" / "cubecut" / "bulk" / "submit.py")
                                .read_text()).group(1))
    lifecycle = [r["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"] for r in
                 RESOURCES["DataBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
                 if "AbortIncompleteMultipartUpload" in r]
    fuzzed = re.findall(r"for \w+ in range\((\d+)\)", HOSTILE[HOSTILE.index("def test_fuzzed_ffis"):])[:2]
    return [
        f"botocore standard mode: {BATCH.attempts - 1} retries ({BATCH.attempts} attempts), delay before retry *n* uniform "
        f"in [0, min(2^(n-1), {standard.ExponentialBackoff._MAX_BACKOFF})] s (full jitter); a retry quota of "
        f"{quota.RetryQuota.INITIAL_CAPACITY} tokens per client",
        f"up to {READ_ATTEMPTS} attempts per read ({INTERACTIVE.attempts} under the API's `INTERACTIVE` deadlines, below), "
        f"full-jitter exponential back-off ({seconds(RETRY_BASE_SECONDS)} base, {seconds(RETRY_MAX_SECONDS)} cap)",
        f"still short after {READ_ATTEMPTS} attempts",
        f"| `INTERACTIVE` | the API (`cubecut_app.app.answer`) | {seconds(INTERACTIVE.connect_timeout)} | "
        f"{seconds(INTERACTIVE.read_timeout)} | {seconds(INTERACTIVE.request_timeout)} | {INTERACTIVE.attempts} |",
        f"| `BATCH` (the default) | ingest, bulk, on-upload, the CLI | {seconds(BATCH.connect_timeout)} | "
        f"{seconds(BATCH.read_timeout)} | {seconds(BATCH.request_timeout)} | {BATCH.attempts} (botocore's back-off as above; "
        f"obstore {RETRY_BASE_SECONDS:g}-{RETRY_MAX_SECONDS:g} s, retrying for at most {seconds(BATCH.retry_timeout)})",
        f"after its {INTERACTIVE.attempts} attempts", f"`cubecut.storage`'s {READ_ATTEMPTS} body attempts",
        f"(the API function's {RESOURCES['ApiFunction']['Properties']['Timeout']} s)",
        f"obstore makes all {BATCH.attempts} attempts, botocore more than `INTERACTIVE`'s {INTERACTIVE.attempts} (the test "
        f"does not wait for its back-off, which grows to {standard.ExponentialBackoff._MAX_BACKOFF} s)",
        f"(`AbortIncompleteMultipartUpload`, {lifecycle[0]} day)",
        f"seeded mutation fuzzer ({fuzzed[0]} FFIs, {fuzzed[1]} cubes)",
        f"within {hostile_bound('TIME_LIMIT_S'):g} s and {hostile_bound('MEMORY_LIMIT_BYTES') // 2**20:.0f} MB of "
        "allocation (tracemalloc)",
        f"within one request's {default('CutoutMaxPixelFrames'):,} pixel-frames",
        f"the holder of its {token_bytes * 8}-bit token",
        f"within {MAX_BULK_SIDE} pixels per side and {work_bytes // IN_MEMORY_BYTES_PER_PIXEL_FRAME:,} pixel-frames",
        f"a job within `BulkMaxPixelFrames` ({default('BulkMaxPixelFrames'):.0e})".replace("e+0", "e"),
        f"at most {default('BulkMaxJobsInFlight')} jobs run at once ({default('BulkMaxJobsPerCaller')} per caller), and the "
        f"bulk workers have {default('BulkBatchReservedConcurrency')} reserved Lambda instances",
        f"at most {QUOTE_CHARS} characters",
    ]


@pytest.mark.parametrize("expected", figures())
def test_every_limit_is_where_it_is_defined(expected):
    assert " ".join(expected.split()) in DOC
