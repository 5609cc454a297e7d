"""POST /scim/v2/{org}/Users in front of Flask (web/scim_direct.py): it answers the common case alone, and hands
every other request on to the Flask app, body intact, having written nothing."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, update
from werkzeug.test import EnvironBuilder

from idp_bridge.bridge import Bridge
from idp_bridge.models import AuditEvent, Invite, Member, utcnow
from idp_bridge.services import directory
from idp_bridge.store.db import transaction
from idp_bridge.web.api import AUTH_FAILURE_LIMIT, AUTH_FAILURE_SCOPE
from idp_bridge.web.scim_direct import DirectCreate
from tests.helpers import make_key, make_org
from tests.test_api_authorization import snapshot
from tests.test_scim import CORE, Scim, entra_user, okta_user


class Downstream:
    """Stands in for the Flask app behind the endpoint: records what reaches it and answers 418."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, bytes, str]] = []

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        self.seen.append((environ["PATH_INFO"], body, environ.get("CONTENT_LENGTH", "")))
        start_response("418 I'M A TEAPOT", [("Content-Length", "0")])
        return [b""]


def call(endpoint: DirectCreate, body: bytes, *, key: str | None, org: str = "acme", method: str = "POST",
         path: str = "/Users", query: str = "", content_type: str = "application/scim+json",
         remote_addr: str = "192.0.2.7") -> tuple[str, dict[str, str], bytes]:
    environ = EnvironBuilder(path=f"/scim/v2/{org}{path}", method=method, query_string=query, data=body,
                             content_type=content_type, environ_base={"REMOTE_ADDR": remote_addr},
                             headers={"Authorization": f"Bearer {key}"} if key else {}).get_environ()
    environ["wsgi.input"] = io.BytesIO(body)
    answered: list[Any] = []
    out = b"".join(endpoint(environ, lambda status, headers, exc_info=None: answered.append((status, headers))))
    status, headers = answered[0]
    return status, dict(headers), out


@pytest.fixture
def setup(app: Flask, bridge: Bridge) -> tuple[DirectCreate, Downstream, str]:
    make_org(bridge, member_limit=3)
    downstream = Downstream()
    return DirectCreate(downstream, app, bridge), downstream, make_key(bridge, "acme", ["scim:provision"])


def members(bridge: Bridge) -> list[Member]:
    with transaction(bridge.sessions) as session:
        return list(session.scalars(select(Member)))


@pytest.mark.parametrize("body", [okta_user(), entra_user()], ids=["okta", "entra"])
def test_the_common_create_is_answered_here_alone(bridge: Bridge, setup: tuple[DirectCreate, Downstream, str],
                                                  body: dict[str, Any]) -> None:
    endpoint, downstream, key = setup
    status, headers, out = call(endpoint, json.dumps(body).encode(), key=key)
    assert status == "201 CREATED" and not downstream.seen
    created = json.loads(out)
    assert headers["Location"] == created["meta"]["location"]
    assert headers["Content-Type"] == "application/scim+json"
    assert [m.id for m in members(bridge)] == [created["id"]]


def _seat_taken(bridge: Bridge, key: str) -> None:
    for i in range(3):
        Scim(_client(bridge), key).create(okta_user(f"seat{i}@acme.com"))


def _client(bridge: Bridge) -> FlaskClient:
    from idp_bridge.bootstrap import create_app

    return create_app(bridge=bridge).test_client()


def _overdue(bridge: Bridge, key: str) -> None:
    Scim(_client(bridge), key).create(okta_user("late@acme.com"))
    with transaction(bridge.sessions) as session:
        session.execute(update(Invite).values(expires_at=utcnow() - timedelta(hours=1)))


def _over_failure_limit(app: Flask) -> None:
    strategy = app.extensions["idp_bridge_limiter"].limiter
    limit = app.extensions[AUTH_FAILURE_LIMIT]
    while strategy.test(limit, AUTH_FAILURE_SCOPE, "192.0.2.7"):
        strategy.hit(limit, AUTH_FAILURE_SCOPE, "192.0.2.7")


OKTA = json.dumps(okta_user()).encode()
# Each: what the request is, how it differs from the common create, and what to prepare first.
HANDED_ON: dict[str, tuple[dict[str, Any], bytes, Callable[[Flask, Bridge, str], None] | None]] = {
    "no key": ({"key": None}, OKTA, None),
    "unknown key": ({"key": "idpb_not-a-key"}, OKTA, None),
    "unknown org": ({"org": "nobody"}, OKTA, None),
    "key of another org": ({"org": "other"}, OKTA, lambda app, bridge, key: make_org(bridge, "other") and None),
    "key without scim:provision": ({"key": "READ"}, OKTA, None),
    "platform key": ({"key": "PLATFORM"}, OKTA, None),
    "inactive user": ({}, json.dumps(okta_user() | {"active": False}).encode(), None),
    "username taken": ({}, OKTA, lambda app, bridge, key: Scim(_client(bridge), key).create(okta_user()) and None),
    "org full": ({}, json.dumps(okta_user("four@acme.com")).encode(),
                 lambda app, bridge, key: _seat_taken(bridge, key)),
    "an invite overdue": ({}, json.dumps(okta_user("new@acme.com")).encode(),
                          lambda app, bridge, key: _overdue(bridge, key)),
    "over the failed-authentication limit": ({}, OKTA, lambda app, bridge, key: _over_failure_limit(app)),
    "query string": ({"query": "attributes=userName"}, OKTA, None),
    "text/plain": ({"content_type": "text/plain"}, OKTA, None),
    "malformed JSON": ({}, b'{"schemas": [', None),
    "a JSON array": ({}, b"[]", None),
    "NUL in a value": ({}, json.dumps(okta_user("nul\u0000@acme.com")).encode(), None),
    "wrong schema": ({}, json.dumps(okta_user() | {"schemas": ["urn:example:not-a-user"]}).encode(), None),
    "no userName": ({}, json.dumps({"schemas": [CORE], "externalId": "x"}).encode(), None),
    "userName not a string": ({}, json.dumps(okta_user() | {"userName": 7}).encode(), None),
    "not an email nor an identifier": ({}, json.dumps(okta_user(" ")).encode(), None),
    "GET": ({"method": "GET"}, b"", None),
    "trailing slash": ({"path": "/Users/"}, OKTA, None),
    "a user's path": ({"path": "/Users/abc"}, OKTA, None),
}


@pytest.mark.parametrize("case", list(HANDED_ON))
def test_every_other_request_goes_on_to_the_flask_app_untouched_with_nothing_written(
        app: Flask, bridge: Bridge, setup: tuple[DirectCreate, Downstream, str], case: str) -> None:
    endpoint, downstream, key = setup
    given, body, prepare = HANDED_ON[case]
    if prepare is not None:
        prepare(app, bridge, key)
    keys = {"READ": make_key(bridge, "acme", ["users:read"]), "PLATFORM": make_key(bridge, None)}
    options = dict(given)
    options["key"] = keys.get(options.get("key", key), options.get("key", key))
    before = snapshot(bridge)
    status, _, _ = call(endpoint, body, **options)
    assert status.startswith("418")
    assert len(downstream.seen) == 1
    path, seen_body, length = downstream.seen[0]
    assert path == f"/scim/v2/{options.get('org', 'acme')}{options.get('path', '/Users')}"
    assert seen_body == body and (not body or length == str(len(body)))
    after = snapshot(bridge)
    # A key's last use is recorded by the request that uses it, which is the Flask app's to answer here.
    assert after == before


def test_the_direct_answer_carries_the_headers_the_flask_app_would(app: Flask, bridge: Bridge,
                                                                   client: FlaskClient) -> None:
    make_org(bridge, member_limit=5)
    key = make_key(bridge, "acme", ["scim:provision"])
    headers = {"Authorization": f"Bearer {key}"}
    direct = client.post("/scim/v2/acme/Users", data=json.dumps(okta_user("a@acme.com")), headers=headers,
                         content_type="application/scim+json")
    # The same create through the Flask app alone (the query string hands it on: every attribute asked for).
    general = client.post("/scim/v2/acme/Users?excludedAttributes=nickName", data=json.dumps(okta_user("b@acme.com")),
                          headers=headers, content_type="application/scim+json")
    assert direct.status_code == general.status_code == 201
    varying = {"Location", "Content-Length", "X-Request-ID"}
    assert ({k: v for k, v in direct.headers.items() if k not in varying}
            == {k: v for k, v in general.headers.items() if k not in varying})
    assert set(direct.headers.keys()) == set(general.headers.keys())
    created, read = direct.get_json(), client.get(f"/scim/v2/acme/Users/{direct.get_json()['id']}",
                                                   headers=headers).get_json()
    assert created == read


def test_why_nobody_can_redeem_is_logged_once_for_a_directorys_run_of_creates(
        bridge: Bridge, setup: tuple[DirectCreate, Downstream, str], caplog: pytest.LogCaptureFixture) -> None:
    endpoint, downstream, key = setup
    assert not downstream.seen
    directory._warned_at.clear()
    with caplog.at_level(logging.WARNING, logger="idp_bridge.services.directory"):
        for i in range(2):
            status, _, _ = call(endpoint, json.dumps(okta_user(f"u{i}@acme.com")).encode(), key=key)
            assert status == "201 CREATED"
    said = [r.getMessage() for r in caplog.records if r.name == "idp_bridge.services.directory"]
    assert len(said) == 1 and "no identity provider is configured" in said[0] and " in acme: " in said[0]
    # Once the interval has passed, it is said again.
    directory._warned_at.update({k: v - directory.WARN_EVERY_SECONDS for k, v in directory._warned_at.items()})
    with caplog.at_level(logging.WARNING, logger="idp_bridge.services.directory"):
        caplog.clear()
        status, _, _ = call(endpoint, json.dumps(okta_user("u9@acme.com")).encode(), key=key)
    assert status == "201 CREATED"
    assert len([r for r in caplog.records if r.name == "idp_bridge.services.directory"]) == 1


def test_behind_a_proxy_the_direct_create_audits_the_forwarded_client(settings_overrides: dict[str, Any]) -> None:
    from idp_bridge.bootstrap import build, create_app
    from idp_bridge.settings import load_settings

    settings_overrides["trust_proxy_headers"] = 1
    bridge = build(load_settings(overrides=settings_overrides, environ={}))
    try:
        make_org(bridge)
        key = make_key(bridge, "acme", ["scim:provision"])
        client = create_app(bridge=bridge).test_client()
        resp = client.post("/scim/v2/acme/Users", data=json.dumps(okta_user()), content_type="application/scim+json",
                           headers={"Authorization": f"Bearer {key}", "X-Forwarded-For": "203.0.113.9"})
        assert resp.status_code == 201
        with transaction(bridge.sessions) as session:
            audited = session.scalars(select(AuditEvent).where(AuditEvent.action == "invite.created")).all()
            assert [event.ip for event in audited] == ["203.0.113.9"]
    finally:
        bridge.close()
