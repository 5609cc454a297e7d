"""The provisioning job as the core runs it for any provider: it follows the provider's mail plan and binds the
account the provider reports, with an in-memory provider of our own protocols."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from flask.testing import FlaskClient

from idp_bridge.bootstrap import build
from idp_bridge.bridge import Bridge
from idp_bridge.settings import load_settings
from idp_bridge.worker import Worker
from tests.conftest import RecordingMail
from tests.fakes.provider import FakeProvider
from tests.helpers import Api, make_key, make_org

from .conftest import drain
from .test_keycloak_provisioning import invite_row


@pytest.fixture
def fake() -> FakeProvider:
    return FakeProvider("fake", provisions=True)


@pytest.fixture
def bridge(settings_overrides: dict[str, Any], mail: RecordingMail, fake: FakeProvider) -> Iterator[Bridge]:
    settings_overrides["providers"] = {}
    b = build(load_settings(overrides=settings_overrides, environ={}), mail=mail, providers={"fake": fake})
    yield b
    b.close()


@pytest.mark.parametrize(("idp_mails", "we_mail_too", "ours"), [(True, False, 0), (True, True, 1), (False, False, 1)],
                         ids=["idp-mails", "both-mail", "we-mail"])
def test_the_worker_follows_the_provisioners_mail_plan(
        bridge: Bridge, client: FlaskClient, worker: Worker, mail: RecordingMail, fake: FakeProvider,
        idp_mails: bool, we_mail_too: bool, ours: int) -> None:
    fake.idp_mails, fake.we_mail_too = idp_mails, we_mail_too
    make_org(bridge, "acme")
    body = Api(client, make_key(bridge)).invite("ada@example.com", provider="fake")

    drain(bridge, worker)

    [(target, idp_mail)] = fake.provisioned
    assert (target.invite_id, target.email, idp_mail) == (body["id"], "ada@example.com", idp_mails)
    assert len(mail.to("ada@example.com")) == ours
    row = invite_row(bridge, body["id"])
    assert (row.provisioning_state, row.idp_user_id, row.idp_user_created) == ("done", f"fake-{body['id']}", True)


def test_an_invite_for_a_provider_without_provisioning_gets_no_provisioning_job(
        bridge: Bridge, client: FlaskClient, worker: Worker, mail: RecordingMail, fake: FakeProvider) -> None:
    fake.provisions = False
    make_org(bridge, "acme")
    body = Api(client, make_key(bridge)).invite("ada@example.com", provider="fake")

    drain(bridge, worker)

    assert fake.provisioned == []
    assert len(mail.to("ada@example.com")) == 1
    assert invite_row(bridge, body["id"]).provisioning_state == "none"
