"""The console speaks the browser's language (Accept-Language: English or German) and shows times in the
reader's time zone when the browser names it; the Invite form sets an invite's language."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from flask.testing import FlaskClient
from sqlalchemy import select, update

from idp_bridge.bridge import Bridge
from idp_bridge.models import Invite
from idp_bridge.store.db import transaction
from tests.console.conftest import BASE, Org, csrf_of, get, post

GERMAN = {"Accept-Language": "de-DE,de;q=0.9,en;q=0.8"}


def test_the_console_speaks_german_to_a_german_browser_and_english_otherwise(owner: FlaskClient, acme: Org) -> None:
    german = get(owner, "/console/acme/members", headers=GERMAN).get_data(as_text=True)
    assert '<html lang="de">' in german
    assert "<h1>Mitglieder</h1>" in german and ">Personen einladen</a>" in german and "Abmelden" in german
    assert "<h1>Members</h1>" not in german
    english = get(owner, "/console/acme/members", headers={"Accept-Language": "en-US,en;q=0.9"})
    html = english.get_data(as_text=True)
    assert '<html lang="en">' in html and "<h1>Members</h1>" in html and "Mitglieder" not in html
    assert "<h1>Members</h1>" in get(owner, "/console/acme/members").get_data(as_text=True)


def test_messages_made_in_python_follow_the_browsers_language(owner: FlaskClient, acme: Org) -> None:
    csrf = csrf_of(get(owner, "/console/acme/members").get_data(as_text=True))
    for headers, title in (({}, "Unknown action"), (GERMAN, "Unbekannte Aktion")):
        resp = owner.post("/console/acme/members/bulk", data={"action": "nonsense", "csrf_token": csrf},
                          headers=headers, base_url=BASE)
        assert resp.status_code == 400
        assert f"<h1>{title}</h1>" in resp.get_data(as_text=True)
    resp = owner.post("/console/acme/members/bulk", data={"action": "deactivate"}, headers=GERMAN, base_url=BASE)
    assert resp.status_code == 400
    assert "<h1>Formular abgelaufen</h1>" in resp.get_data(as_text=True)


def test_the_invite_form_offers_the_language_and_stores_it(owner: FlaskClient, acme: Org, bridge: Bridge) -> None:
    form = get(owner, "/console/acme/invites/new").get_data(as_text=True)
    assert '<label for="locale">Language</label>' in form
    assert '<option value="">Default</option>' in form and '<option value="de">Deutsch</option>' in form
    resp = post(owner, "/console/acme/invites/new", {"identifiers": "neu@example.com", "role": "MEMBER",
                                                     "locale": "de", "send_email": "1"})
    assert resp.status_code == 200, resp.get_data(as_text=True)
    with transaction(bridge.sessions) as session:
        assert session.scalar(select(Invite.locale).where(Invite.identifier == "neu@example.com")) == "de"


def test_a_forged_language_value_is_refused_on_the_form(owner: FlaskClient, acme: Org, bridge: Bridge) -> None:
    resp = post(owner, "/console/acme/invites/new", {"identifiers": "neu@example.com", "locale": "<b>de</b>"})
    assert resp.status_code == 422
    assert 'id="locale-error"' in resp.get_data(as_text=True)
    with transaction(bridge.sessions) as session:
        assert session.scalar(select(Invite.id).where(Invite.identifier == "neu@example.com")) is None


def test_times_show_in_the_readers_zone_when_the_browser_names_it(owner: FlaskClient, acme: Org,
                                                                   bridge: Bridge) -> None:
    created = acme.api.invite("later@example.com")
    with transaction(bridge.sessions) as session:
        session.execute(update(Invite).where(Invite.id == created["id"])
                        .values(expires_at=datetime(2030, 7, 15, 12, 0, tzinfo=UTC)))
    assert "2030-07-15 12:00 UTC" in get(owner, "/console/acme/invites").get_data(as_text=True)
    owner.set_cookie("tz", "Europe/Berlin", domain="join.test")
    shown = get(owner, "/console/acme/invites").get_data(as_text=True)
    assert "2030-07-15 14:00 +0200" in shown and "2030-07-15 12:00 UTC" not in shown
    german = get(owner, "/console/acme/invites", headers=GERMAN).get_data(as_text=True)
    assert "2030-07-15 14:00 MESZ" in german
    owner.set_cookie("tz", "Not/AZone", domain="join.test")
    assert "2030-07-15 12:00 UTC" in get(owner, "/console/acme/invites").get_data(as_text=True)


def test_console_pages_load_only_our_own_script(owner: FlaskClient, acme: Org) -> None:
    resp = get(owner, "/console/acme/members")
    html = resp.get_data(as_text=True)
    sources = re.findall(r"<script([^>]*)>", html)
    # The reader's time zone and the console's copy/select-all helpers, both from our origin, nothing inline.
    assert len(sources) == html.count("<script") == 2
    assert '<script src="/console/static/timezone.js" defer></script>' in html
    assert all(re.fullmatch(r' src="/console/static/[a-z]+\.js(\?v=[0-9a-f]+)?" defer', attrs) for attrs in sources)
    assert "script-src 'self';" in resp.headers["Content-Security-Policy"]
