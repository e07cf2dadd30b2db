"""Shared fixtures: a real S3 HTTP API on 127.0.0.1 (moto's server mode), buckets, data."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Callable

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
def bucket(s3_endpoint: str, request: pytest.FixtureRequest) -> str:
    """A fresh, empty bucket on the local S3 server, named after the test.

    The name is the same in every run: the fault proxy picks a request's fate from its
    path (bucket included), so a test that injects faults at a rate meets the same faults
    each time instead of failing once in a few hundred runs (each test runs once per
    session, so the name is still unused).
    """
    # the node id as it was before the tests moved into tests/<layer>/ (file names are unique)
    node = f"tests/{request.node.path.name}::{request.node.nodeid.split('::', 1)[1]}"
    name = f"test-{hashlib.blake2b(node.encode(), digest_size=6).hexdigest()}"
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=name)
    return name


@pytest.fixture
def fresh_clients():
    """No cached cube index, WCS or S3 client before or after the test (each test meets its
    own endpoint and credentials)."""
    from cubecut import storage
    from cubecut.cutout import clear_cache

    clear_cache()
    storage.reset_clients()
    yield
    clear_cache()
    storage.reset_clients()


def _synthetic_cube(folder: Path, *, frames: int, product: str = "spoc", shape: tuple[int, int] = (40, 44),
                    sector: int = 1) -> Path:
    """A cube ingested from ``frames`` synthetic FFIs of ``shape`` (rows, columns) in ``folder``."""
    from cubecut.ingest.run import ingest
    from cubecut.synth import make_sector

    ffis = make_sector(folder / "ffis", sector=sector, camera=1, ccd=1, frames=frames, shape=shape,
                       product=product, seed=3)
    cube = folder / f"tess-s{sector:04d}-1-1-cube.fits"
    ingest([str(p) for p in ffis], str(cube), sector=sector)
    return cube


@pytest.fixture(scope="session")
def synthetic_cube() -> Callable[..., Path]:
    """Builds a small cube: ``synthetic_cube(folder, frames=, product=, shape=, sector=)``."""
    return _synthetic_cube
