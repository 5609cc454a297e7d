"""Hostile input: JSON nested without end and text that would break a mail header or a page title.

Generated over the whole class: every API operation that takes a JSON body (from the operation registry),
every listing's cursor, every inbound webhook endpoint (from its route table), and every control or
line-separator character against every text field that reaches a mail header or a page title.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import hmac
import importlib
import io
import json
import logging
import re
import sys
import unicodedata
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import responses
from click.testing import CliRunner
from flask.testing import FlaskClient

from idp_bridge.bridge import Bridge
from idp_bridge.cli import cli
from idp_bridge.errors import ConfigError
from idp_bridge.inputs import MAX_ATTRIBUTES_BYTES
from idp_bridge.jsontext import MAX_DEPTH
from idp_bridge.settings import load_settings
from idp_bridge.web import api as api_package
from idp_bridge.web.api import OPERATIONS, PROBLEM_JSON, Operation
from tests.helpers import Api, make_key, make_org
from webhooks.inbound.routes import ROUTES

for _module in api_package.ROUTE_MODULES:
    importlib.import_module(f"idp_bridge.web.api.{_module}")

DEPTHS = [MAX_DEPTH + 1, 900, 1_000, 10_000, 100_000]
SHAPES: dict[str, Callable[[int], str]] = {
    "arrays": lambda depth: "[" * depth + "]" * depth,
    "objects": lambda depth: '{"a":' * depth + "1" + "}" * depth,
}
BODY_OPERATIONS = [op for op in OPERATIONS if op.body is not None or "application/json" in op.request_content]
CURSOR_OPERATIONS = [op for op in OPERATIONS if any(q.name == "cursor" for q in op.query)]

KEYCLOAK_SECRET = "kc-webhook-secret"
GRAPH_STATE = "graph-client-state"
GOOGLE_CLIENT = "1234-abc.apps.googleusercontent.com"
REALM_URL = "https://kc.test/realms/acme"
PROVIDERS: dict[str, dict[str, Any]] = {
    "keycloak": {"type": "keycloak", "server_url": "https://kc.test", "realm": "acme", "client_id": "idp-bridge",
                 "client_secret": "kc-secret", "provision": False, "webhook_secret": KEYCLOAK_SECRET,
                 "webhook_jwt": True},
    "entra": {"type": "entra", "tenant": "organizations", "client_id": "entra-client", "client_secret": "s",
              "graph_client_state": GRAPH_STATE},
    "google": {"type": "google", "client_id": GOOGLE_CLIENT, "client_secret": "google-secret"},
}

# Every character of Unicode category Cc, Zl or Zp, read from the Unicode database rather than listed by hand.
CONTROL_CHARACTERS = [chr(c) for c in range(sys.maxunicode + 1)
                      if unicodedata.category(chr(c)) in ("Cc", "Zl", "Zp")]
# Invite fields whose text reaches a mail header (To) or the invite page, and how to make each one hostile.
INVITE_FIELDS: dict[str, Callable[[str], str]] = {
    "identifier": lambda c: f"ann{c}x@example.com",
    "notification_email": lambda c: f"ann{c}x@example.com",
    "name": lambda c: f"Ann{c}Smith",
}


@pytest.fixture
def settings_overrides(settings_overrides: dict[str, Any]) -> dict[str, Any]:
    settings_overrides["providers"] = PROVIDERS
    return settings_overrides


@pytest.fixture
def offline() -> Iterator[responses.RequestsMock]:
    """No request leaves the process: whatever an endpoint would fetch fails as a network error would."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield rsps


@pytest.fixture
def platform(bridge: Bridge, client: FlaskClient) -> Api:
    make_org(bridge, "acme")
    return Api(client, make_key(bridge, None))


def tracebacks(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.exc_info]


def url_of(op: Operation) -> str:
    """The operation's URL on the real org, with made-up ids (the body is read before any id is looked up)."""
    path = re.sub(r"\{(\w+)\}", lambda m: "acme" if m.group(1) == "org" else "unknown-id", op.rule)
    return f"/api/v1{path}"


def deep_documents() -> Iterator[tuple[str, str]]:
    """(label, document) for every shape at every depth."""
    for shape, build in sorted(SHAPES.items()):
        for depth in DEPTHS:
            yield f"{shape} {depth}", build(depth)


@pytest.mark.parametrize("op", BODY_OPERATIONS, ids=lambda op: f"{op.method} {op.rule}")
def test_json_nested_too_deeply_for_any_api_operation_is_a_400_problem_and_no_traceback(
        platform: Api, caplog: pytest.LogCaptureFixture, op: Operation) -> None:
    caplog.set_level(logging.INFO)
    for label, document in deep_documents():
        resp = platform.client.open(url_of(op), method=op.method, data=document,
                                    headers=platform.headers({"Content-Type": "application/json"}))

        assert resp.status_code == 400, (label, resp.get_data(as_text=True))
        assert resp.mimetype == PROBLEM_JSON and f"at most {MAX_DEPTH} levels" in resp.get_json()["detail"], label
    assert tracebacks(caplog) == []


@pytest.mark.parametrize("depth", [MAX_DEPTH - 1, 10_000])
def test_a_deep_value_inside_an_otherwise_valid_invite_is_refused_before_it_is_stored(
        platform: Api, depth: int) -> None:
    body = '{"identifier": "ann@example.com", "attributes": {"x": ' + SHAPES["arrays"](depth) + "}}"

    resp = platform.client.post("/api/v1/orgs/acme/invites", data=body,
                                headers=platform.headers({"Content-Type": "application/json"}))

    assert resp.status_code == 400 and resp.mimetype == PROBLEM_JSON
    assert platform.get("/invites").get_json()["items"] == []


@pytest.mark.parametrize("depth", [1_000, 50_000])
def test_a_deep_json_cell_in_an_import_file_stays_text_and_is_judged_as_text(
        platform: Api, caplog: pytest.LogCaptureFixture, depth: int) -> None:
    cell = SHAPES["arrays"](depth)
    body = "identifier,profile\nann@example.com," + cell + "\n"

    resp = platform.client.post("/api/v1/orgs/acme/invites/bulk", data=body.encode(),
                                headers=platform.headers({"Content-Type": "text/csv"}))

    assert resp.status_code == 200, resp.get_data(as_text=True)
    if len(cell) > MAX_ATTRIBUTES_BYTES:
        assert resp.get_json()["summary"] == {"created": 0, "duplicate": 0, "invalid": 1}
    else:
        assert platform.get("/invites").get_json()["items"][0]["attributes"] == {"profile": cell}
    assert tracebacks(caplog) == []


@pytest.mark.parametrize("depth", [3, 1_000, 100_000])
@pytest.mark.parametrize("op", CURSOR_OPERATIONS, ids=lambda op: f"{op.method} {op.rule}")
def test_a_forged_cursor_nested_deeply_is_a_422_problem(
        platform: Api, caplog: pytest.LogCaptureFixture, op: Operation, depth: int) -> None:
    cursor = base64.urlsafe_b64encode(SHAPES["arrays"](depth).encode()).decode().rstrip("=")

    resp = platform.client.get(url_of(op), query_string={"cursor": cursor}, headers=platform.headers())

    assert resp.status_code in (404, 422), resp.get_data(as_text=True)
    assert resp.mimetype == PROBLEM_JSON
    if "{" not in op.rule.removeprefix("/orgs/{org}"):
        assert resp.status_code == 422 and "cursor" in resp.get_json()["errors"]
    assert tracebacks(caplog) == []


def test_bodies_over_the_size_limit_get_413_from_the_api_and_every_webhook(platform: Api, app: Any) -> None:
    huge = b" " * (app.config["MAX_CONTENT_LENGTH"] + 1)

    api_answers = {f"{op.method} {op.rule}": platform.client.open(
        url_of(op), method=op.method, data=huge, headers=platform.headers({"Content-Type": "application/json"}))
        for op in BODY_OPERATIONS}
    hook_answers = {path: platform.client.post(f"/webhooks{path}", data=huge) for path in ROUTES}

    assert {name: r.status_code for name, r in api_answers.items()} == {name: 413 for name in api_answers}
    assert all(r.mimetype == PROBLEM_JSON for r in api_answers.values())
    assert {path: r.status_code for path, r in hook_answers.items()} == {path: 413 for path in ROUTES}


def _b64(data: str | bytes) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _signed(body: str) -> tuple[bytes, dict[str, str]]:
    data = body.encode()
    return data, {"X-Keycloak-Signature": hmac.new(KEYCLOAK_SECRET.encode(), data, hashlib.sha256).hexdigest(),
                  "Content-Type": "application/json"}


RS256_HEADER = '{"alg": "RS256", "kid": "k"}'


# For each inbound endpoint, the ways a deep document reaches it, with the answer each must get: unsigned
# (refused before parsing, or parsed unauthenticated), and as a genuine sender would send it.
Delivery = tuple[str, int, Callable[[str], tuple[bytes, dict[str, str]]]]
DELIVERIES: dict[str, list[Delivery]] = {
    "/keycloak": [
        ("unsigned", 401, lambda deep: (deep.encode(), {})),
        ("signed body", 400, _signed),
        ("signed event with a deep field", 400, lambda deep: _signed('{"type": "LOGIN", "details": ' + deep + "}")),
        ("bearer token with a deep header", 401, lambda deep: (b"{}", {
            "Authorization": f"Bearer {_b64(deep)}.{_b64(json.dumps({'iss': REALM_URL}))}.c2ln"})),
        ("bearer token with deep claims", 401, lambda deep: (b"{}", {
            "Authorization": f"Bearer {_b64(RS256_HEADER)}.{_b64(deep)}.c2ln"})),
    ],
    "/microsoft-graph": [
        ("body", 400, lambda deep: (deep.encode(), {})),
        ("notification with our clientState", 400, lambda deep: (
            ('{"value": [{"clientState": "' + GRAPH_STATE + '", "resourceData": ' + deep + "}]}").encode(), {})),
    ],
    "/microsoft-graph/lifecycle": [
        ("body", 400, lambda deep: (deep.encode(), {})),
    ],
    "/google-risc": [
        ("token with a deep header", 400, lambda deep: (f"{_b64(deep)}.{_b64('{}')}.c2ln".encode(), {})),
        ("token with deep claims", 400, lambda deep: (
            f"{_b64(RS256_HEADER)}.{_b64(deep)}.c2ln".encode(), {})),
    ],
}


def test_every_inbound_webhook_endpoint_is_covered_by_the_deep_json_deliveries() -> None:
    assert set(DELIVERIES) == set(ROUTES)


@pytest.mark.parametrize(("path", "how", "status", "build"),
                         [(path, how, status, build) for path, ways in DELIVERIES.items()
                          for how, status, build in ways],
                         ids=lambda v: v if isinstance(v, str) else "")
def test_json_nested_too_deeply_to_any_inbound_webhook_is_refused_without_a_traceback(
        offline: responses.RequestsMock, client: FlaskClient, caplog: pytest.LogCaptureFixture, path: str, how: str,
        status: int, build: Callable[[str], tuple[bytes, dict[str, str]]]) -> None:
    caplog.set_level(logging.INFO)
    for label, document in deep_documents():
        data, headers = build(document)

        resp = client.post(f"/webhooks{path}", data=data, headers=headers)

        assert resp.status_code == status, (label, resp.get_data(as_text=True))
    assert tracebacks(caplog) == []


def test_the_control_characters_under_test_are_the_whole_unicode_class() -> None:
    assert len(CONTROL_CHARACTERS) == 67 and {"\r", "\n", "\x00", "\x85", "\u2028", "\u2029"} <= set(
        CONTROL_CHARACTERS)


def hostile(char: str) -> str:
    return f"U+{ord(char):04X}"


@pytest.mark.parametrize("field", sorted(INVITE_FIELDS))
def test_a_control_character_in_any_invite_text_field_is_a_422_naming_the_field(
        platform: Api, field: str) -> None:
    answers = {hostile(c): platform.post("/invites", {"identifier": "ann@example.com",
                                                      field: INVITE_FIELDS[field](c)}) for c in CONTROL_CHARACTERS}

    assert {k: r.status_code for k, r in answers.items()} == {k: 422 for k in answers}
    assert all(field in r.get_json()["errors"] for r in answers.values())
    assert platform.get("/invites").get_json()["items"] == []


def test_a_control_character_in_a_username_of_an_org_that_matches_by_link_is_a_422(
        platform: Api, bridge: Bridge) -> None:
    make_org(bridge, "links", match="link")
    links = Api(platform.client, platform.key, org="links")

    answers = {hostile(c): links.post("/invites", {"identifier": f"ann{c}smith"}) for c in CONTROL_CHARACTERS}

    assert {k: r.status_code for k, r in answers.items()} == {k: 422 for k in answers}
    assert all("identifier" in r.get_json()["errors"] for r in answers.values())
    assert links.post("/invites", {"identifier": "ann smith"}).status_code == 201


def test_a_control_character_in_any_bulk_row_field_makes_that_row_invalid_naming_the_field(platform: Api) -> None:
    for char in CONTROL_CHARACTERS:
        rows = [{"identifier": f"row{i}@example.com", field: make(char)}
                for i, (field, make) in enumerate(sorted(INVITE_FIELDS.items()))]

        resp = platform.post("/invites/bulk", {"invites": rows})

        body = resp.get_json()
        if char == "\x00":
            # NUL anywhere in a JSON body refuses the whole request (PostgreSQL text cannot hold it).
            assert resp.status_code == 422 and list(body["errors"]) == ["invites.0.identifier"]
            continue
        assert body["summary"] == {"created": 0, "duplicate": 0, "invalid": len(rows)}, hostile(char)
        assert [sorted(r["errors"]) for r in body["rows"]] == [[f] for f in sorted(INVITE_FIELDS)], hostile(char)


@pytest.mark.parametrize("field", ["name", "notification_email"])
def test_a_control_character_in_a_bulk_default_is_a_422_naming_the_default(platform: Api, field: str) -> None:
    answers = {hostile(c): platform.post("/invites/bulk", {"defaults": {field: INVITE_FIELDS[field](c)},
                                                           "invites": ["ann@example.com"]})
               for c in CONTROL_CHARACTERS}

    assert {k: r.status_code for k, r in answers.items()} == {k: 422 for k in answers}
    assert all(f"defaults.{field}" in r.get_json()["errors"] for r in answers.values())


def csv_file(rows: list[dict[str, str]]) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=sorted(INVITE_FIELDS), quoting=csv.QUOTE_ALL)
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue().encode()


def test_a_control_character_in_any_csv_column_makes_that_row_invalid_naming_the_column(platform: Api) -> None:
    for char in CONTROL_CHARACTERS:
        rows = [{"identifier": f"row{i}@example.com", "name": "", "notification_email": "", field: make(char)}
                for i, (field, make) in enumerate(sorted(INVITE_FIELDS.items()))]

        resp = platform.client.post("/api/v1/orgs/acme/invites/bulk", data=csv_file(rows),
                                    headers=platform.headers({"Content-Type": "text/csv"}))

        assert resp.status_code in (200, 400), hostile(char)
        if resp.status_code == 400:
            # Only a character the CSV format itself cannot carry; the whole file is refused, clearly.
            assert resp.mimetype == PROBLEM_JSON and "CSV" in resp.get_json()["detail"], hostile(char)
            continue
        body = resp.get_json()
        assert body["summary"]["created"] == 0, hostile(char)
        assert [sorted(r["errors"]) for r in body["rows"]] == [[f] for f in sorted(INVITE_FIELDS)], hostile(char)


# Org fields whose text reaches a mail Subject, a page title or the Location header of the redirect.
ORG_FIELDS: dict[str, Callable[[str], str]] = {
    "name": lambda c: f"Be{c}ta",
    "redirect_url": lambda c: f"https://app.test/{c}welcome",
}


@pytest.mark.parametrize("field", sorted(ORG_FIELDS))
def test_a_control_character_in_an_org_text_field_is_a_422_on_create_and_on_patch(
        platform: Api, field: str) -> None:
    make = ORG_FIELDS[field]
    created = {hostile(c): platform.client.post("/api/v1/orgs", json={"slug": "beta", "name": "Beta",
                                                                      field: make(c)},
                                                headers=platform.headers()) for c in CONTROL_CHARACTERS}
    patched = {hostile(c): platform.patch("", {field: make(c)}) for c in CONTROL_CHARACTERS}

    for answers in (created, patched):
        assert {k: r.status_code for k, r in answers.items()} == {k: 422 for k in answers}
        assert all(field in r.get_json()["errors"] for r in answers.values())
    org = platform.get("").get_json()
    assert (org["name"], org["redirect_url"]) == ("Acme", None)
    assert platform.client.get("/api/v1/orgs/beta", headers=platform.headers()).status_code == 404


@pytest.mark.parametrize("char", ["\r", "\n", "\x1b", "\x85", "\u2028"], ids=hostile)
def test_the_cli_refuses_an_org_name_with_a_control_character_and_names_the_option(
        tmp_path: Path, database_url: str, char: str) -> None:
    config = tmp_path / "idp-bridge.toml"
    config.write_text('public_url = "http://127.0.0.1:8080"\n')
    env = {"IDP_BRIDGE_INSTANCE_DIR": str(tmp_path / "instance"), "IDP_BRIDGE_DATABASE_URL": database_url,
           "IDP_BRIDGE_CONFIG": str(config), "IDP_BRIDGE_TEST_DB": None, "IDP_BRIDGE_TEST_PG_ADMIN": None}

    result = CliRunner().invoke(cli, ["org", "create", "beta", "--name", f"Be{char}ta"], env=env)

    assert result.exit_code == 2 and "name: must not contain control characters" in result.stderr
    assert "Traceback" not in result.output


@pytest.mark.parametrize("setting", ["product_name", "support_contact", "mail_from"])
def test_a_control_character_in_a_setting_shown_in_mail_headers_or_page_titles_is_a_config_error(
        tmp_path: Path, setting: str) -> None:
    for char in CONTROL_CHARACTERS:
        with pytest.raises(ConfigError) as caught:
            load_settings(overrides={"instance_dir": str(tmp_path), setting: f"Acme{char}Support <a@b.test>"},
                          environ={})

        assert caught.value.setting == setting and "control characters" in caught.value.detail, hostile(char)
