"""The console's script: served from our own origin under the strict CSP, cached for a year under a URL that
changes with its content, and only enhancing markup that works without it (copy buttons, "Select all")."""

from __future__ import annotations

import hashlib
import re

from flask.testing import FlaskClient

from idp_bridge.web.console import STATIC_DIR
from tests.console.conftest import Org, get, post


def _script_url(html: str) -> str:
    """The console script's URL; the only other script a console page loads is the reader's time zone one."""
    urls = re.findall(r'<script src="([^"]+)" defer></script>', html)
    assert len(urls) == html.count("<script") == 2 and "/console/static/timezone.js" in urls
    (url,) = (u for u in urls if u != "/console/static/timezone.js")
    return url


def test_every_page_loads_the_script_from_our_origin_and_the_csp_allows_no_other(owner: FlaskClient,
                                                                                 acme: Org) -> None:
    resp = get(owner, "/console/acme/members")

    url = _script_url(resp.get_data(as_text=True))
    digest = hashlib.sha256((STATIC_DIR / "console.js").read_bytes()).hexdigest()[:16]
    assert url == f"/console/static/console.js?v={digest}"
    csp = dict(part.strip().split(" ", 1) for part in resp.headers["Content-Security-Policy"].split(";"))
    assert csp["script-src"] == "'self'" and csp["default-src"] == "'none'"
    assert "<script>" not in resp.get_data(as_text=True)


def test_the_script_is_javascript_cached_for_a_year(client: FlaskClient) -> None:
    resp = get(client, "/console/static/console.js?v=anything")

    assert resp.status_code == 200
    assert resp.headers["Content-Type"] == "text/javascript; charset=utf-8"
    assert resp.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.get_data() == (STATIC_DIR / "console.js").read_bytes()


def test_only_the_consoles_scripts_are_served(client: FlaskClient) -> None:
    assert get(client, "/console/static/nothing.js").status_code == 404
    assert get(client, "/console/static/__init__.py").status_code == 404
    assert get(client, "/console/static/..%2f__init__.py").status_code == 404


def test_each_link_and_code_shown_once_has_a_copy_button_hidden_until_the_script_runs(
        owner: FlaskClient, acme: Org) -> None:
    html = post(owner, "/console/acme/invites/new", {"identifiers": "ann@example.com\nben@example.com"}).get_data(
        as_text=True)

    buttons = re.findall(r'<button type="button" class="secondary" hidden data-copy="([^"]+)" '
                         r'aria-label="Copy link \(([^"]+)\)"', html)
    assert buttons == [("link-1", "ann@example.com"), ("link-2", "ben@example.com")]
    for target, _ in buttons:
        assert f'id="{target}" class="secret" value="http' in html


def test_an_api_key_shown_once_has_a_copy_button(owner: FlaskClient, acme: Org) -> None:
    html = post(owner, "/console/acme/settings/api-keys", {"key_name": "ci", "permissions": ["users:read"]}).get_data(
        as_text=True)

    assert re.search(r'id="secret" readonly class="secret" value="ibk_[^"]+">\s*<button type="button" '
                     r'class="secondary" hidden data-copy="secret"', html)


def test_the_members_table_has_a_select_all_checkbox_for_the_row_checkboxes(owner: FlaskClient, acme: Org) -> None:
    html = get(owner, "/console/acme/members").get_data(as_text=True)

    assert ('<input type="checkbox" id="select-all" data-select-all="ids" hidden aria-label="Select all"> '
            '<label for="select-all" hidden>Select all</label>') in html
    assert html.count('type="checkbox" name="ids"') == 3
