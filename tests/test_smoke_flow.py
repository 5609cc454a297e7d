"""The basic invite flow through the API, as a host platform drives it."""

from __future__ import annotations

from flask.testing import FlaskClient

from idp_bridge.bridge import Bridge
from idp_bridge.worker import Worker
from tests.conftest import PUBLIC_URL, RecordingMail
from tests.helpers import Api, make_key, make_org


def test_an_invite_creates_an_invited_member_and_mails_the_link(
        bridge: Bridge, client: FlaskClient, worker: Worker, mail: RecordingMail) -> None:
    make_org(bridge)
    api = Api(client, make_key(bridge))
    invite = api.invite("ada@example.com", role="ADMIN", name="Ada")
    assert invite["status"] == "PENDING"
    assert invite["link"].startswith(PUBLIC_URL + "/invite/")
    member = api.get(f"/members/{invite['member_id']}").get_json()
    assert member["status"] == "INVITED" and member["role"] == "ADMIN"

    counts = worker.run_once()
    assert counts["done"] == 1
    [message] = mail.to("ada@example.com")
    assert invite["link"] in message.get_body(("plain",)).get_content()
