"""Invitee pages speak the invite's language, else the browser's (Accept-Language), else English; dates show in
the reader's time zone when the browser names it (the `tz` cookie our script sets), else in UTC."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from flask.testing import FlaskClient
from sqlalchemy import update

from idp_bridge.bridge import Bridge
from idp_bridge.models import Invite
from idp_bridge.store.db import transaction
from tests.helpers import Api
from tests.pages.conftest import OPs, token_of
from tests.pages.test_invite_pages import code_org, csrf_of
from tests.pages.test_redeem_rules import ALICE, login

GERMAN_HEADING = "Sie sind eingeladen, Acme beizutreten"
ENGLISH_HEADING = "You're invited to join Acme"


def landing(client: FlaskClient, invite: dict[str, object], **headers: str) -> str:
    resp = client.get(f"/invite/{token_of(str(invite['link']))}", headers=headers)
    assert resp.status_code == 200
    return resp.get_data(as_text=True)


@pytest.mark.parametrize("tag", ["de", "de-AT", "de-CH"])
def test_an_invite_in_german_renders_a_german_page_whatever_the_browser_asks(api: Api, client: FlaskClient,
                                                                              tag: str) -> None:
    html = landing(client, api.invite("ada@example.com", locale=tag), **{"Accept-Language": "en-US,en;q=0.9"})
    assert '<html lang="de">' in html
    assert GERMAN_HEADING in html and "Eingeladen von" in html and "Anmelden und annehmen" in html
    assert "Sign in to accept" not in html


def test_the_providers_words_for_the_account_follow_the_page(api: Api, client: FlaskClient) -> None:
    german = landing(client, api.invite("ada@example.com", provider="google", locale="de"))
    assert "<dd>das Google-Konto ada@example.com</dd>" in german
    english = landing(client, api.invite("bob@example.com", provider="google"))
    assert "<dd>the Google account bob@example.com</dd>" in english


def test_an_invite_in_a_language_not_shipped_renders_in_english(api: Api, client: FlaskClient) -> None:
    html = landing(client, api.invite("ada@example.com", locale="fr"), **{"Accept-Language": "de-DE,de;q=0.9"})
    assert '<html lang="en">' in html
    assert ENGLISH_HEADING in html and "Sign in to accept" in html


def test_without_a_locale_the_browsers_language_is_used(api: Api, client: FlaskClient) -> None:
    invite = api.invite("ada@example.com")
    german = landing(client, invite, **{"Accept-Language": "de-DE,de;q=0.9"})
    assert '<html lang="de">' in german and GERMAN_HEADING in german
    regional = landing(client, invite, **{"Accept-Language": "de-AT"})
    assert GERMAN_HEADING in regional
    english = landing(client, invite, **{"Accept-Language": "fr-FR,fr;q=0.9,en;q=0.5"})
    assert '<html lang="en">' in english and ENGLISH_HEADING in english
    assert ENGLISH_HEADING in landing(client, invite)


def test_a_dead_link_page_speaks_the_browsers_language(api: Api, client: FlaskClient) -> None:
    resp = client.get("/invite/" + "x" * 43, headers={"Accept-Language": "de"})
    assert resp.status_code == 404
    assert "Dieser Einladungslink ist ungültig" in resp.get_data(as_text=True)


ENGLISH_BROWSER = {"Accept-Language": "en-US,en;q=0.9"}


def dead_page(client: FlaskClient, link: object, status: int) -> str:
    resp = client.get(f"/invite/{token_of(str(link))}", headers=ENGLISH_BROWSER)
    assert resp.status_code == status
    return resp.get_data(as_text=True)


def test_a_used_link_of_a_german_invite_answers_in_german_to_an_english_browser(
        api: Api, ops: OPs, client: FlaskClient) -> None:
    invite = api.invite("alice@example.com", provider="oidc", locale="de")
    assert login(client, ops.oidc, str(invite["link"]), "oidc", ALICE).status_code == 303

    html = dead_page(client, invite["link"], 410)

    assert '<html lang="de">' in html and "Diese Einladung wurde bereits verwendet" in html
    assert "already used" not in html


def test_a_replaced_link_of_a_german_invite_answers_in_german_to_an_english_browser(
        api: Api, client: FlaskClient) -> None:
    invite = api.invite("ada@example.com", locale="de")
    assert api.post(f"/invites/{invite['id']}/resend").status_code in (200, 201)

    html = dead_page(client, invite["link"], 410)

    assert '<html lang="de">' in html and "Eine neuere Einladung wurde gesendet" in html


def test_expired_and_revoked_links_of_a_german_invite_answer_in_german_to_an_english_browser(
        api: Api, bridge: Bridge, client: FlaskClient) -> None:
    expired = api.invite("e@example.com", locale="de-AT")
    revoked = api.invite("r@example.com", locale="de")
    english = api.invite("en@example.com")
    set_expiry(bridge, str(expired["id"]), datetime(2020, 1, 1, tzinfo=UTC))
    for invite in (revoked, english):
        assert api.post(f"/invites/{invite['id']}/revoke").status_code == 200

    for invite in (expired, revoked):
        html = dead_page(client, invite["link"], 404)
        assert '<html lang="de">' in html and "Dieser Einladungslink ist ungültig" in html
    # An invite without a locale, and a link naming no invite, follow the browser as before.
    assert "This invitation link is not valid" in dead_page(client, english["link"], 404)
    assert "This invitation link is not valid" in dead_page(client, "/invite/" + "x" * 43, 404)


def test_the_wrong_code_message_is_in_the_invites_language(ops: OPs, bridge: Bridge, client: FlaskClient) -> None:
    invite = code_org(bridge, client).invite("ada@example.com", locale="de", provider="oidc")
    token = token_of(str(invite["link"]))
    csrf = csrf_of(client.get(f"/invite/{token}").get_data(as_text=True))
    resp = client.post(f"/invite/{token}/login", data={"csrf": csrf, "code": "WRONGCODE"})
    assert resp.status_code == 400
    html = resp.get_data(as_text=True)
    assert '<html lang="de">' in html and "Dieser Code ist nicht richtig. Noch 4 Versuche." in html


def set_expiry(bridge: Bridge, invite_id: str, when: datetime) -> None:
    with transaction(bridge.sessions) as session:
        session.execute(update(Invite).where(Invite.id == invite_id).values(expires_at=when))


@pytest.mark.parametrize(("expires", "berlin"), [(datetime(2030, 1, 15, 12, 0, tzinfo=UTC), "13:00 +0100"),
                                                 (datetime(2030, 7, 15, 12, 0, tzinfo=UTC), "14:00 +0200")])
def test_the_expiry_shows_in_the_readers_time_zone_when_the_browser_names_it(
        bridge: Bridge, api: Api, client: FlaskClient, expires: datetime, berlin: str) -> None:
    invite = api.invite("ada@example.com")
    set_expiry(bridge, str(invite["id"]), expires)
    assert "12:00 UTC" in landing(client, invite), "no cookie: UTC"
    client.set_cookie("tz", "Europe/Berlin")
    shown = landing(client, invite)
    assert berlin in shown and "12:00 UTC" not in shown


def test_the_expiry_is_localized_with_the_language(bridge: Bridge, api: Api, client: FlaskClient) -> None:
    invite = api.invite("ada@example.com", locale="de")
    set_expiry(bridge, str(invite["id"]), datetime(2030, 1, 15, 12, 0, tzinfo=UTC))
    client.set_cookie("tz", "Europe/Berlin")
    assert "15. Januar 2030, 13:00 MEZ" in landing(client, invite)


@pytest.mark.parametrize("zone", ["Mars/Olympus_Mons", "../../etc/passwd", "/etc/localtime", "Europe/Berlin\\x",
                                  "x" * 200, ""])
def test_an_unknown_time_zone_falls_back_to_utc(bridge: Bridge, api: Api, client: FlaskClient, zone: str) -> None:
    invite = api.invite("ada@example.com")
    set_expiry(bridge, str(invite["id"]), datetime(2030, 1, 15, 12, 0, tzinfo=UTC))
    client.set_cookie("tz", zone)
    assert "January 15, 2030, 12:00 UTC" in landing(client, invite)


def test_the_time_zone_script_is_served_from_our_origin_as_javascript(client: FlaskClient) -> None:
    resp = client.get("/console/static/timezone.js")
    assert resp.status_code == 200
    assert resp.mimetype == "text/javascript"
    script = resp.get_data(as_text=True)
    assert "Intl.DateTimeFormat().resolvedOptions().timeZone" in script and '"tz="' in script
