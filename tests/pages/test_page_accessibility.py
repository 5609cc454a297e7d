"""Every invitee page a person can meet holds to the same structure: one main landmark, one heading, a title,
a language, labelled fields, named links and buttons, a mobile viewport, and nothing fetched from elsewhere (the
one script is our own)."""

from __future__ import annotations

from html.parser import HTMLParser
from typing import Any

from flask.testing import FlaskClient

from idp_bridge.bridge import Bridge
from idp_bridge.models import Organization
from idp_bridge.store.db import transaction
from tests.helpers import Api, make_key, make_org
from tests.pages.conftest import OPs, finish, start, token_of
from tests.pages.test_redeem_rules import ALICE, login

# Scripts a page may load: the console's own, served from this origin (the CSP allows no other script).
OWN_SCRIPTS = "/console/static/"


class Page(HTMLParser):
    """The parts of a page the checks look at."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: dict[str, int] = {}
        self.lang = ""
        self.viewport = False
        self.title = ""
        self.labels_for: set[str] = set()
        self.fields: list[dict[str, str]] = []
        self.open: list[str] = []
        self.named: list[tuple[str, str]] = []  # (tag, its text) for links and buttons
        self.fetches: list[str] = []
        self.scripts: list[str] = []  # the console's own scripts, from this origin
        self.roles: list[str] = []
        self._text: list[str] | None = None
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        self.counts[tag] = self.counts.get(tag, 0) + 1
        if "role" in a:
            self.roles.append(a["role"])
        if tag == "html":
            self.lang = a.get("lang", "")
        if tag == "meta" and a.get("name") == "viewport":
            self.viewport = "width=device-width" in a.get("content", "")
        if tag == "title":
            self._in_title = True
        if tag == "label" and a.get("for"):
            self.labels_for.add(a["for"])
        if tag == "input" and a.get("type") != "hidden":
            self.fields.append({**a, "wrapped": "label" if "label" in self.open else ""})
        if tag == "script" and a.get("src", "").startswith(OWN_SCRIPTS):
            self.scripts.append(a["src"])
        elif tag in ("script", "link", "img", "iframe", "object", "embed") or "src" in a:
            self.fetches.append(tag)
        if tag in ("a", "button"):
            self._text = [a.get("aria-label", "")]
        self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        if tag in ("a", "button") and self._text is not None:
            self.named.append((tag, "".join(self._text).strip()))
            self._text = None
        if tag in self.open:
            del self.open[len(self.open) - 1 - self.open[::-1].index(tag):]

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data
        if self._text is not None:
            self._text.append(data)


def check(name: str, resp: Any, status: int) -> None:
    assert resp.status_code == status, (name, resp.status_code)
    page = Page()
    page.feed(resp.get_data(as_text=True))
    where = f"{name} page"
    assert page.lang, f"{where}: <html> has no lang"
    assert page.viewport, f"{where}: no mobile viewport"
    assert page.title.strip(), f"{where}: empty <title>"
    assert page.counts.get("main") == 1 and "main" not in page.roles, f"{where}: not exactly one main landmark"
    assert page.counts.get("h1") == 1, f"{where}: not exactly one <h1>"
    for field in page.fields:
        labelled = field.get("id") in page.labels_for or field["wrapped"] or field.get("aria-label")
        assert labelled, f"{where}: field {field.get('name')} has no label"
    assert all(text for _, text in page.named), f"{where}: a link or button without a name: {page.named}"
    assert page.fetches == [], f"{where}: fetches {page.fetches}"


def test_every_invitee_page_has_one_heading_labelled_fields_and_fetches_nothing(
        api: Api, ops: OPs, bridge: Bridge, client: FlaskClient, app: Any) -> None:
    plain = api.invite("alice@example.com", provider="oidc")
    check("landing", client.get(f"/invite/{token_of(plain['link'])}"), 200)
    check("provider choice", client.get(f"/invite/{token_of(api.invite('any@example.com')['link'])}/login"), 200)
    make_org(bridge, "vault", require_invite_code=True)
    coded = Api(client, make_key(bridge, "vault"), org="vault").invite("carol@example.com", provider="oidc")
    check("code form", client.get(f"/invite/{token_of(coded['link'])}"), 200)
    check("invalid link", client.get("/invite/" + "x" * 43), 404)
    check("expired sign-in", client.get("/auth/callback/oidc?state=nothing&code=nothing"), 400)
    cancelled = ops.oidc.authorize(start(client, plain["link"]), ALICE)
    check("sign-in cancelled", finish(client, "oidc", {"state": cancelled["state"], "error": "access_denied"}), 400)
    check("wrong account", login(client, ops.oidc, plain["link"], "oidc",
                                 {"sub": "eve", "email": "eve@example.com", "email_verified": True}), 403)
    check("sign-in not verified", login(client, ops.oidc, plain["link"], "oidc", {**ALICE, "aud": "someone-else"}), 400)
    assert login(client, ops.oidc, plain["link"], "oidc", ALICE).status_code == 303
    used = app.test_client().get(f"/invite/{token_of(plain['link'])}")
    assert used.status_code == 410
    check("already used", used, 410)
    old = api.invite("dave@example.com", provider="oidc")
    api.post(f"/invites/{old['id']}/resend")
    check("superseded link", client.get(f"/invite/{token_of(old['link'])}"), 410)
    # A code form posted without its CSRF token.
    check("form expired", client.post(f"/invite/{token_of(coded['link'])}/login", data={"code": "ABCDEFGH"}), 400)
    with transaction(bridge.sessions) as session:
        session.query(Organization).filter_by(slug="acme").one().redirect_url = None
    check("welcome", login(client, ops.oidc, api.invite("erin@example.com", provider="oidc")["link"], "oidc",
                           {"sub": "erin", "email": "erin@example.com", "email_verified": True}), 200)
