"""Every console page holds to the invitee pages' structure: one main landmark, one heading, a title, a
language, labelled fields, named links and buttons, a mobile viewport, and nothing fetched from elsewhere."""

from __future__ import annotations

import re
from typing import Any

from flask.testing import FlaskClient

from idp_bridge.bridge import Bridge
from tests.console.conftest import BASE, MEMBER, Org, get, join, post, sign_in
from tests.console.test_import_page import _preview
from tests.console.test_join_requests_page import asked
from tests.helpers import Api, make_key, make_org
from tests.pages.conftest import OPs
from tests.pages.test_page_accessibility import check as check_structure

__all__ = ["asked"]


def check(name: str, resp: Any, status: int) -> None:
    """The invitee pages' checks, and a label for every select and text area too."""
    check_structure(name, resp, status)
    html = resp.get_data(as_text=True)
    labelled = set(re.findall(r'<label[^>]* for="([^"]+)"', html))
    for tag, attrs in re.findall(r"<(select|textarea)([^>]*)>", html):
        found = re.search(r'id="([^"]+)"', attrs)
        assert found and found.group(1) in labelled, f"{name} page: a {tag} without a label"


def test_every_console_page_has_one_heading_labelled_fields_and_fetches_nothing(
        ops: OPs, client: FlaskClient, acme: Org, bridge: Bridge, app: Any) -> None:
    check("sign-in", get(client, "/console?signed_out=1"), 200)
    check("refused sign-in", sign_in(app.test_client(), ops.oidc, {"sub": "nobody", "email": "n@example.com"}), 403)
    assert sign_in(client, ops.oidc, {"sub": "owner-sub", "email": "owner@example.com",
                                      "email_verified": True}).status_code == 303
    member_id, invite = acme.ids["MEMBER"], acme.api.invite("ann@example.com", provider="oidc")
    check("members", get(client, "/console/acme/members"), 200)
    check("members filtered", get(client, "/console/acme/members?status=INVITED&q=ann"), 200)
    check("change role", get(client, f"/console/acme/members/{member_id}/role"), 200)
    check("deactivate", get(client, f"/console/acme/members/{member_id}/deactivate"), 200)
    check("remove", get(client, f"/console/acme/members/{member_id}/remove"), 200)
    check("refused removal", post(client, f"/console/acme/members/{acme.ids['OWNER']}/remove"), 409)
    check("bulk confirmation", post(client, "/console/acme/members/bulk",
                                    {"action": "deactivate", "ids": [member_id]}), 200)
    check("bulk refused", post(client, "/console/acme/members/bulk",
                               {"action": "remove", "ids": [acme.ids["OWNER"]], "confirmed": "1"}), 409)
    check("invites", get(client, "/console/acme/invites"), 200)
    check("audit log", get(client, "/console/acme/audit?action=member.removed"), 200)
    check("import", get(client, "/console/acme/import"), 200)
    check("settings", get(client, "/console/acme/settings"), 200)
    check("settings refused", post(client, "/console/acme/settings", {"name": "A", "redirect_url": "https://x.example"}),
          422)
    shown = post(client, "/console/acme/settings/api-keys", {"key_name": "ci", "permissions": ["users:read"]})
    check("api key shown once", shown, 200)
    key_id = re.findall(r"/settings/api-keys/([^/]+)/rotate", get(client, "/console/acme/settings").get_data(
        as_text=True))[0]
    check("rotate key", post(client, f"/console/acme/settings/api-keys/{key_id}/rotate"), 200)
    check("webhooks", get(client, "/console/acme/settings/webhooks"), 200)
    check("webhook refused", post(client, "/console/acme/settings/webhooks", {"url": "http://10.0.0.1/x"}), 422)
    check("webhook secret shown once", post(client, "/console/acme/settings/webhooks", {"url": "http://127.0.0.1:9/h"}),
          200)
    hook = re.findall(r"/settings/webhooks/([^/]+)/deliveries", get(client, "/console/acme/settings/webhooks")
                      .get_data(as_text=True))[0]
    check("delivery log", get(client, f"/console/acme/settings/webhooks/{hook}/deliveries"), 200)
    check("delete webhook", post(client, f"/console/acme/settings/webhooks/{hook}/delete"), 200)
    check("import preview", _preview(client, b"email\nz@example.com\nnot an email\n"), 200)
    check("invite form", get(client, "/console/acme/invites/new"), 200)
    check("invite refused", post(client, "/console/acme/invites/new", {"identifiers": "admin@example.com"}), 409)
    check("invites created", post(client, "/console/acme/invites/new", {"identifiers": "x@example.com\ny@example.com"}),
          200)
    check("revoke", get(client, f"/console/acme/invites/{invite['id']}/revoke"), 200)
    check("resend", get(client, f"/console/acme/invites/{invite['id']}/resend"), 200)
    check("resent", post(client, f"/console/acme/invites/{invite['id']}/resend"), 200)
    check("form expired", client.post(f"/console/acme/members/{member_id}/remove", data={}, base_url=BASE), 400)
    check("not a member here", get(client, "/console/other/members"), 403)
    make_org(bridge, "beta")
    join(Api(app.test_client(), make_key(bridge, "beta"), org="beta"), app.test_client(), ops.oidc,
         {"sub": "owner-sub", "email": "owner@example.com", "email_verified": True}, "MEMBER")
    check("org picker", get(client, "/console"), 200)
    check("signed out post", app.test_client().post("/console/acme/members/bulk", base_url=BASE), 401)
    limited = app.test_client()
    sign_in(limited, ops.oidc, MEMBER)
    check("members read-only", get(limited, "/console/acme/members"), 200)
    check("missing permission", get(limited, "/console/acme/invites/new"), 403)


def test_the_join_requests_and_domains_pages_hold_to_the_same_structure(
        ops: OPs, owner: FlaskClient, asked: str, bridge: Bridge, app: Any) -> None:
    check("join requests", get(owner, "/console/acme/join-requests"), 200)
    check("decline a join request", get(owner, f"/console/acme/join-requests/{asked}/decline"), 200)
    check("settings with domains", get(owner, "/console/acme/settings"), 200)
    check("domain refused", post(owner, "/console/acme/settings/domains", {"domain": "contoso.com"}), 409)
    assert post(owner, "/console/acme/settings/domains", {"domain": "fabrikam.com"}).status_code == 303
    fabrikam = re.findall(r'/settings/domains/([^/]+)/verify', get(owner, "/console/acme/settings")
                          .get_data(as_text=True))[0]
    check("domain not verified", post(owner, f"/console/acme/settings/domains/{fabrikam}/verify"), 409)
    check("remove a domain", get(owner, f"/console/acme/settings/domains/{fabrikam}/remove"), 200)
    assert post(owner, f"/console/acme/join-requests/{asked}/approve").status_code == 303
    check("join request approved", get(owner, "/console/acme/join-requests?done=approved"), 200)
    check("approved twice", post(owner, f"/console/acme/join-requests/{asked}/approve"), 409)
    limited = app.test_client()
    sign_in(limited, ops.oidc, MEMBER)
    check("join requests read-only", get(limited, "/console/acme/join-requests"), 200)
