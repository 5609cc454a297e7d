"""The inviter of an invite: given by the API caller or filled by the console, shown on the invite page and in
the mail instead of "An admin of {org}"."""

from __future__ import annotations

from typing import Any

from flask.testing import FlaskClient
from sqlalchemy import select

from idp_bridge.bridge import Bridge
from idp_bridge.models import Invite
from idp_bridge.store.db import transaction
from tests.conftest import RecordingMail
from tests.console.conftest import Org, post
from tests.pages.conftest import token_of


def _landing(client: FlaskClient, link: str) -> str:
    return str(client.get(f"/invite/{token_of(link)}").get_data(as_text=True))


def _mail_text(mail: RecordingMail, to: str) -> str:
    message = mail.to(to)[-1]
    body = message.get_body(preferencelist=("plain",))
    assert body is not None
    return str(body.get_content())


def test_an_api_caller_names_the_inviter_and_the_page_and_mail_show_it(
        acme: Org, app: Any, worker: Any, mail: RecordingMail) -> None:
    resp = acme.api.post("/invites", {"identifier": "ann@example.com", "provider": "oidc",
                                      "inviter": {"name": "Grace Hopper", "email": "grace@example.com"}})

    issued = resp.get_json()
    assert resp.status_code == 201 and issued["inviter"] == {"name": "Grace Hopper", "email": "grace@example.com"}
    assert "Grace Hopper (grace@example.com)" in _landing(app.test_client(), issued["link"])
    worker.run_once()
    assert "Grace Hopper (grace@example.com) invited you" in _mail_text(mail, "ann@example.com")


def test_an_invite_without_an_inviter_still_says_an_admin_of_the_org(acme: Org, app: Any) -> None:
    issued = acme.api.invite("ann@example.com", provider="oidc")

    assert issued["inviter"] is None
    assert "An admin of Acme" in _landing(app.test_client(), issued["link"])


def test_an_inviter_with_neither_name_nor_email_is_refused(acme: Org) -> None:
    resp = acme.api.post("/invites", {"identifier": "ann@example.com", "inviter": {}})

    assert resp.status_code == 422


def test_the_console_fills_the_inviter_with_the_signed_in_member(owner: FlaskClient, acme: Org, bridge: Bridge,
                                                                 worker: Any, mail: RecordingMail) -> None:
    post(owner, "/console/acme/invites/new", {"identifiers": "bob@example.com", "provider": "oidc",
                                              "send_email": "1"})

    with transaction(bridge.sessions) as session:
        invite = session.scalars(select(Invite).where(Invite.identifier == "bob@example.com")).one()
        assert invite.inviter == {"name": "", "email": "owner@example.com"}
    worker.run_once()
    assert "owner@example.com invited you" in _mail_text(mail, "bob@example.com")
