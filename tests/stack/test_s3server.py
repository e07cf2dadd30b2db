"""LocalS3: S3 → SQS notifications come out as the S3 event that Lambda receives."""
from __future__ import annotations

import re
import uuid
from typing import Any, Iterator

import pytest
from aws_lambda_powertools.utilities.data_classes import S3Event

from cubecut_infra.local.s3server import LocalS3

MIB = 1024 * 1024


@pytest.fixture(scope="module")
def local_s3() -> Iterator[LocalS3]:
    with LocalS3() as server:
        yield server


@pytest.fixture
def watched(local_s3: LocalS3) -> tuple[str, str]:
    bucket = local_s3.create_bucket(f"events-{uuid.uuid4().hex[:10]}")
    return bucket, local_s3.enable_notifications(bucket, prefix="ingest/", suffix="manifest.json")


def assert_real_record_shape(record: dict[str, Any], bucket: str, region: str) -> None:
    """The fields of an S3 event record, as documented for event structure version 2.1."""
    assert set(record) == {"eventVersion", "eventSource", "awsRegion", "eventTime", "eventName", "userIdentity",
                           "requestParameters", "responseElements", "s3"}
    assert (record["eventVersion"], record["eventSource"], record["awsRegion"]) == ("2.1", "aws:s3", region)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", record["eventTime"])
    assert set(record["userIdentity"]) == {"principalId"}
    assert set(record["requestParameters"]) == {"sourceIPAddress"}
    assert set(record["responseElements"]) == {"x-amz-request-id", "x-amz-id-2"}
    s3 = record["s3"]
    assert set(s3) == {"s3SchemaVersion", "configurationId", "bucket", "object"}
    assert s3["s3SchemaVersion"] == "1.0" and s3["configurationId"]
    assert s3["bucket"] == {"name": bucket, "ownerIdentity": {"principalId": s3["bucket"]["ownerIdentity"]["principalId"]},
                            "arn": f"arn:aws:s3:::{bucket}"}
    assert {"key", "size", "eTag", "sequencer"} <= set(s3["object"])
    assert re.fullmatch(r"[0-9A-F]+", s3["object"]["sequencer"])


def test_put_of_a_manifest_gives_one_put_event(local_s3: LocalS3, watched: tuple[str, str]) -> None:
    bucket, queue = watched
    client = local_s3.client("s3")
    client.put_object(Bucket=bucket, Key="ingest/sector 1/manifest.json", Body=b'{"ffis": []}')
    client.put_object(Bucket=bucket, Key="ingest/sector 1/a.fits", Body=b"not a manifest")
    client.put_object(Bucket=bucket, Key="elsewhere/manifest.json", Body=b"{}")

    events = local_s3.poll_events(queue, wait=5)
    assert len(events) == 1 and len(events[0]["Records"]) == 1
    record = events[0]["Records"][0]
    assert_real_record_shape(record, bucket, local_s3.region)
    assert record["eventName"] == "ObjectCreated:Put"
    assert record["s3"]["object"]["key"] == "ingest/sector+1/manifest.json"  # URL-encoded, slashes kept
    assert record["s3"]["object"]["size"] == len(b'{"ffis": []}')
    # The event parses with the powertools class that on_upload uses.
    parsed = next(S3Event(events[0]).records)
    assert (parsed.s3.bucket.name, parsed.s3.get_object.key) == (bucket, "ingest/sector+1/manifest.json")
    assert S3Event(events[0]).object_key == "ingest/sector 1/manifest.json"
    assert local_s3.poll_events(queue) == []  # delivered messages were deleted


def test_multipart_completion_gives_a_complete_event(local_s3: LocalS3, watched: tuple[str, str]) -> None:
    bucket, queue = watched
    client = local_s3.client("s3")
    key = "ingest/big/manifest.json"
    upload = client.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    part = client.upload_part(Bucket=bucket, Key=key, UploadId=upload, PartNumber=1, Body=b"x" * (5 * MIB))
    assert local_s3.poll_events(queue) == []  # nothing until the upload completes
    client.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload,
                                     MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]})
    client.copy_object(Bucket=bucket, Key="ingest/copy/manifest.json", CopySource={"Bucket": bucket, "Key": key})

    records = [record for event in local_s3.poll_events(queue, wait=5) for record in event["Records"]]
    assert [r["eventName"] for r in records] == ["ObjectCreated:CompleteMultipartUpload", "ObjectCreated:Copy"]
    for record in records:
        assert_real_record_shape(record, bucket, local_s3.region)
    sequencers = [int(r["s3"]["object"]["sequencer"], 16) for r in records]
    assert sequencers == sorted(sequencers) and len(set(sequencers)) == 2


def test_notifications_add_to_the_bucket_configuration(local_s3: LocalS3, watched: tuple[str, str]) -> None:
    bucket, first = watched
    second = local_s3.enable_notifications(bucket, prefix="other/")
    config = local_s3.client("s3").get_bucket_notification_configuration(Bucket=bucket)
    assert len(config["QueueConfigurations"]) == 2
    local_s3.client("s3").put_object(Bucket=bucket, Key="other/x", Body=b"1")
    assert local_s3.poll_events(first) == [] and len(local_s3.poll_events(second, wait=5)) == 1


# ----------------------------------------------------------------------------- conditional writes
def _error_code(call) -> str:
    from botocore.exceptions import ClientError

    try:
        call()
    except ClientError as exc:
        return exc.response["Error"]["Code"]
    return "OK"


def _complete(s3, bucket: str, key: str, **condition) -> str:
    upload = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    etag = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload, PartNumber=1, Body=b"x" * 10)["ETag"]
    return _error_code(lambda: s3.complete_multipart_upload(
        Bucket=bucket, Key=key, UploadId=upload, MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]},
        **condition))


def test_complete_multipart_upload_honours_if_match_and_if_none_match(local_s3: LocalS3):
    """As AWS S3: If-None-Match: * fails on an existing key, If-Match on another version
    (412) or on a missing key (404); a matching If-Match commits."""
    s3 = local_s3.client("s3")
    bucket = local_s3.create_bucket(f"cond-{uuid.uuid4().hex[:10]}")
    assert _complete(s3, bucket, "k", IfMatch='"0123"') == "NoSuchKey"
    assert _complete(s3, bucket, "k", IfNoneMatch="*") == "OK"
    assert _complete(s3, bucket, "k", IfNoneMatch="*") == "PreconditionFailed"
    current = s3.head_object(Bucket=bucket, Key="k")["ETag"]
    assert _complete(s3, bucket, "k", IfMatch='"0123"') == "PreconditionFailed"
    assert _complete(s3, bucket, "k", IfMatch=current) == "OK"
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) != []  # the losers' uploads stay open


def test_conditional_puts_race_and_exactly_one_wins(local_s3: LocalS3):
    """16 writers PUT with If-Match of the same version at once: one wins, 15 get 412."""
    import threading

    s3 = local_s3.client("s3")
    bucket = local_s3.create_bucket(f"race-{uuid.uuid4().hex[:10]}")
    base = s3.put_object(Bucket=bucket, Key="k", Body=b"base")["ETag"]
    codes: list[str] = []
    gate = threading.Barrier(16)

    def write(i: int) -> None:
        gate.wait()
        codes.append(_error_code(lambda: s3.put_object(Bucket=bucket, Key="k", Body=f"v{i}".encode(), IfMatch=base)))

    threads = [threading.Thread(target=write, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(codes) == ["OK"] + ["PreconditionFailed"] * 15


def test_uploads_report_when_they_were_initiated(local_s3: LocalS3):
    from datetime import datetime, timezone

    s3 = local_s3.client("s3")
    bucket = local_s3.create_bucket(f"age-{uuid.uuid4().hex[:10]}")
    s3.create_multipart_upload(Bucket=bucket, Key="k")
    (upload,) = s3.list_multipart_uploads(Bucket=bucket)["Uploads"]
    assert abs((datetime.now(timezone.utc) - upload["Initiated"]).total_seconds()) < 120
