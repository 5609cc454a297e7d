"""Console sessions end after the idle and the absolute timeout; the console is limited per session; its
frame-ancestors come from settings; a person in several orgs picks one."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import update

from idp_bridge.bridge import Bridge
from idp_bridge.models import ConsoleSession, utcnow
from idp_bridge.store.db import transaction
from tests.console.conftest import OWNER, Org, get, join, sign_in
from tests.helpers import Api, make_key, make_org
from tests.pages.conftest import OPs


def _age(bridge: Bridge, **values: Any) -> None:
    with transaction(bridge.sessions) as session:
        session.execute(update(ConsoleSession).values(**values))


def test_a_session_idle_longer_than_the_idle_timeout_is_signed_out(owner: FlaskClient, bridge: Bridge) -> None:
    idle = timedelta(minutes=bridge.settings.console_session_idle_minutes)
    _age(bridge, last_seen_at=utcnow() - idle + timedelta(minutes=1))
    assert get(owner, "/console/acme/members").status_code == 200

    _age(bridge, last_seen_at=utcnow() - idle - timedelta(minutes=1))

    assert get(owner, "/console/acme/members").status_code == 303


def test_a_used_session_still_ends_at_the_absolute_timeout(owner: FlaskClient, bridge: Bridge) -> None:
    longest = timedelta(hours=bridge.settings.console_session_max_hours)
    _age(bridge, created_at=utcnow() - longest + timedelta(minutes=5))
    assert get(owner, "/console/acme/members").status_code == 200

    _age(bridge, created_at=utcnow() - longest - timedelta(minutes=1), last_seen_at=utcnow())

    assert get(owner, "/console/acme/members").status_code == 303


def test_each_request_keeps_an_active_session_alive(owner: FlaskClient, bridge: Bridge) -> None:
    idle = timedelta(minutes=bridge.settings.console_session_idle_minutes)
    _age(bridge, last_seen_at=utcnow() - idle + timedelta(minutes=1))

    assert get(owner, "/console/acme/members").status_code == 200
    with transaction(bridge.sessions) as session:
        seen = session.query(ConsoleSession).one().last_seen_at
    assert utcnow() - seen < timedelta(minutes=1)


@pytest.fixture
def tight_limit(settings_overrides: dict[str, Any]) -> None:
    settings_overrides["console_rate_limit"] = "3/minute"


def test_console_pages_are_limited_per_session(tight_limit: None, ops: OPs, client: FlaskClient, acme: Org,
                                               app: Any) -> None:
    sign_in(client, ops.oidc, OWNER)
    answers = [get(client, "/console/acme/members").status_code for _ in range(4)]
    other = app.test_client()
    sign_in(other, ops.oidc, OWNER)

    assert answers == [200, 200, 200, 429]
    assert get(other, "/console/acme/members").status_code == 200


def test_the_console_may_not_be_framed_unless_an_origin_is_configured(owner: FlaskClient) -> None:
    resp = get(owner, "/console/acme/members")

    assert "frame-ancestors 'none'" in resp.headers["Content-Security-Policy"]
    assert resp.headers["X-Frame-Options"] == "DENY"
    assert resp.headers["Cache-Control"] == "no-store"


@pytest.fixture
def embedding_host(settings_overrides: dict[str, Any]) -> None:
    settings_overrides["console_frame_ancestors"] = ["https://app.example.com"]


def test_configured_frame_ancestors_are_the_only_framing_origins(embedding_host: None, ops: OPs,
                                                                 client: FlaskClient) -> None:
    resp = get(client, "/console?signed_out=1")

    assert "frame-ancestors https://app.example.com" in resp.headers["Content-Security-Policy"]
    assert "X-Frame-Options" not in resp.headers


def test_a_member_of_several_orgs_picks_one(ops: OPs, client: FlaskClient, acme: Org, bridge: Bridge,
                                            app: Any) -> None:
    make_org(bridge, "beta")
    join(Api(app.test_client(), make_key(bridge, "beta"), org="beta"), app.test_client(), ops.oidc, OWNER, "MEMBER")
    sign_in(client, ops.oidc, OWNER)

    picker = get(client, "/console")

    body = picker.get_data(as_text=True)
    assert picker.status_code == 200 and "Choose an organization" in body
    assert 'href="/console/acme/members"' in body and 'href="/console/beta/members"' in body
    assert get(client, "/console/beta/members").status_code == 200


def test_a_frame_ancestor_that_is_not_an_origin_is_a_configuration_error() -> None:
    from idp_bridge.errors import ConfigError
    from idp_bridge.settings import load_settings

    with pytest.raises(ConfigError, match="console_frame_ancestors"):
        load_settings(overrides={"console_frame_ancestors": ["https://app.example.com/path; script-src *"]},
                      environ={})
