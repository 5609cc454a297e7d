"""Webhook endpoints in the console: added with the secret shown once, disabled and enabled, deleted after
"Confirm", a refused URL shown next to its field; the delivery log with "Redeliver"."""

from __future__ import annotations

import re
from html import unescape
from typing import Any

from flask.testing import FlaskClient
from sqlalchemy import delete, select

from idp_bridge.bridge import Bridge
from idp_bridge.models import Job, WebhookEndpoint
from idp_bridge.store.db import transaction
from tests.console.conftest import Org, get, post
from webhooks.outbound.delivery import fan_out

HOOK = "http://127.0.0.1:9/hooks"


def _endpoints(bridge: Bridge) -> list[WebhookEndpoint]:
    with transaction(bridge.sessions) as session:
        rows = list(session.scalars(select(WebhookEndpoint)))
        session.expunge_all()
        return rows


def _add(owner: FlaskClient, **form: Any) -> Any:
    return post(owner, "/console/acme/settings/webhooks", {"url": HOOK, "event_types": ["member.removed"], **form})


def test_an_endpoint_is_added_with_its_secret_shown_once(owner: FlaskClient, acme: Org, bridge: Bridge) -> None:
    resp = _add(owner)

    body = resp.get_data(as_text=True)
    found = re.search(r'id="secret" readonly class="secret" value="([^"]+)"', body)
    assert resp.status_code == 200 and found and unescape(found.group(1)).startswith("whsec_")
    assert [(e.url, e.event_types) for e in _endpoints(bridge)] == [(HOOK, ["member.removed"])]
    assert found.group(1) not in get(owner, "/console/acme/settings/webhooks").get_data(as_text=True)


def test_a_private_address_is_refused_next_to_the_url_field(owner: FlaskClient, acme: Org,
                                                            bridge: Bridge) -> None:
    resp = _add(owner, url="http://10.0.0.1/hooks")

    assert resp.status_code == 422 and 'id="url-error"' in resp.get_data(as_text=True)
    assert _endpoints(bridge) == []


def test_disable_enable_and_delete_with_confirmation(owner: FlaskClient, acme: Org, bridge: Bridge) -> None:
    _add(owner)
    endpoint = _endpoints(bridge)[0].id

    assert post(owner, f"/console/acme/settings/webhooks/{endpoint}/enabled", {"enabled": "0"}).status_code == 303
    assert _endpoints(bridge)[0].enabled is False
    post(owner, f"/console/acme/settings/webhooks/{endpoint}/enabled", {"enabled": "1"})
    assert _endpoints(bridge)[0].enabled is True
    asked = post(owner, f"/console/acme/settings/webhooks/{endpoint}/delete")
    assert ">Confirm</button>" in asked.get_data(as_text=True) and len(_endpoints(bridge)) == 1
    assert post(owner, f"/console/acme/settings/webhooks/{endpoint}/delete", {"confirmed": "1"}).status_code == 303
    assert _endpoints(bridge) == []


def test_the_delivery_log_lists_deliveries_and_redeliver_queues_one_again(owner: FlaskClient, acme: Org,
                                                                         bridge: Bridge) -> None:
    _add(owner)
    endpoint = _endpoints(bridge)[0].id
    post(owner, f"/console/acme/members/{acme.ids['MEMBER']}/remove")
    fan_out(bridge)

    log = get(owner, f"/console/acme/settings/webhooks/{endpoint}/deliveries").get_data(as_text=True)
    assert "member.removed" in log and ">Redeliver</button>" in log
    delivery = re.findall(r"/deliveries/([^/]+)/redeliver", log)[0]
    with transaction(bridge.sessions) as session:
        # The first send is still queued; a redelivery must queue one of its own once that job is gone.
        session.execute(delete(Job).where(Job.dedupe_key == f"webhook:{delivery}"))

    resp = post(owner, f"/console/acme/settings/webhooks/{endpoint}/deliveries/{delivery}/redeliver")

    assert resp.status_code == 303
    with transaction(bridge.sessions) as session:
        assert session.scalar(select(Job.id).where(Job.dedupe_key == f"webhook:{delivery}")) is not None
