"""The Import page: "Preview" writes nothing, "Confirm import" writes the good rows, "Download errors" returns
the rejected rows with their original columns plus `error`."""

from __future__ import annotations

import csv
import io
import re
from html import unescape
from typing import Any

from flask.testing import FlaskClient
from sqlalchemy import func, select

from idp_bridge.bridge import Bridge
from idp_bridge.models import Invite
from idp_bridge.store.db import transaction
from tests.console.conftest import BASE, Org, csrf_of, get, table

CSV = ("email,name,team\n"
       "ann@example.com,Ann,red\n"
       "not an email,Nobody,blue\n"
       "admin@example.com,Already,green\n"
       "bob@example.com,Bob,red\n")


def _invites(bridge: Bridge) -> int:
    with transaction(bridge.sessions) as session:
        return int(session.scalar(select(func.count()).select_from(Invite)) or 0)


def _hidden(html: str, name: str) -> str:
    found = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert found, name
    return unescape(found.group(1))


def _preview(client: FlaskClient, data: bytes) -> Any:
    token = csrf_of(get(client, "/console/acme/import").get_data(as_text=True))
    return client.post("/console/acme/import", base_url=BASE, content_type="multipart/form-data",
                       data={"csrf_token": token, "file": (io.BytesIO(data), "people.csv")})


def test_preview_shows_each_row_with_its_result_and_writes_nothing(owner: FlaskClient, acme: Org,
                                                                   bridge: Bridge) -> None:
    before = _invites(bridge)

    resp = _preview(owner, CSV.encode())

    body = resp.get_data(as_text=True)
    rows = table(body)
    assert resp.status_code == 200 and "Import preview" in body and ">Confirm import</button>" in body
    assert "2 would be created, 1 duplicate, 1 invalid" in body
    assert "ann@example.com" in rows and "not an email" in rows and ">invalid<" in rows and ">duplicate<" in rows
    assert _invites(bridge) == before


def test_confirm_import_writes_the_good_rows_and_download_errors_returns_the_rest(
        owner: FlaskClient, acme: Org, bridge: Bridge) -> None:
    before = _invites(bridge)
    preview = _preview(owner, CSV.encode()).get_data(as_text=True)

    done = owner.post("/console/acme/import", base_url=BASE, data={
        "csrf_token": _hidden(preview, "csrf_token"), "confirmed": "1", "csv": _hidden(preview, "csv")})

    body = done.get_data(as_text=True)
    assert done.status_code == 200 and "Import results" in body and "2 created" in body
    assert _invites(bridge) == before + 2
    errors = owner.post("/console/acme/import/errors", base_url=BASE, data={
        "csrf_token": _hidden(body, "csrf_token"), "errors_csv": _hidden(body, "errors_csv")})
    assert errors.status_code == 200 and errors.mimetype == "text/csv"
    rejected = list(csv.DictReader(io.StringIO(errors.get_data(as_text=True).lstrip("\ufeff"))))
    # As the CLI's errors file: the invalid rows, to fix and import again (duplicates need no fixing).
    assert [(r["email"], r["team"]) for r in rejected] == [("not an email", "blue")]
    assert rejected[0]["error"].startswith("email:")


def test_an_import_beyond_the_seat_limit_is_refused_and_writes_nothing(owner: FlaskClient, acme: Org,
                                                                       bridge: Bridge) -> None:
    many = "email\n" + "".join(f"p{i}@example.com\n" for i in range(8))
    before = _invites(bridge)

    resp = _preview(owner, many.encode())

    assert resp.status_code == 409 and 'id="file-error"' in resp.get_data(as_text=True)
    assert _invites(bridge) == before


def test_a_file_that_is_not_csv_is_a_clear_error(owner: FlaskClient, acme: Org) -> None:
    resp = _preview(owner, b"")

    assert resp.status_code == 422 and "Choose a CSV file" in resp.get_data(as_text=True)
