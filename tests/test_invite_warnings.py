"""An invite nobody could redeem yet (no provider to sign in with): created, with a warning in answer and log."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import update

from idp_bridge.bridge import Bridge
from idp_bridge.models import Organization
from idp_bridge.store.db import transaction
from tests.clirun import cli_env, invoke
from tests.helpers import Api, make_key, make_org

GOOGLE = {"google": {"type": "google", "client_id": "x", "client_secret": "y"}}
NO_PROVIDER = "no identity provider is configured"


def warning_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and r.name.startswith("idp_bridge")]


@pytest.fixture
def api(bridge: Bridge, client: FlaskClient) -> Api:
    make_org(bridge)
    return Api(client, make_key(bridge))


def test_an_invite_with_no_provider_configured_is_created_with_a_warning_and_one_log_line(
        api: Api, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        body = api.invite("ada@example.com")
    assert body["status"] == "PENDING" and body["link"]
    assert len(body["warnings"]) == 1 and NO_PROVIDER in body["warnings"][0]
    lines = warning_lines(caplog)
    assert len(lines) == 1 and body["id"] in lines[0] and NO_PROVIDER in lines[0]
    assert api.get(f"/invites/{body['id']}").get_json()["status"] == "PENDING"
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        resent = api.post(f"/invites/{body['id']}/resend").get_json()
    assert resent["warnings"] == body["warnings"] and len(warning_lines(caplog)) == 1


def test_a_bulk_invite_with_no_provider_configured_warns_once_for_the_batch(
        api: Api, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        preview = api.post("/invites/bulk?dry_run=true", {"invites": ["a@example.com", "b@example.com"]}).get_json()
    assert len(preview["warnings"]) == 1 and NO_PROVIDER in preview["warnings"][0]
    assert warning_lines(caplog) == []  # a preview writes nothing, and logs nothing
    with caplog.at_level(logging.WARNING):
        body = api.post("/invites/bulk", {"invites": ["a@example.com", "b@example.com"]}).get_json()
    assert body["summary"]["created"] == 2
    assert len(body["warnings"]) == 1 and NO_PROVIDER in body["warnings"][0]
    lines = warning_lines(caplog)
    assert len(lines) == 1 and "2 invites in acme" in lines[0]


def test_the_cli_import_prints_the_warning(api: Api, tmp_path: Path, database_url: str,
                                           settings_overrides: dict[str, Any]) -> None:
    env = {**cli_env(tmp_path, database_url), "IDP_BRIDGE_SECRET_KEY": settings_overrides["secret_key"]}
    team = tmp_path / "team.csv"
    team.write_text("email\nada@example.com\n")
    code, out, err = invoke(env, "invite", "import", str(team), "--org", "acme")
    assert code == 0 and "created" in out
    assert f"Warning: {NO_PROVIDER}" in err
    invite_id = json.loads(invoke(env, "invite", "list", "--org", "acme", "--json")[1])[0]["id"]
    code, _, err = invoke(env, "invite", "resend", invite_id, "--org", "acme")
    assert code == 0 and f"Warning: {NO_PROVIDER}" in err


class TestWithAProviderConfigured:
    @pytest.fixture
    def settings_overrides(self, settings_overrides: dict[str, Any]) -> dict[str, Any]:
        settings_overrides["providers"] = GOOGLE
        return settings_overrides

    def test_an_invite_someone_can_redeem_carries_no_warning(self, api: Api,
                                                             caplog: pytest.LogCaptureFixture) -> None:
        with caplog.at_level(logging.WARNING):
            assert api.invite("ada@example.com")["warnings"] == []
            bob = api.invite("bob@example.com", provider="google")
            assert bob["warnings"] == []
            assert api.post(f"/invites/{bob['id']}/resend").get_json()["warnings"] == []
            bulk = api.post("/invites/bulk", {"invites": ["c@example.com"]}).get_json()
        assert bulk["warnings"] == [] and bulk["summary"]["created"] == 1
        assert warning_lines(caplog) == []

    def test_an_org_whose_allowed_providers_are_no_longer_configured_gets_the_warning(
            self, api: Api, bridge: Bridge, caplog: pytest.LogCaptureFixture) -> None:
        make_org(bridge, "strict", allowed_providers=["google"])
        # The configuration changed since: the org allows only a provider this deployment no longer has.
        with transaction(bridge.sessions) as session:
            session.execute(update(Organization).where(Organization.slug == "strict")
                            .values(allowed_providers=["okta"]))
        with caplog.at_level(logging.WARNING):
            body = Api(api.client, make_key(bridge, "strict"), org="strict").invite("ada@example.com")
        assert body["warnings"] == ["none of the providers strict allows (okta) is configured: nobody can sign in "
                                    "to redeem the invite until one is"]
        assert len(warning_lines(caplog)) == 1
