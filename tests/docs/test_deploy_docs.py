"""docs/deploy.md against the template it documents (and the pins and prices it quotes)."""
from __future__ import annotations

import re
from pathlib import Path

import yaml

from cubecut.bulk.plan import TILE_TARGETS
from cubecut.ingest import sizing
from cubecut_infra.local.template import _Loader

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "deploy.md").read_text()
TEMPLATE = yaml.load((ROOT / "template.yaml").read_text(), Loader=_Loader)


def test_the_parameter_table_names_every_parameter_with_its_default():
    rows = {name: line for line in DOC.splitlines() if line.startswith("| `")
            for name in re.findall(r"`(\w+)`", line.split("|")[1])}
    for name, spec in TEMPLATE["Parameters"].items():
        assert name in rows, name
        default = str(spec.get("Default", ""))
        if default and "," not in default and ":" not in default:
            assert default in rows[name].split("|")[2], (name, default)


def test_the_quota_paragraph_sums_the_reserved_concurrency_defaults():
    reserved = [f["Properties"]["ReservedConcurrentExecutions"]["Ref"]
                for f in TEMPLATE["Resources"].values()
                if f["Type"] == "AWS::Serverless::Function" and "ReservedConcurrentExecutions" in f["Properties"]]
    total = sum(int(TEMPLATE["Parameters"][name]["Default"]) for name in reserved)
    assert f"The defaults reserve {total}" in DOC


def test_the_stack_name_limit_follows_from_the_longest_state_machine_name():
    suffixes = [r["Properties"]["Name"]["Fn::Sub"].removeprefix("${AWS::StackName}")
                for r in TEMPLATE["Resources"].values() if r["Type"] == "AWS::Serverless::StateMachine"]
    limit = 80 - max(len(s) for s in suffixes)
    assert f"at most {limit} characters" in DOC


def test_the_cutout_cost_per_second_is_the_api_function_memory_times_the_rate():
    memory_gb = TEMPLATE["Resources"]["ApiFunction"]["Properties"]["MemorySize"] / 1024
    assert f"{memory_gb:g} GB-s per second" in DOC
    assert f"about ${memory_gb * 0.0000133334:.7f} per second" in DOC


def test_the_alarm_list_matches_the_nine_functions():
    functions = [r for r in TEMPLATE["Resources"].values() if r["Type"] == "AWS::Serverless::Function"]
    assert len(functions) == 9 and "each of the nine functions" in DOC


def test_the_cost_paragraph_names_each_functions_memory_and_the_prices():
    """The memory sizes of "Costs" are template.yaml's; the prices are the sizing model's."""
    flat = " ".join(DOC.split())
    costs = flat[flat.index("## Costs"):flat.index("## Upgrade")]
    for name in ("BlockFunction", "ApiFunction", "BulkBatchFunction"):
        stated = int(re.search(rf"`{name}`\D*?(\d+) MB", costs).group(1))
        assert stated == TEMPLATE["Resources"][name]["Properties"]["MemorySize"], name
    assert f"${sizing.LAMBDA_GB_SECOND_USD:.10f} per GB-second" in flat
    assert f"${sizing.LAMBDA_REQUEST_USD * 1e6:.2f} per million invocations" in flat
    assert f"${sizing.S3_GET_USD * 1e3:.4f} per 1,000 GETs and ${sizing.S3_PUT_USD * 1e3:.3f} per 1,000 PUTs" in flat


def test_the_sam_version_and_bounds_are_the_pinned_ones():
    pinned = re.search(r"aws-sam-cli==([\d.]+)", (ROOT / "infra" / "sam" / "sam-constraints.txt").read_text()).group(1)
    assert f"(aws-sam-cli {pinned}, pinned in `infra/sam/`)" in DOC
    assert f"(at most {TEMPLATE['Parameters']['PresignExpirySeconds']['MaxValue']})" in DOC
    assert f"tiles of up to {TILE_TARGETS} row-sorted targets" in DOC
