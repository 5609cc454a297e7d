"""An invite's `locale`: a BCP 47 tag given on create (single, bulk JSON, CSV, the CLI's import), stored and returned;
anything else is a 422 problem and nothing is written."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from flask.testing import FlaskClient
from sqlalchemy import select

from idp_bridge import locales
from idp_bridge.bridge import Bridge
from idp_bridge.cli import cli
from idp_bridge.models import Invite
from idp_bridge.store.db import transaction
from tests.dbstate import row_counts
from tests.helpers import Api, make_key, make_org
from tests.test_cli_import import env  # noqa: F401  (the CLI's environment on the test database)
from tests.test_csv_import import invites_of, post_csv


@pytest.fixture
def api(bridge: Bridge, client: FlaskClient) -> Api:
    make_org(bridge, "acme", member_limit=100)
    return Api(client, make_key(bridge, "acme"))


def stored_locales(bridge: Bridge) -> dict[str, str | None]:
    with transaction(bridge.sessions) as session:
        return {identifier: locale for identifier, locale in session.execute(select(Invite.identifier, Invite.locale))}


@pytest.mark.parametrize(("given", "kept"), [("de", "de"), ("de-at", "de-AT"), ("DE-CH", "de-CH"), ("fr", "fr"),
                                             ("zh-hant-tw", "zh-Hant-TW"), ("sl-rozaj", "sl-rozaj")])
def test_tags_are_stored_and_returned_in_their_conventional_case(bridge: Bridge, api: Api, given: str,
                                                                 kept: str) -> None:
    created = api.invite("ada@example.com", locale=given)
    assert created["locale"] == kept
    assert api.get(f"/invites/{created['id']}").get_json()["locale"] == kept
    assert stored_locales(bridge) == {"ada@example.com": kept}


def test_an_invite_without_a_locale_has_none(api: Api) -> None:
    assert api.invite("ada@example.com")["locale"] is None


@pytest.mark.parametrize("bad", ["de_AT", "not a tag", "en-", "123", "e", "de-" + "x" * 40, "<script>"])
def test_a_value_that_is_not_a_language_tag_is_a_422_problem_and_writes_nothing(bridge: Bridge, api: Api,
                                                                                   bad: str) -> None:
    before = row_counts(bridge)
    resp = api.post("/invites", {"identifier": "ada@example.com", "locale": bad})
    assert resp.status_code == 422
    assert resp.content_type.startswith("application/problem+json")
    assert "locale" in resp.get_json()["errors"]
    assert row_counts(bridge) == before


def test_bulk_rows_take_their_own_locale_or_the_defaults(bridge: Bridge, api: Api) -> None:
    resp = api.post("/invites/bulk", {"defaults": {"locale": "de"},
                                      "invites": [{"identifier": "ada@example.com"},
                                                  {"identifier": "bob@example.com", "locale": "en-GB"},
                                                  {"identifier": "eve@example.com", "locale": "nope nope"}]})
    body = resp.get_json()
    assert body["summary"] == {"created": 2, "duplicate": 0, "invalid": 1}, body
    assert "locale" in body["rows"][2]["errors"]
    assert stored_locales(bridge) == {"ada@example.com": "de", "bob@example.com": "en-GB"}


def test_a_bad_default_locale_refuses_the_bulk_request(bridge: Bridge, api: Api) -> None:
    resp = api.post("/invites/bulk", {"defaults": {"locale": "de_DE"}, "invites": ["ada@example.com"]})
    assert resp.status_code == 422
    assert "defaults.locale" in resp.get_json()["errors"]
    assert stored_locales(bridge) == {}


def test_a_csv_locale_column_sets_each_rows_language(bridge: Bridge, api: Api) -> None:
    result = post_csv(api, "identifier,name,locale\nada@example.com,Ada,de-AT\nbob@example.com,Bob,\n"
                           "eve@example.com,Eve,deutsch!\n").get_json()
    assert result["summary"] == {"created": 2, "duplicate": 0, "invalid": 1}
    assert [r["row"] for r in result["rows"] if r["status"] == "invalid"] == [4]
    invites = invites_of(api)
    assert (invites["ada@example.com"]["locale"], invites["bob@example.com"]["locale"]) == ("de-AT", None)
    assert "locale" not in invites["ada@example.com"]["attributes"], "a column of its own, not an attribute"


def test_the_cli_import_reads_the_locale_column(bridge: Bridge, env: dict[str, str | None],  # noqa: F811
                                                tmp_path: Path) -> None:
    make_org(bridge, member_limit=100)
    file = tmp_path / "people.csv"
    file.write_text("email,locale\nada@example.com,de\nbob@example.com,fr\n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["invite", "import", str(file), "--org", "acme"], env=env,
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert stored_locales(bridge) == {"ada@example.com": "de", "bob@example.com": "fr"}


def test_the_openapi_document_describes_the_locale_field(client: FlaskClient) -> None:
    schemas: dict[str, Any] = client.get("/openapi.json").get_json()["components"]["schemas"]
    assert "locale" in schemas["InviteInput"]["properties"]
    assert "locale" in schemas["InviteOut"]["properties"]


@pytest.mark.parametrize(("tag", "language"), [("de", "de"), ("de-AT", "de"), ("de-CH", "de"), ("en-GB", "en"),
                                               ("fr", "en"), (None, "en"), ("x-private", "en")])
def test_a_tag_renders_in_its_shipped_language_else_english(tag: str | None, language: str) -> None:
    assert locales.language_of(tag) == language
