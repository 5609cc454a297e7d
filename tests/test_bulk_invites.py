"""Bulk invites through the API: per-row results, duplicates, atomic batches, seats, the outbox."""

from __future__ import annotations

from typing import Any

from email_validator import EmailNotValidError, validate_email
from flask.testing import FlaskClient
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from idp_bridge.bridge import Bridge
from idp_bridge.inputs import PLAIN_EMAIL, _plain_email, normalize_email
from idp_bridge.models import AuditEvent, Event, Invite, InviteLink, Job
from idp_bridge.security import token_hash, unseal
from idp_bridge.services.invites import SEND_EMAIL_JOB
from idp_bridge.store.db import transaction
from idp_bridge.worker import Worker
from tests.conftest import PUBLIC_URL, RecordingMail
from tests.dbstate import age_invite, make_active, row_counts
from tests.helpers import Api, make_key, make_org


def setup(bridge: Bridge, client: FlaskClient, **org: Any) -> Api:
    make_org(bridge, **{"member_limit": 5000, **org})
    return Api(client, make_key(bridge))


def csv_post(api: Api, body: str, query: str = "") -> Any:
    return api.client.post(api.url("/invites/bulk" + query), data=body.encode(),
                           headers=api.headers({"Content-Type": "text/csv"}))


def thousand_rows_with_two_bad() -> str:
    lines = ["identifier,name,role,team"]
    for i in range(1000):
        identifier, role = f"person{i}@example.com", "MEMBER"
        if i == 99:
            identifier = "not-an-email"
        if i == 700:
            role = "CAPTAIN"
        lines.append(f"{identifier},Person {i},{role},team-{i % 7}")
    return "\n".join(lines) + "\n"


def test_a_plain_list_of_emails_with_one_role_creates_pending_invites(bridge: Bridge, client: FlaskClient) -> None:
    api = setup(bridge, client)
    resp = api.post("/invites/bulk", {"invites": ["ada@example.com", "bob@example.com"], "role": "ADMIN"})
    assert resp.status_code == 200
    body = resp.get_json()
    assert body["summary"] == {"created": 2, "duplicate": 0, "invalid": 0}
    assert [r["row"] for r in body["rows"]] == [1, 2]
    assert all(set(r) == {"row", "status", "id"} for r in body["rows"])
    invite = api.get(f"/invites/{body['rows'][0]['id']}").get_json()
    assert (invite["identifier"], invite["role"], invite["status"]) == ("ada@example.com", "ADMIN", "PENDING")
    member = api.get(f"/members/{invite['member_id']}").get_json()
    assert (member["status"], member["role"]) == ("INVITED", "ADMIN")


def test_a_bare_json_list_takes_its_role_from_the_query(bridge: Bridge, client: FlaskClient) -> None:
    api = setup(bridge, client)
    body = api.post("/invites/bulk?role=ADMIN", ["ada@example.com"]).get_json()
    assert api.get(f"/invites/{body['rows'][0]['id']}").get_json()["role"] == "ADMIN"


def test_defaults_fill_what_rows_leave_out_and_attributes_merge(bridge: Bridge, client: FlaskClient) -> None:
    api = setup(bridge, client)
    body = api.post("/invites/bulk", {
        "defaults": {"role": "ADMIN", "attributes": {"company": "Acme", "site": "HQ"}, "ttl_hours": 24},
        "invites": [{"identifier": "ada@example.com", "name": "Ada", "attributes": {"site": "Lab"}},
                    {"email": "bob@example.com", "role": "MEMBER"}]}).get_json()
    ada, bob = (api.get(f"/invites/{r['id']}").get_json() for r in body["rows"])
    assert (ada["role"], ada["name"], ada["attributes"]) == ("ADMIN", "Ada", {"company": "Acme", "site": "Lab"})
    assert (bob["role"], bob["attributes"]) == ("MEMBER", {"company": "Acme", "site": "HQ"})


def test_an_invalid_default_is_one_error_for_the_request(bridge: Bridge, client: FlaskClient) -> None:
    api = setup(bridge, client)
    resp = api.post("/invites/bulk", {"defaults": {"ttl_hours": 0}, "invites": ["ada@example.com"]})
    assert resp.status_code == 422
    assert "defaults.ttl_hours" in resp.get_json()["errors"]
    assert row_counts(bridge)["invites"] == 0


def test_invalid_rows_report_their_row_field_and_reason_while_valid_rows_are_created(
        bridge: Bridge, client: FlaskClient) -> None:
    api = setup(bridge, client)
    body = api.post("/invites/bulk", {"invites": [
        "ada@example.com", {"identifier": "bob@example.com", "role": "CAPTAIN"}, 42,
        {"identifier": "cy@example.com", "colour": "red"}]}).get_json()
    assert body["summary"] == {"created": 1, "duplicate": 0, "invalid": 3}
    rows = {r["row"]: r for r in body["rows"]}
    assert rows[1]["status"] == "created"
    assert rows[2]["status"] == "invalid" and "unknown role 'CAPTAIN'" in rows[2]["errors"]["role"][0]
    assert rows[3]["errors"] == {"row": ["must be an invite object or an identifier"]}
    assert "colour" in rows[4]["errors"]
    assert row_counts(bridge)["invites"] == 1


def test_dry_run_on_a_thousand_rows_with_two_bad_ones_writes_nothing_and_reports_exactly_those(
        bridge: Bridge, client: FlaskClient) -> None:
    api = setup(bridge, client)
    before = row_counts(bridge)
    resp = csv_post(api, thousand_rows_with_two_bad(), "?dry_run=true")
    assert resp.status_code == 200
    body = resp.get_json()
    assert row_counts(bridge) == before
    assert body["summary"] == {"created": 998, "duplicate": 0, "invalid": 2}
    invalid = [r for r in body["rows"] if r["status"] == "invalid"]
    # Spreadsheet rows: the header is row 1, so data row i sits on row i + 2.
    assert [(r["row"], sorted(r["errors"])) for r in invalid] == [(101, ["identifier"]), (702, ["role"])]
    assert "@-sign" in invalid[0]["errors"]["identifier"][0]
    assert "unknown role 'CAPTAIN'" in invalid[1]["errors"]["role"][0]
    assert not any("id" in r for r in body["rows"])


def test_the_real_import_of_that_file_creates_998_and_reports_the_2(bridge: Bridge, client: FlaskClient) -> None:
    api = setup(bridge, client)
    body = csv_post(api, thousand_rows_with_two_bad()).get_json()
    assert body["summary"] == {"created": 998, "duplicate": 0, "invalid": 2}
    assert [r["row"] for r in body["rows"] if r["status"] == "invalid"] == [101, 702]
    counts = row_counts(bridge)
    assert (counts["invites"], counts["members"], counts["invite_links"], counts["jobs"]) == (998, 998, 998, 998)
    assert len({r["id"] for r in body["rows"] if r["status"] == "created"}) == 998


def test_importing_the_same_file_twice_creates_nothing_the_second_time(bridge: Bridge, client: FlaskClient) -> None:
    api = setup(bridge, client)
    first = csv_post(api, thousand_rows_with_two_bad()).get_json()
    after_first = row_counts(bridge)
    second = csv_post(api, thousand_rows_with_two_bad()).get_json()
    assert row_counts(bridge) == after_first
    assert second["summary"] == {"created": 0, "duplicate": 998, "invalid": 2}
    created = {r["row"]: r["id"] for r in first["rows"] if r["status"] == "created"}
    assert {r["row"]: r["existing_id"] for r in second["rows"] if r["status"] == "duplicate"} == created


def test_an_expired_invite_frees_its_identifier_and_a_dry_run_leaves_even_the_expiry_unwritten(
        bridge: Bridge, client: FlaskClient) -> None:
    api = setup(bridge, client)
    old = api.invite("ada@example.com")
    age_invite(bridge, old["id"])
    preview = api.post("/invites/bulk?dry_run=true", ["ada@example.com"]).get_json()
    assert preview["rows"][0]["status"] == "created"
    with transaction(bridge.sessions) as session:
        stored = session.get(Invite, old["id"])
        assert stored is not None and stored.status == "PENDING"
    real = api.post("/invites/bulk", ["ada@example.com"]).get_json()
    assert real["rows"][0]["status"] == "created"
    assert api.get(f"/invites/{old['id']}").get_json()["status"] == "EXPIRED"


def test_a_member_who_already_joined_is_a_duplicate_pointing_at_the_member(
        bridge: Bridge, client: FlaskClient) -> None:
    api = setup(bridge, client)
    invite = api.invite("ada@example.com")
    make_active(bridge, invite["member_id"])
    row = api.post("/invites/bulk", ["ADA@example.com"]).get_json()["rows"][0]
    assert (row["status"], row["existing_id"]) == ("duplicate", invite["member_id"])
    assert "already a member (ACTIVE)" in row["errors"]["identifier"][0]


def test_repeats_inside_one_batch_are_created_once_and_point_at_the_first(bridge: Bridge, client: FlaskClient) -> None:
    api = setup(bridge, client)
    body = api.post("/invites/bulk", ["ada@example.com", "bob@example.com", " Ada@Example.com "]).get_json()
    assert body["summary"] == {"created": 2, "duplicate": 1, "invalid": 0}
    first, _, repeat = body["rows"]
    assert repeat["existing_id"] == first["id"]
    assert repeat["errors"] == {"identifier": ["repeats row 1 of this batch"]}
    assert row_counts(bridge)["invites"] == 2


def test_an_atomic_batch_with_one_invalid_row_writes_nothing(bridge: Bridge, client: FlaskClient) -> None:
    api = setup(bridge, client)
    before = row_counts(bridge)
    resp = api.post("/invites/bulk?atomic=true", ["ada@example.com", "nope", "bob@example.com"])
    assert resp.status_code == 422
    problem = resp.get_json()
    assert problem["code"] == "bulk_rejected"
    assert list(problem["errors"]) == ["rows[2].identifier"]
    assert problem["summary"] == {"created": 2, "duplicate": 0, "invalid": 1}
    assert row_counts(bridge) == before


def test_an_atomic_batch_without_invalid_rows_is_written_whole(bridge: Bridge, client: FlaskClient) -> None:
    api = setup(bridge, client)
    api.invite("ada@example.com")
    body = api.post("/invites/bulk?atomic=true", ["ada@example.com", "bob@example.com"]).get_json()
    assert body["summary"] == {"created": 1, "duplicate": 1, "invalid": 0}


def test_a_batch_bigger_than_the_free_seats_is_refused_whole_with_the_missing_count(
        bridge: Bridge, client: FlaskClient) -> None:
    api = setup(bridge, client, member_limit=5)
    api.invite("ada@example.com")
    resp = api.post("/invites/bulk", [f"p{i}@example.com" for i in range(6)] + ["ada@example.com", "bad"])
    assert resp.status_code == 409
    problem = resp.get_json()
    assert problem["code"] == "seat_limit_reached"
    assert (problem["seats_used"], problem["seats_requested"], problem["seats_missing"]) == (1, 6, 2)
    assert row_counts(bridge)["invites"] == 1
    fits = api.post("/invites/bulk", [f"p{i}@example.com" for i in range(4)]).get_json()
    assert fits["summary"]["created"] == 4


def test_more_than_ten_thousand_rows_get_a_413_problem(bridge: Bridge, client: FlaskClient) -> None:
    api = setup(bridge, client)
    resp = api.post("/invites/bulk", [f"p{i}@example.com" for i in range(10_001)])
    assert resp.status_code == 413
    assert resp.mimetype == "application/problem+json"
    assert resp.get_json()["max_rows"] == 10_000


def test_each_invite_gets_its_own_link_stored_only_as_a_hash_and_mailed_through_the_outbox(
        bridge: Bridge, client: FlaskClient, worker: Worker, mail: RecordingMail) -> None:
    api = setup(bridge, client)
    body = api.post("/invites/bulk", ["ada@example.com", "bob@example.com"]).get_json()
    assert mail.sent == []
    with transaction(bridge.sessions) as session:
        jobs = list(session.scalars(select(Job).where(Job.kind == SEND_EMAIL_JOB)))
        token_of = {j.payload["invite_id"]: unseal(bridge.settings.secret_key, j.payload["link"]) for j in jobs}
        hashes = set(session.scalars(select(InviteLink.token_hash)))
    assert len(set(token_of.values())) == 2 and all(len(t) >= 43 for t in token_of.values())
    assert hashes == {token_hash(t) for t in token_of.values()}
    assert worker.run_once()["done"] == 2
    for address, row in zip(("ada@example.com", "bob@example.com"), body["rows"], strict=True):
        [message] = mail.to(address)
        assert f"{PUBLIC_URL}/invite/{token_of[row['id']]}" in message.get_body(("plain",)).get_content()


def _columns(row: Any, differing: set[str]) -> dict[str, Any]:
    """A row's columns, leaving out those that differ between any two invites (ids, times, the person)."""
    return {c.key: getattr(row, c.key) for c in row.__table__.columns if c.key not in differing}


PER_INVITE = {"id", "member_id", "invite_id", "identifier", "identifier_key", "email", "created_at", "updated_at",
              "expires_at", "last_sent_at", "token_hash", "payload", "code_hash", "target_id", "at", "run_after",
              "details"}


def test_a_bulk_invite_writes_the_same_member_invite_link_event_audit_and_job_rows_as_a_single_invite(
        bridge: Bridge, client: FlaskClient) -> None:
    api = setup(bridge, client, require_invite_code=True)
    fields = {"attributes": {"site": "HQ"}, "name": "Someone", "role": "MEMBER", "ttl_hours": 48}
    single = api.invite("ada@example.com", **fields)
    bulk = api.post("/invites/bulk", [{"identifier": "bob@example.com", **fields}]).get_json()
    with transaction(bridge.sessions) as session:
        one, many = session.get(Invite, single["id"]), session.get(Invite, bulk["rows"][0]["id"])
        assert one is not None and many is not None
        assert _columns(one, PER_INVITE) == _columns(many, PER_INVITE)
        assert one.code_hash and many.code_hash and one.expires_at - one.created_at == many.expires_at - many.created_at
        assert _columns(one.member, PER_INVITE) == _columns(many.member, PER_INVITE)
        assert one.member.event_seq == many.member.event_seq == 1
        links = [session.scalar(select(InviteLink).where(InviteLink.invite_id == i.id)) for i in (one, many)]
        assert [_columns(link, PER_INVITE) for link in links] == [{"superseded_at": None}] * 2
        events = [session.scalar(select(Event).where(Event.invite_id == i.id)) for i in (one, many)]
        assert _columns(events[0], PER_INVITE) == _columns(events[1], PER_INVITE)
        assert (events[0].type, events[0].sequence) == ("invite.created", 1)
        a, b = (event.payload for event in events)
        assert a["type"] == b["type"] and set(a) == set(b) and set(a["data"]) == set(b["data"])
        person = ("member_id", "invite_id", "email", "identifier")
        assert {k: v for k, v in a["data"].items() if k not in person} == \
               {k: v for k, v in b["data"].items() if k not in person}
        for event, invite in zip(events, (one, many), strict=True):
            assert {k: event.payload["data"][k] for k in person} == {
                "member_id": invite.member_id, "invite_id": invite.id, "email": invite.member.email,
                "identifier": invite.identifier}
        audits = [session.scalar(select(AuditEvent).where(AuditEvent.target_id == i.id)) for i in (one, many)]
        assert audits[0] is not None and audits[1] is not None
        assert _columns(audits[0], PER_INVITE) == _columns(audits[1], PER_INVITE)
        assert audits[0].action == "invite.created"
        for entry, invite in zip(audits, (one, many), strict=True):
            assert entry.details == {"identifier": invite.identifier, "role": "MEMBER", "provider": invite.provider}
        outbox = {job.payload["invite_id"]: job for job in session.scalars(select(Job))}
        assert _columns(outbox[one.id], PER_INVITE) == _columns(outbox[many.id], PER_INVITE)
        assert (outbox[one.id].kind, outbox[one.id].status) == (SEND_EMAIL_JOB, "queued")
        assert set(outbox[one.id].payload) == set(outbox[many.id].payload) == {"invite_id", "link", "code",
                                                                                "inviter"}


def test_an_org_that_requires_codes_gets_a_code_per_bulk_invite(bridge: Bridge, client: FlaskClient) -> None:
    api = setup(bridge, client, require_invite_code=True)
    body = api.post("/invites/bulk", ["ada@example.com"]).get_json()
    assert api.get(f"/invites/{body['rows'][0]['id']}").get_json()["code_required"] is True
    with transaction(bridge.sessions) as session:
        job = session.scalar(select(Job).where(Job.kind == SEND_EMAIL_JOB))
        assert job is not None and len(unseal(bridge.settings.secret_key, job.payload["code"])) == 8


def test_the_openapi_document_shows_json_and_csv_bodies_for_bulk_invites(client: FlaskClient) -> None:
    op = client.get("/openapi.json").get_json()["paths"]["/api/v1/orgs/{org}/invites/bulk"]["post"]
    assert set(op["requestBody"]["content"]) == {"application/json", "text/csv"}
    assert {"dry_run", "atomic", "role"} <= {p["name"] for p in op["parameters"]}
    assert {"200", "409", "413", "422"} <= set(op["responses"])


@settings(max_examples=300, deadline=None)
@given(st.from_regex(PLAIN_EMAIL, fullmatch=True))
def test_the_plain_address_shortcut_agrees_with_email_validator(address: str) -> None:
    try:
        expected: str | None = validate_email(address, check_deliverability=False).normalized
    except EmailNotValidError:
        expected = None
    plain = _plain_email(address)
    if plain is None:
        # Declined by the shortcut: the full check then stores what email_validator would, or refuses it too.
        try:
            stored: str | None = normalize_email(address)
        except ValueError:
            stored = None
        assert stored == expected
    else:
        assert plain == expected
