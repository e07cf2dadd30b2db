"""The local ASL interpreter's ItemBatcher and ResultWriter (a Distributed Map over S3 items)."""
from __future__ import annotations

import json
from typing import Any

import boto3
import pytest

from cubecut_infra.local.asl import StateMachineRunner, UnsupportedASLError, validate_definition

WORK = "arn:aws:lambda:us-east-1:123456789012:function:work"


def machine(batcher: dict, writer: bool = True, selector: bool = False) -> dict:
    state: dict[str, Any] = {
        "Type": "Map", "MaxConcurrency": 3,
        "ItemReader": {"Resource": "arn:aws:states:::s3:getObject", "ReaderConfig": {"InputType": "JSON"},
                       "Parameters": {"Bucket.$": "$.bucket", "Key": "items.json"}},
        "ItemBatcher": batcher,
        "ItemProcessor": {"ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
                          "StartAt": "Work", "States": {"Work": {"Type": "Task", "Resource": WORK, "End": True}}},
        "End": True,
    }
    if writer:
        state["ResultWriter"] = {"Resource": "arn:aws:states:::s3:putObject",
                                 "Parameters": {"Bucket.$": "$.bucket", "Prefix": "out/map"}}
    if selector:
        state["ItemSelector"] = {"v.$": "$$.Map.Item.Value"}
    return {"StartAt": "Each", "States": {"Each": state}}


@pytest.fixture
def s3(s3_endpoint: str) -> Any:
    return boto3.client("s3", endpoint_url=s3_endpoint)


def test_batches_by_count_and_bytes_with_batch_input_and_written_results(s3: Any, bucket: str) -> None:
    items = [{"n": i, "pad": "x" * (250 if i == 4 else 1)} for i in range(7)]
    s3.put_object(Bucket=bucket, Key="items.json", Body=json.dumps(items).encode())
    seen: list[dict] = []

    def work(event: Any, context: Any) -> Any:
        seen.append(event)
        return {"sum": sum(item["n"] for item in event["Items"]), "job": event["BatchInput"]["job"]}

    definition = machine({"MaxItemsPerBatch": 3, "MaxInputBytesPerBatch": 320,
                          "BatchInput": {"job.$": "$.job"}})
    execution = StateMachineRunner(definition, {WORK: work}, s3_client=s3, name="bulk").run(
        {"bucket": bucket, "job": "j1"})
    assert execution.status == "SUCCEEDED", (execution.error, execution.cause)
    batches = sorted([item["n"] for item in event["Items"]] for event in seen)
    assert batches == [[0, 1, 2], [3], [4], [5, 6]], "3 a batch; item 4 (311 bytes) fits with no other"
    assert all(event["BatchInput"] == {"job": "j1"} for event in seen)
    details = execution.output["ResultWriterDetails"]
    assert details["Bucket"] == bucket and details["Key"].startswith("out/map/")
    assert ":mapRun:bulk/Each:" in execution.output["MapRunArn"]
    manifest = json.loads(s3.get_object(Bucket=bucket, Key=details["Key"])["Body"].read())
    (succeeded,) = manifest["ResultFiles"]["SUCCEEDED"]
    children = json.loads(s3.get_object(Bucket=bucket, Key=succeeded["Key"])["Body"].read())
    assert [json.loads(c["Output"])["sum"] for c in children] == [3, 3, 4, 11], "in item order"
    assert all(c["Status"] == "SUCCEEDED" and json.loads(c["Input"])["Items"] for c in children)


def test_batcher_needs_a_distributed_map_and_no_item_selector() -> None:
    assert validate_definition(machine({"MaxItemsPerBatch": 2})) == []
    assert any("MaxItemsPerBatch or MaxInputBytesPerBatch" in p for p in validate_definition(machine({})))
    with pytest.raises(UnsupportedASLError, match="ItemSelector together with ItemBatcher"):
        StateMachineRunner(machine({"MaxItemsPerBatch": 2}, selector=True), {WORK: lambda e, c: e}, s3_client=object())
    inline = machine({"MaxItemsPerBatch": 2}, writer=False)
    del inline["States"]["Each"]["ItemReader"]
    inline["States"]["Each"]["ItemProcessor"]["ProcessorConfig"] = {"Mode": "INLINE"}
    assert any("ItemBatcher is only for DISTRIBUTED Maps" in p for p in validate_definition(inline))
