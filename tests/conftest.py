"""Shared fixtures: a real S3 HTTP API on 127.0.0.1 (moto's server mode), buckets, data."""
from __future__ import annotations

import os
import uuid

import boto3
import pytest

# Nothing in the test-suite may reach the internet or a real AWS account.
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.pop("AWS_PROFILE", None)


@pytest.fixture(scope="session")
def s3_endpoint() -> str:
    """Start moto's S3-compatible server (with S3's conditional writes) on 127.0.0.1 and
    point boto3 at it."""
    from cubecut_infra.local.s3server import S3Server

    server = S3Server()
    endpoint = server.endpoint
    previous = os.environ.get("AWS_ENDPOINT_URL")
    os.environ["AWS_ENDPOINT_URL"] = endpoint
    yield endpoint
    server.stop()
    if previous is None:
        os.environ.pop("AWS_ENDPOINT_URL", None)
    else:
        os.environ["AWS_ENDPOINT_URL"] = previous


@pytest.fixture
def bucket(s3_endpoint: str) -> str:
    """A fresh, empty bucket on the local S3 server."""
    name = f"test-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=name)
    return name
