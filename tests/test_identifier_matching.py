"""Invites, bulk invites and list searches store and compare identifiers in their canonical form."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select, text

from idp_bridge.bridge import Bridge
from idp_bridge.migrate import downgrade, upgrade
from idp_bridge.models import Invite, Member
from idp_bridge.store.db import transaction
from tests.confusables import NEVER_MATCH, SAME_MAILBOX, Pair
from tests.dbstate import row_counts
from tests.helpers import Api, make_key, make_org

INVITABLE = [p for p in NEVER_MATCH if p.invitable]
CANONICAL_KEYS = "0005_canonical_identifier_keys"
UNSAFE = [p for p in NEVER_MATCH if not p.invitable and "\u3000" not in p.lookalike]


@pytest.fixture
def api(bridge: Bridge, client: FlaskClient) -> Api:
    make_org(bridge, member_limit=1000)
    return Api(client, make_key(bridge))


def found(api: Api, path: str, q: str) -> set[str]:
    body = api.get(f"{path}?q={quote(q)}").get_json()
    return {item["id"] for item in body["items"]}


def test_ada_in_any_ascii_case_is_one_person(api: Api, bridge: Bridge) -> None:
    first = api.invite("Ada@Example.COM")
    before = row_counts(bridge)

    resp = api.post("/invites", {"identifier": "ada@example.com"})

    assert resp.status_code == 409 and resp.get_json()["existing_id"] == first["id"]
    assert row_counts(bridge) == before
    assert first["identifier"] == "Ada@example.com"


def test_strasse_and_strasse_with_sharp_s_are_two_people(api: Api) -> None:
    strasse = api.invite("victim@strasse.de")
    sharp = api.invite("victim@stra\u00dfe.de")

    assert strasse["id"] != sharp["id"]
    assert sharp["identifier"] == "victim@stra\u00dfe.de"


@pytest.mark.parametrize("pair", INVITABLE, ids=[p.label for p in INVITABLE])
def test_a_lookalike_of_an_invited_address_is_another_person(bridge: Bridge, client: FlaskClient, pair: Pair) -> None:
    for slug, first, second in (("forward", pair.plain, pair.lookalike), ("reverse", pair.lookalike, pair.plain)):
        make_org(bridge, slug)
        api = Api(client, make_key(bridge, slug), org=slug)

        one, other = api.invite(first), api.invite(second)

        assert one["id"] != other["id"]
        # The local part is kept as given (no NFC, no casefold): the mailbox mailed is the mailbox invited.
        assert other["identifier"].rpartition("@")[0] == second.rpartition("@")[0]


@pytest.mark.parametrize("pair", SAME_MAILBOX, ids=[p.label for p in SAME_MAILBOX])
def test_the_same_mailbox_spelled_another_way_is_a_duplicate(api: Api, pair: Pair) -> None:
    first = api.invite(pair.plain)

    resp = api.post("/invites", {"identifier": pair.lookalike})

    assert resp.status_code == 409, resp.get_json()
    assert resp.get_json()["existing_id"] == first["id"]


@pytest.mark.parametrize("pair", UNSAFE, ids=[p.label for p in UNSAFE])
def test_an_address_with_invisible_or_bidi_characters_is_refused_with_a_field_error(
        api: Api, bridge: Bridge, pair: Pair) -> None:
    before = row_counts(bridge)

    resp = api.post("/invites", {"identifier": pair.lookalike})

    assert resp.status_code == 422
    assert resp.get_json()["errors"]["identifier"]
    assert row_counts(bridge) == before


@pytest.mark.parametrize("identifier", ["victim@xn--abc.com", "victim@exa\u200dmple.com", "victim@a_b.com"])
def test_a_domain_that_is_not_valid_idna_is_refused_with_a_field_error(api: Api, identifier: str) -> None:
    resp = api.post("/invites", {"identifier": identifier})

    assert resp.status_code == 422
    assert resp.get_json()["errors"]["identifier"]


@pytest.mark.parametrize("pair", INVITABLE, ids=[p.label for p in INVITABLE])
def test_a_bulk_batch_keeps_a_lookalike_apart_and_folds_only_ascii_case(
        api: Api, bridge: Bridge, pair: Pair) -> None:
    shouted = "".join(c.upper() if c.isascii() else c for c in pair.plain)

    body = api.post("/invites/bulk", [pair.plain, pair.lookalike, shouted]).get_json()

    assert [r["status"] for r in body["rows"]] == ["created", "created", "duplicate"]
    assert body["rows"][2]["existing_id"] == body["rows"][0]["id"]
    with transaction(bridge.sessions) as session:
        keys = set(session.scalars(select(Invite.identifier_key)))
    assert len(keys) == 2


def test_searching_finds_the_exact_mailbox_and_not_its_lookalikes(api: Api) -> None:
    kelvin = api.invite("\u212aate@example.com")["id"]
    kate = api.invite("kate@example.com")["id"]
    sharp = api.invite("victim@stra\u00dfe.de")["id"]
    strasse = api.invite("victim@strasse.de")["id"]
    members = {api.get(f"/invites/{i}").get_json()["member_id"]: i for i in (kelvin, kate, sharp, strasse)}

    expectations: dict[str, set[str]] = {
        "KATE@": {kate},
        "\u212aATE": {kelvin},
        "victim@STRA\u00dfE.de": {sharp},
        "xn--strae-oqa": {sharp},
        "STRASSE": {strasse},
    }
    for q, wanted in expectations.items():
        assert found(api, "/invites", q) == wanted, q
        assert {members[m] for m in found(api, "/members", q) if m in members} == wanted, q


def test_upgrading_turns_casefolded_keys_of_non_ascii_identifiers_into_the_canonical_form(
        api: Api, bridge: Bridge) -> None:
    sharp = api.invite("victim@stra\u00dfe.de")
    api.invite("\u00e9mile@example.com")
    api.invite("Ada@example.com")
    # Back to the schema just after the canonical keys arrived, then the keys as releases before it stored them
    # (casefolded) and the revision before it: the rows of an older database, written with plain SQL because the
    # models are the newest schema's.
    downgrade(bridge.engine, CANONICAL_KEYS)
    with bridge.engine.begin() as conn:
        for table in ("members", "invites"):
            rows = conn.execute(text(f"SELECT id, identifier FROM {table}")).all()
            for row_id, identifier in rows:
                conn.execute(text(f"UPDATE {table} SET identifier_key = :key WHERE id = :id"),
                             {"key": identifier.strip().casefold(), "id": row_id})
            assert "victim@strasse.de" in set(conn.scalars(text(f"SELECT identifier_key FROM {table}")))
        conn.execute(text("UPDATE alembic_version SET version_num = :before WHERE version_num = :v"),
                     {"before": "0004_rate_limits", "v": CANONICAL_KEYS})

    upgrade(bridge.engine)

    with transaction(bridge.sessions) as session:
        for model in (Member, Invite):
            assert set(session.scalars(select(model.identifier_key))) == {
                "victim@xn--strae-oqa.de", "\u00e9mile@example.com", "ada@example.com"}
    assert api.post("/invites", {"identifier": "victim@stra\u00dfe.de"}).get_json()["existing_id"] == sharp["id"]
    api.invite("victim@strasse.de")


def test_a_username_in_a_link_org_folds_only_ascii_case(bridge: Bridge, client: FlaskClient) -> None:
    make_org(bridge, "usernames", match="link")
    api = Api(client, make_key(bridge, "usernames"), org="usernames")
    ada, sharp = api.invite("Ada.Lovelace"), api.invite("STRA\u00dfE")

    assert api.post("/invites", {"identifier": "ada.lovelace"}).get_json()["existing_id"] == ada["id"]
    assert api.invite("strasse")["id"] != sharp["id"]
    assert api.invite("\u212aate")["id"] != api.invite("kate")["id"]
