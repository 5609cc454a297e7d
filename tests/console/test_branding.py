"""Per-org branding (display name, logo URL, accent colour, mail sender name): set through the API or the
console's Settings, used on the console, the invite page and the invitation mail; a logo only from an allowed
host."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient

from idp_bridge.bridge import Bridge
from tests.conftest import RecordingMail
from tests.console.conftest import Org, get, post
from tests.helpers import Api, make_key
from tests.pages.conftest import token_of

BRANDING = {"display_name": "Acme Rockets", "logo_url": "https://cdn.acme.test/logo.png",
            "accent_color": "#aa3300", "mail_sender_name": "Acme Team"}


@pytest.fixture
def platform(acme: Org, bridge: Bridge, app: Any) -> Api:
    """A platform key: changing an org's settings through the API needs orgs:manage."""
    return Api(app.test_client(), make_key(bridge, None, ["orgs:manage", "users:read"]))


@pytest.fixture
def logo_host(settings_overrides: dict[str, Any]) -> None:
    settings_overrides["branding_image_hosts"] = ["cdn.acme.test"]


def test_the_api_sets_and_returns_branding_and_refuses_a_bad_colour(platform: Api) -> None:
    assert platform.patch("", {"branding": BRANDING}).status_code == 200
    assert platform.get("").get_json()["branding"] == BRANDING

    bad = platform.patch("", {"branding": {"accent_color": "red; background:url(x)"}})

    assert bad.status_code == 422
    assert platform.get("").get_json()["branding"] == BRANDING


def test_a_logo_from_a_host_not_allowed_is_left_out_for_the_display_name(owner: FlaskClient, acme: Org,
                                                                          platform: Api, app: Any) -> None:
    platform.patch("", {"branding": BRANDING})

    console = get(owner, "/console/acme/members").get_data(as_text=True)
    landing = app.test_client().get(f"/invite/{token_of(acme.api.invite('ann@example.com')['link'])}")

    for body in (console, landing.get_data(as_text=True)):
        assert "Acme Rockets" in body and "--accent:#aa3300" in body and "<img" not in body


def test_an_allowed_logo_host_shows_the_logo_and_is_the_only_other_image_source(
        logo_host: None, owner: FlaskClient, acme: Org, platform: Api, app: Any) -> None:
    platform.patch("", {"branding": BRANDING})

    console = get(owner, "/console/acme/members")
    landing = app.test_client().get(f"/invite/{token_of(acme.api.invite('ann@example.com')['link'])}")

    for resp in (console, landing):
        assert 'src="https://cdn.acme.test/logo.png"' in resp.get_data(as_text=True)
        assert "img-src 'self' data: https://cdn.acme.test;" in resp.headers["Content-Security-Policy"]


def test_the_invitation_mail_uses_the_display_name_and_the_sender_name(acme: Org, platform: Api, worker: Any,
                                                                       mail: RecordingMail) -> None:
    platform.patch("", {"branding": BRANDING})
    acme.api.invite("ann@example.com", provider="oidc")

    worker.run_once()

    message = mail.to("ann@example.com")[-1]
    assert message["From"].startswith("Acme Team <") and "Acme Rockets" in message["Subject"]


def test_the_console_settings_save_branding_and_show_a_bad_colour_next_to_its_field(
        owner: FlaskClient, acme: Org, platform: Api) -> None:
    saved = post(owner, "/console/acme/settings", {"name": "Acme", "invite_ttl_hours": "336",
                                                   "display_name": "Acme Rockets", "accent_color": "#00aa55"})
    assert saved.status_code == 303
    assert platform.get("").get_json()["branding"] == {"display_name": "Acme Rockets", "logo_url": None,
                                                       "accent_color": "#00aa55", "mail_sender_name": None}

    refused = post(owner, "/console/acme/settings", {"name": "Acme", "accent_color": "green"})

    assert refused.status_code == 422 and 'id="accent_color-error"' in refused.get_data(as_text=True)
    assert platform.get("").get_json()["branding"]["accent_color"] == "#00aa55"
