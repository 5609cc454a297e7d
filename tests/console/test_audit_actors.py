"""The audit log names who acted: a console member by the email recorded with the event, an API key by its name
and prefix; each actor links to the events of that actor alone."""

from __future__ import annotations

import re
from html import unescape
from typing import Any

from flask.testing import FlaskClient

from idp_bridge.bridge import Bridge
from tests.console.conftest import Org, get, post, table
from tests.helpers import Api


def _cells(html: str) -> list[str]:
    """The text of each Actor cell, newest event first."""
    return [" ".join(unescape(re.sub(r"<[^>]+>", " ", cell)).split())
            for cell in re.findall(r'<td data-label="Actor">(.*?)</td>', table(html), flags=re.S)]


def test_console_and_api_key_actions_show_the_member_and_the_key_by_name(owner: FlaskClient, acme: Org,
                                                                          app: Any, bridge: Bridge) -> None:
    shown = post(owner, "/console/acme/settings/api-keys", {"key_name": "ci", "permissions": ["users:invite"]})
    secret = unescape(re.findall(r'id="secret" readonly class="secret" value="([^"]+)"',
                                 shown.get_data(as_text=True))[0])
    Api(app.test_client(), secret).invite("ann@example.com", provider="oidc")

    html = get(owner, "/console/acme/audit?action=invite.created").get_data(as_text=True)
    by_key = _cells(html)[0]
    assert re.fullmatch(r"ci \(ibk_[\w-]+…\) API key", by_key), by_key
    assert "api_key:" not in by_key

    created_key = get(owner, "/console/acme/audit?action=api_key.created").get_data(as_text=True)
    # The console's key, then the one the fixture made on the command line.
    assert _cells(created_key) == ["owner@example.com Member", "Command line"]
    actor = re.findall(r'<td data-label="Actor"><a href="\?actor=([^"]+)"', created_key)[0]
    mine = get(owner, f"/console/acme/audit?actor={unescape(actor).replace('%3A', ':')}").get_data(as_text=True)
    assert set(_cells(mine)) == {"owner@example.com Member"}
