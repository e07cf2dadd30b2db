"""The OpenAPI document tells the truth: checked field by field, then by a schema-driven
fuzzer (schemathesis, every one of its checks) against the running local stack.

schemathesis runs as its own process (its CLI, configured by ``tests/app/schemathesis.toml``,
which lists the few per-operation exceptions and why) against the stack's API on
127.0.0.1; the stack runs in this process. The run is bounded by examples per operation.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cubecut_app import models
from stack_fixtures import TesscutSky, tesscut_sky  # noqa: F401 - the fixture

TESSCUT = "/tesscut/api/v0.1"
CONFIG = Path(__file__).with_name("schemathesis.toml")
#: Examples per operation and phase: bounded, and deterministic.
EXAMPLES = int(os.environ.get("CUBECUT_SCHEMATHESIS_EXAMPLES", "8"))


@pytest.fixture(scope="module")
def document() -> dict:
    from cubecut_functions import api

    return api.openapi_document()


def test_every_operation_declares_its_parameters_body_and_answers(document):
    paths = document["paths"]
    assert "422" not in json.dumps(document), "powertools' 422 is never answered"
    for path, operations in paths.items():
        for method, operation in operations.items():
            statuses = set(operation["responses"])
            assert statuses & {"200", "202"}, (path, method)  # 202: a bulk job started
            if method == "post":
                assert {"400", "413", "415"} <= statuses, (path, statuses)
                content = operation["requestBody"]["content"]
                assert set(content) == {"application/x-www-form-urlencoded", "application/json"}, path
            elif operation.get("parameters"):
                assert all(p["in"] == "query" for p in operation["parameters"]), path
                assert "400" in statuses, (path, statuses)


def _parameters(document: dict, path: str) -> dict[str, dict]:
    return {p["name"]: p for p in document["paths"][path]["get"]["parameters"]}


def test_required_parameters_and_media_types_are_the_ones_the_routes_use(document):
    astrocut = _parameters(document, f"{TESSCUT}/astrocut")
    assert astrocut["ra"]["required"] and astrocut["dec"]["required"] and not astrocut["x"]["required"]
    assert astrocut["ra"]["schema"] == {"type": "number", "maximum": 360.0, "minimum": 0.0}
    assert astrocut["sector"]["schema"]["type"] == "array"
    answers = document["paths"][f"{TESSCUT}/astrocut"]["get"]["responses"]
    assert set(answers) == {"200", "303", "400", "503"}
    assert set(answers["200"]["content"]) == {"application/zip", "application/json"}
    assert "Location" in answers["303"]["headers"] and "Retry-After" in answers["503"]["headers"]
    assert set(document["paths"][f"{TESSCUT}/quicklook"]["get"]["responses"]["200"]["content"]) == {
        "image/png", "application/json"}
    assert set(document["paths"][f"{TESSCUT}/ffi_wcs"]["get"]["responses"]) == {"200", "400", "404"}
    assert _parameters(document, f"{TESSCUT}/moving_target/astrocut")["ephemeris"]["required"]
    body = document["paths"]["/v1/cutouts"]["post"]["requestBody"]
    form = body["content"]["application/x-www-form-urlencoded"]["schema"]
    assert body["required"] and set(form["required"]) == {"ra", "dec"}
    assert {"cube", "sector", "camera", "ccd", "product", "size", "units"} <= set(form["properties"])
    assert set(document["paths"]["/v1/cutouts"]["post"]["responses"]) == {"200", "400", "404", "413", "415", "503"}
    assert _parameters(document, "/v1/resolve")["target"]["required"]
    assert "503" in document["paths"]["/v1/resolve"]["get"]["responses"]


def test_documented_parameters_are_the_models_fields(document):
    """One source of truth: the query parameters are exactly the model's fields."""
    for path, model in ((f"{TESSCUT}/sector", models.SectorParams), (f"{TESSCUT}/astrocut", models.CutoutParams),
                        (f"{TESSCUT}/quicklook", models.QuicklookParams), ("/v1/quicklook", models.V1QuicklookParams),
                        (f"{TESSCUT}/ffi_wcs", models.FfiWcsParams), ("/Santa-war/query", models.ResolverParams)):
        names = {field.alias or name for name, field in model.model_fields.items()}
        assert set(_parameters(document, path)) == names, path


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_schemathesis_with_all_checks_passes_against_the_local_stack(tesscut_sky: TesscutSky, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch):
    # /v1/resolve looks names up: at a closed port on this machine, never on the internet.
    monkeypatch.setenv("CUBECUT_SESAME_URLS", f"http://127.0.0.1:{_closed_port()}/")
    command = [str(Path(sys.executable).with_name("schemathesis")), "--config-file", str(CONFIG), "run",
               f"{tesscut_sky.api_url}/openapi.json", "--max-examples", str(EXAMPLES), "--generation-deterministic",
               "--workers", "1", "--request-timeout", "60", "--max-failures", "20", "--no-shrink",
               "--report", "junit", "--report-dir", str(tmp_path)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900, cwd=tmp_path,
                          env={**os.environ, "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1", "NO_COLOR": "1"})
    summary = done.stdout[done.stdout.find("SUMMARY"):] if "SUMMARY" in done.stdout else done.stdout[-3000:]
    print(f"\n[schemathesis] {summary.strip()}")
    assert done.returncode == 0, done.stdout[-12000:] + done.stderr[-2000:]
    from cubecut_app.app import openapi_document

    operations = sum(len(methods) for methods in openapi_document()["paths"].values())
    assert operations >= 21 and f"Tested: {operations}" in done.stdout, summary  # every operation, /v1/bulk too
