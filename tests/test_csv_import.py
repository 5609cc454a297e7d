"""CSV import edge cases, and members export that re-imports into another org unchanged."""

from __future__ import annotations

import csv
import io
from typing import Any

from flask.testing import FlaskClient

from idp_bridge.bridge import Bridge
from tests.dbstate import make_active, row_counts
from tests.helpers import Api, make_key, make_org


def setup(bridge: Bridge, client: FlaskClient, slug: str = "acme") -> Api:
    make_org(bridge, slug, member_limit=20_000)
    return Api(client, make_key(bridge, slug), slug)


def post_csv(api: Api, body: bytes | str, query: str = "") -> Any:
    data = body.encode() if isinstance(body, str) else body
    return api.client.post(api.url("/invites/bulk" + query), data=data,
                           headers=api.headers({"Content-Type": "text/csv; charset=utf-8"}))


def invites_of(api: Api) -> dict[str, dict[str, Any]]:
    items = api.get("/invites?limit=200").get_json()["items"]
    return {i["identifier"]: i for i in items}


def test_a_bom_and_semicolon_separators_from_a_spreadsheet_are_understood(bridge: Bridge, client: FlaskClient) -> None:
    api = setup(bridge, client)
    body = "\ufeffEmail;Name;Role;Company\r\nada@example.com;Ada Lovelace;ADMIN;Analytical, Ltd\r\n"
    result = post_csv(api, body).get_json()
    assert result["summary"]["created"] == 1
    ada = invites_of(api)["ada@example.com"]
    assert (ada["name"], ada["role"], ada["attributes"]) == ("Ada Lovelace", "ADMIN", {"Company": "Analytical, Ltd"})


def test_quoted_attribute_cells_may_hold_newlines_and_blank_lines_are_skipped(
        bridge: Bridge, client: FlaskClient) -> None:
    api = setup(bridge, client)
    body = 'identifier,name,address\n\nada@example.com,"Ada Lovelace","1 Main St\n2nd floor"\n,,\nbad,Bob,\n'
    result = post_csv(api, body).get_json()
    assert result["summary"] == {"created": 1, "duplicate": 0, "invalid": 1}
    # Rows as a spreadsheet numbers them: header 1, blank 2, Ada 3, empty 4, bad 5.
    assert [(r["row"], r["status"]) for r in result["rows"]] == [(3, "created"), (5, "invalid")]
    ada = invites_of(api)["ada@example.com"]
    assert (ada["name"], ada["attributes"]) == ("Ada Lovelace", {"address": "1 Main St\n2nd floor"})


def test_a_name_cell_holding_a_newline_is_an_invalid_row_naming_the_column(
        bridge: Bridge, client: FlaskClient) -> None:
    api = setup(bridge, client)
    result = post_csv(api, 'identifier,name\nada@example.com,"Ada\nLovelace"\n').get_json()
    assert result["summary"] == {"created": 0, "duplicate": 0, "invalid": 1}
    assert list(result["rows"][0]["errors"]) == ["name"]


def test_a_file_that_is_not_utf8_gets_a_clear_400_and_nothing_is_written(bridge: Bridge, client: FlaskClient) -> None:
    api = setup(bridge, client)
    resp = post_csv(api, "email,name\nzoe@example.com,Zoë\n".encode("cp1252"))
    assert resp.status_code == 400
    assert resp.mimetype == "application/problem+json"
    assert "not UTF-8" in resp.get_json()["detail"]
    assert row_counts(bridge)["invites"] == 0


def test_a_header_without_identifier_or_email_is_refused(bridge: Bridge, client: FlaskClient) -> None:
    api = setup(bridge, client)
    resp = post_csv(api, "name,role\nAda,ADMIN\n")
    assert resp.status_code == 422
    assert resp.get_json()["errors"] == {"identifier": ["the header row needs an identifier or an email column"]}


def test_an_empty_file_is_refused(bridge: Bridge, client: FlaskClient) -> None:
    api = setup(bridge, client)
    assert post_csv(api, "\n\n").status_code == 422


def test_errors_name_the_email_column_when_the_file_uses_one(bridge: Bridge, client: FlaskClient) -> None:
    api = setup(bridge, client)
    row = post_csv(api, "email,role\nnot-an-email,MEMBER\n").get_json()["rows"][0]
    assert row["row"] == 2 and list(row["errors"]) == ["email"]


def test_a_row_with_more_cells_than_the_header_is_invalid(bridge: Bridge, client: FlaskClient) -> None:
    api = setup(bridge, client)
    row = post_csv(api, "email,name\nada@example.com,Ada,extra\n").get_json()["rows"][0]
    assert row["status"] == "invalid"
    assert row["errors"] == {"row": ["has 3 cells but the header names 2 columns"]}


def test_the_role_query_applies_to_rows_without_a_role(bridge: Bridge, client: FlaskClient) -> None:
    api = setup(bridge, client)
    post_csv(api, "email,role\nada@example.com,\nbob@example.com,OWNER\n", "?role=ADMIN")
    invites = invites_of(api)
    assert (invites["ada@example.com"]["role"], invites["bob@example.com"]["role"]) == ("ADMIN", "OWNER")


def test_more_than_ten_thousand_csv_rows_get_a_413_and_nothing_is_written(
        bridge: Bridge, client: FlaskClient) -> None:
    api = setup(bridge, client)
    body = "email\n" + "".join(f"p{i}@example.com\n" for i in range(10_001))
    resp = post_csv(api, body)
    assert resp.status_code == 413
    assert "10000" in resp.get_json()["detail"]
    assert row_counts(bridge)["invites"] == 0


def test_an_unsupported_content_type_gets_415(bridge: Bridge, client: FlaskClient) -> None:
    api = setup(bridge, client)
    resp = api.client.post(api.url("/invites/bulk"), data=b"email\nada@example.com\n",
                           headers=api.headers({"Content-Type": "text/plain"}))
    assert resp.status_code == 415
    assert "text/csv" in resp.get_json()["detail"]


def export(api: Api, query: str = "") -> str:
    resp = api.get("/members" + query, headers={"Accept": "text/csv"})
    assert resp.status_code == 200 and resp.mimetype == "text/csv"
    assert resp.is_streamed
    text: str = resp.get_data(as_text=True)
    return text


def test_an_export_reimports_into_a_fresh_org_with_the_same_identifiers_roles_and_attributes(
        bridge: Bridge, client: FlaskClient) -> None:
    source = setup(bridge, client, "source")
    people = [
        {"identifier": "ada@example.com", "role": "ADMIN", "name": "Ada",
         "attributes": {"company": "Acme", "formula": "=HYPERLINK(\"x\")", "phone": "+44 20 7946 0000",
                        "status": "vip", "Email": "ada@home.example"}},
        {"identifier": "bob@example.com", "role": "MEMBER", "name": "Bob, Jr.",
         "attributes": {"tags": ["a", "b"], "profile": {"level": "2"}, "note": "line one\nline two"}},
        {"identifier": "cy@example.com", "role": "OWNER", "name": "", "attributes": {}},
    ]
    body = source.post("/invites/bulk", {"invites": people}).get_json()
    make_active(bridge, source.get(f"/invites/{body['rows'][2]['id']}").get_json()["member_id"])
    exported = export(source)
    assert "'=HYPERLINK" in exported and "'+44" in exported

    target = setup(bridge, client, "target")
    result = post_csv(target, exported).get_json()
    assert result["summary"] == {"created": 3, "duplicate": 0, "invalid": 0}
    members = {m["identifier"]: m for m in target.get("/members").get_json()["items"]}
    for person in people:
        member = members[person["identifier"]]
        assert (member["role"], member["name"], member["attributes"]) == \
               (person["role"], person["name"], person["attributes"])
    assert all(m["status"] == "INVITED" for m in members.values())


def test_the_export_applies_filters_and_its_columns_are_what_an_import_reads(
        bridge: Bridge, client: FlaskClient) -> None:
    api = setup(bridge, client)
    api.post("/invites/bulk", {"invites": [{"identifier": "ada@example.com", "role": "ADMIN"},
                                           {"identifier": "bob@example.com", "role": "MEMBER",
                                            "attributes": {"site": "HQ"}}]})
    rows = list(csv.DictReader(io.StringIO(export(api, "?role=MEMBER"))))
    assert [r["identifier"] for r in rows] == ["bob@example.com"]
    assert {"identifier", "name", "role", "provider", "site"} <= set(rows[0])
