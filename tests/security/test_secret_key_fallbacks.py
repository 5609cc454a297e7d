"""Changing the secret key with the old one in secret_key_fallbacks keeps everything sealed or keyed with it working."""

from __future__ import annotations

import re
from typing import Any

import pytest
from flask import Flask
from flask.sessions import SecureCookieSessionInterface
from flask.testing import FlaskClient

from idp_bridge.bootstrap import create_app, make_worker
from idp_bridge.bridge import Bridge
from idp_bridge.models import Invite
from idp_bridge.services import invites
from idp_bridge.store.db import transaction
from tests.conftest import RecordingMail
from tests.helpers import Api, make_key, make_org
from tests.pages.conftest import OPs, auth_params, finish, token_of
from tests.pages.test_redeem_rules import ALICE
from tests.security.conftest import Rekey
from tests.webhooks.receiver import Receiver

NEW_KEY = "the-new-secret-key-after-rotation"


@pytest.fixture(autouse=True)
def local_receivers(settings_overrides: dict[str, Any]) -> None:
    settings_overrides["webhook_allow_networks"] = ["127.0.0.0/8"]


def test_invitation_mail_queued_before_a_key_change_is_sent_after_it(
        bridge: Bridge, client: FlaskClient, mail: RecordingMail, rekeyed: Rekey) -> None:
    make_org(bridge, "acme", require_invite_code=True)
    invite = Api(client, make_key(bridge)).invite("ada@example.com")

    after = rekeyed(NEW_KEY, [bridge.settings.secret_key])
    counts = make_worker(after, concurrency=1).run_once()

    assert counts["done"] >= 1 and counts["failed"] == 0
    [sent] = mail.to("ada@example.com")
    body = sent.get_body(("plain",))
    assert body is not None
    text = body.get_content()
    assert invite["link"] in text and invite["code"] in text


def test_without_the_old_key_in_fallbacks_queued_mail_cannot_be_opened(
        bridge: Bridge, client: FlaskClient, mail: RecordingMail, rekeyed: Rekey) -> None:
    """The control: the fallback, not luck, is what opens it."""
    make_org(bridge, "acme")
    Api(client, make_key(bridge)).invite("ada@example.com")

    counts = make_worker(rekeyed(NEW_KEY, []), concurrency=1).run_once()

    assert mail.to("ada@example.com") == [] and counts["done"] == 0


def test_an_invite_code_hashed_with_the_old_key_still_verifies(
        bridge: Bridge, client: FlaskClient, rekeyed: Rekey) -> None:
    make_org(bridge, "acme", require_invite_code=True)
    invite = Api(client, make_key(bridge)).invite("ada@example.com")
    after = rekeyed(NEW_KEY, [bridge.settings.secret_key])

    with transaction(after.sessions) as session:
        row = session.get(Invite, invite["id"])
        assert row is not None
        assert invites.check_code(after.secret_keys, row, invite["code"])
        assert not invites.check_code(after.secret_keys, row, "WRONG234")
        assert not invites.check_code(rekeyed(NEW_KEY, []).secret_keys, row, invite["code"])


def test_a_webhook_secret_sealed_with_the_old_key_still_signs(
        bridge: Bridge, client: FlaskClient, rekeyed: Rekey) -> None:
    make_org(bridge, "acme")
    api = Api(client, make_key(bridge))
    receiver = Receiver()
    try:
        endpoint = api.post("/webhook-endpoints", {"url": receiver.url}).get_json()
        receiver.secrets = [endpoint["secret"]]
        receiver.start()
        api.invite("ada@example.com")
        after = rekeyed(NEW_KEY, [bridge.settings.secret_key])
        worker = make_worker(after, concurrency=1)
        for _ in range(20):
            worker.run_once(time_limit=10)
            if receiver.accepted:
                break
        assert receiver.accepted and receiver.rejected == 0
    finally:
        receiver.stop()


def test_a_code_form_and_a_login_begun_before_the_key_change_complete_after_it(
        ops: OPs, bridge: Bridge, client: FlaskClient, rekeyed: Rekey) -> None:
    make_org(bridge, "vault", require_invite_code=True)
    api = Api(client, make_key(bridge, "vault"), org="vault")
    alice = api.invite("alice@example.com", provider="oidc")
    bob = api.invite("bob@example.com", provider="oidc")
    # Before the change: Alice got as far as the IdP (her login state is sealed with the old key); Bob's code
    # form is on his screen (its CSRF token is a MAC by the old key).
    alice_token, bob_token = token_of(alice["link"]), token_of(bob["link"])
    alice_csrf = _csrf(client.get(f"/invite/{alice_token}").get_data(as_text=True))
    begun = client.post(f"/invite/{alice_token}/login", data={"csrf": alice_csrf, "code": alice["code"]})
    assert begun.status_code == 303
    bob_csrf = _csrf(client.get(f"/invite/{bob_token}").get_data(as_text=True))

    after = create_app(bridge=rekeyed(NEW_KEY, [bridge.settings.secret_key]))
    browser = after.test_client()
    for cookie in client._cookies.values():  # the same browser, now talking to the re-keyed deployment
        browser.set_cookie(cookie.key, cookie.value, domain=cookie.domain, path=cookie.path)

    done = finish(browser, "oidc", ops.oidc.authorize(begun.headers["Location"], ALICE))
    posted = browser.post(f"/invite/{bob_token}/login", data={"csrf": bob_csrf, "code": bob["code"]})

    assert done.status_code == 200, done.get_data(as_text=True)
    assert posted.status_code == 303, posted.get_data(as_text=True)
    assert auth_params(posted.headers["Location"])["code_challenge_method"] == "S256"
    with transaction(bridge.sessions) as session:
        row = session.get(Invite, alice["id"])
        assert row is not None and row.status == "ACCEPTED"


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
    assert found is not None, html
    return found.group(1)


def test_flask_reads_a_session_cookie_signed_with_the_old_key(bridge: Bridge, rekeyed: Rekey) -> None:
    before = create_app(bridge=bridge)
    after = create_app(bridge=rekeyed(NEW_KEY, [bridge.settings.secret_key]))
    cookie = _serializer(before).dumps({"seen": True})

    assert after.config["SECRET_KEY_FALLBACKS"] == [bridge.settings.secret_key]
    assert _serializer(after).loads(cookie) == {"seen": True}


def _serializer(app: Flask) -> Any:
    serializer = SecureCookieSessionInterface().get_signing_serializer(app)
    assert serializer is not None
    return serializer
