"""The API's settings: one typed object, read from exactly the variables template.yaml sets."""
from __future__ import annotations

import dataclasses

import pytest

from cubecut_app.settings import AppSettings
from cubecut_infra.local.template import load_template

#: Variables template.yaml's Globals give every function that the API does not read, and who does.
NOT_THE_APIS = {"CUBECUT_BLOCK_MIB": "functions/ingest.py (the row block size of ingest plans)"}


def _api_environment() -> dict[str, str]:
    template = load_template(stack_name="s", bucket="b")
    return {k: v for k, v in template.functions["ApiFunction"].environment.items() if k.startswith("CUBECUT_")}


def test_settings_read_every_variable_the_template_sets_for_the_api_and_no_other():
    assert AppSettings.variables() == set(_api_environment()) - set(NOT_THE_APIS)


def test_the_template_sets_the_settings_defaults():
    """The deployed values are the documented defaults (aside from the stack's own resources:
    the bucket, the bulk state machine): one source of truth."""
    from cubecut.bulk.plan import MAX_TARGETS

    deployed = AppSettings.from_env(_api_environment())
    assert deployed.bulk_state_machine.endswith(":stateMachine:s-bulk")
    assert deployed == dataclasses.replace(AppSettings(bucket="b"), bucket=deployed.bucket,
                                           bulk_state_machine=deployed.bulk_state_machine)
    assert deployed.bulk_max_targets == MAX_TARGETS  # the bulk Plan's cap, which the API checks first


def test_settings_parse_and_clamp():
    settings = AppSettings.from_env({"CUBECUT_BUCKET": "data", "CUBECUT_MAX_CONCURRENT": "2",
                                     "CUBECUT_SESAME_URLS": " http://a/ ,, http://b/", "CUBECUT_CATALOG_TTL": "0.5",
                                     "CUBECUT_PRESIGN_EXPIRY": "10"})
    assert (settings.max_concurrent, settings.catalog_ttl, settings.sesame_urls) == (2, 0.5, ("http://a/", "http://b/"))
    assert settings.presign_expiry == 60
    assert AppSettings("data", presign_expiry=10 ** 9).presign_expiry == 7 * 24 * 3600
    assert AppSettings.from_env({"CUBECUT_BUCKET": "data", "CUBECUT_SESAME_URLS": ""}).sesame_urls == ()
    with pytest.raises(KeyError, match="CUBECUT_BUCKET"):
        AppSettings.from_env({})
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.bucket = "other"  # type: ignore[misc]


def test_each_answer_has_its_own_settings_and_leaves_none_behind():
    """``answer`` hands the settings to the routes in powertools' routing context, which
    the resolver clears after the request: the next request sees only its own."""
    from cubecut_app import routes
    from cubecut_app.app import answer, app

    seen = []

    def event() -> dict:
        return {"version": "2.0", "routeKey": "$default", "rawPath": "/v1/resolve",
                "rawQueryString": "target=132.5%20-69.2", "queryStringParameters": {"target": "132.5 -69.2"},
                "headers": {}, "isBase64Encoded": False,
                "requestContext": {"http": {"method": "GET", "path": "/v1/resolve", "sourceIp": "127.0.0.1"},
                                   "stage": "$default", "requestId": "r"}}

    original = routes.settings
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(routes, "settings", lambda: seen.append(original()) or seen[-1])
        for expiry in (60, 120):
            settings = dataclasses.replace(AppSettings.from_env({"CUBECUT_BUCKET": "b"}), presign_expiry=expiry)
            assert answer(event(), None, settings)["statusCode"] == 200
            assert app.context == {}
    assert [s.presign_expiry for s in seen] == [60, 120]
