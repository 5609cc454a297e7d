"""The operator's CLI beside the API: org, api-key, invite and member listings and actions, --json, --version."""

from __future__ import annotations

import json
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from idp_bridge.bridge import Bridge
from idp_bridge.models import AuditEvent
from idp_bridge.permissions import ALL_PERMISSIONS
from idp_bridge.store.db import transaction
from tests.clirun import cli_env, invoke
from tests.dbstate import make_active
from tests.helpers import Api, make_key, make_org

Env = dict[str, str | None]


@pytest.fixture
def env(tmp_path: Path, database_url: str, settings_overrides: dict[str, Any]) -> Env:
    # The API's secret key: links the CLI seals open for the app under test.
    return {**cli_env(tmp_path, database_url), "IDP_BRIDGE_SECRET_KEY": settings_overrides["secret_key"]}


@pytest.fixture
def api(bridge: Bridge, client: FlaskClient) -> Api:
    make_org(bridge, "acme", member_limit=500)
    make_org(bridge, "beta")
    return Api(client, make_key(bridge, "acme", sorted(ALL_PERMISSIONS)))


def listing(env: Env, *args: str) -> list[dict[str, Any]]:
    code, out, err = invoke(env, *args, "--json")
    assert code == 0, err
    items = json.loads(out)
    assert isinstance(items, list)
    return items


def cli_actions(bridge: Bridge) -> list[tuple[str, str | None]]:
    with transaction(bridge.sessions) as session:
        return [(e.action, e.target_id) for e in session.scalars(
            select(AuditEvent).where(AuditEvent.actor == "cli").order_by(AuditEvent.at))]


def test_version_is_the_installed_package_version(env: Env) -> None:
    code, out, _ = invoke(env, "--version")
    assert code == 0 and out.strip() == f"idp-bridge {version('idp-bridge')}"


def test_org_list_shows_every_org_and_its_json_is_the_apis_representation(env: Env, api: Api) -> None:
    api.invite("ada@example.com")
    code, out, _ = invoke(env, "org", "list")
    lines = out.splitlines()
    assert code == 0 and lines[0].split()[:3] == ["SLUG", "NAME", "SEATS"]
    assert [line.split()[0] for line in lines[1:]] == ["acme", "beta"]
    assert "1/500" in lines[1]
    items = listing(env, "org", "list")
    assert items[0] == api.client.get("/api/v1/orgs/acme", headers=api.headers()).get_json()
    assert [o["slug"] for o in listing(env, "org", "list", "--limit", "1")] == ["acme"]


def test_invite_list_filters_and_its_json_is_the_apis_list(env: Env, api: Api) -> None:
    ada = api.invite("ada@example.com")
    bob = api.invite("bob@example.com", role="ADMIN")
    api.post(f"/invites/{bob['id']}/revoke")
    assert listing(env, "invite", "list", "--org", "acme") == api.get("/invites").get_json()["items"]
    assert [i["id"] for i in listing(env, "invite", "list", "--org", "acme", "--status", "PENDING")] == [ada["id"]]
    assert [i["id"] for i in listing(env, "invite", "list", "--org", "acme", "--limit", "1")] == [bob["id"]]
    assert listing(env, "invite", "list", "--org", "beta") == []
    code, out, _ = invoke(env, "invite", "list", "--org", "acme", "--status", "REVOKED")
    assert code == 0 and bob["id"] in out and ada["id"] not in out and "REVOKED" in out


def test_a_limit_beyond_one_api_page_reads_as_many_pages_as_it_needs(env: Env, api: Api) -> None:
    resp = api.post("/invites/bulk", {"invites": [f"user{n}@example.com" for n in range(205)]})
    assert resp.status_code == 200, resp.get_json()
    items = listing(env, "invite", "list", "--org", "acme", "--limit", "203")
    assert len(items) == 203 and len({i["id"] for i in items}) == 203
    assert len(listing(env, "invite", "list", "--org", "acme", "--limit", "1000")) == 205


def test_member_list_filters_and_its_json_is_the_apis_list(env: Env, api: Api, bridge: Bridge) -> None:
    ada = api.invite("ada@example.com", role="ADMIN")
    api.invite("bob@example.com")
    make_active(bridge, ada["member_id"])
    assert listing(env, "member", "list", "--org", "acme") == api.get("/members").get_json()["items"]
    active = listing(env, "member", "list", "--org", "acme", "--status", "ACTIVE")
    assert [m["id"] for m in active] == [ada["member_id"]] and active[0]["permissions"]
    assert [m["identifier"] for m in listing(env, "member", "list", "--org", "acme", "--role", "MEMBER")] == [
        "bob@example.com"]
    code, out, _ = invoke(env, "member", "list", "--org", "acme")
    assert code == 0 and "ada@example.com" in out and "ACTIVE" in out and "INVITED" in out


def test_api_key_list_rotate_and_revoke_act_as_the_api_does_and_are_audited_as_the_cli(
        env: Env, api: Api, bridge: Bridge) -> None:
    assert listing(env, "api-key", "list", "--org", "acme") == api.get("/api-keys").get_json()["items"]
    narrow = api.post("/api-keys", {"permissions": ["users:read"], "name": "reader"}).get_json()
    code, out, err = invoke(env, "api-key", "rotate", narrow["id"], "--org", "acme")
    assert code == 0, err
    new_key = out.strip()
    assert new_key.startswith("ibk_") and out.count("ibk_") == 1 and "not shown again" in err
    assert Api(api.client, narrow["key"]).get("/invites").status_code == 401
    assert Api(api.client, new_key).get("/invites").status_code == 200
    keys = listing(env, "api-key", "list", "--org", "acme")
    assert narrow["id"] not in [k["id"] for k in keys]
    assert [k["name"] for k in keys if k["permissions"] == ["users:read"]] == ["reader"]

    rotated = next(k for k in keys if k["name"] == "reader")
    code, out, err = invoke(env, "api-key", "revoke", rotated["id"], "--org", "acme")
    assert code == 0, err
    assert Api(api.client, new_key).get("/invites").status_code == 401
    assert ("api_key.rotated", narrow["id"]) in cli_actions(bridge)
    assert ("api_key.deleted", rotated["id"]) in cli_actions(bridge)


def test_platform_keys_are_listed_and_rotated_with_platform(env: Env, api: Api, bridge: Bridge) -> None:
    make_key(bridge, None)
    keys = listing(env, "api-key", "list", "--platform")
    assert len(keys) == 1 and keys[0]["org"] is None
    code, out, err = invoke(env, "api-key", "rotate", keys[0]["id"], "--platform")
    assert code == 0, err
    assert Api(api.client, out.strip(), org="beta").get("/invites").status_code == 200
    after = listing(env, "api-key", "list", "--platform")
    assert len(after) == 1 and after[0]["id"] != keys[0]["id"]
    # A platform key is not one of the org's keys, and the other way round.
    code, _, err = invoke(env, "api-key", "revoke", keys[0]["id"], "--org", "acme")
    assert code == 1 and "does not exist" in err


@pytest.mark.parametrize("command", ["rotate", "revoke"])
def test_rotating_or_revoking_an_unknown_key_is_a_clear_error(env: Env, api: Api, command: str) -> None:
    before = listing(env, "api-key", "list", "--org", "acme")
    code, out, err = invoke(env, "api-key", command, "no-such-key", "--org", "acme")
    assert code == 1 and out == ""
    assert err.strip() == "Error: API key no-such-key does not exist in acme"
    assert listing(env, "api-key", "list", "--org", "acme") == before


def test_api_key_commands_need_exactly_one_scope(env: Env, api: Api) -> None:
    for args in (["list"], ["list", "--org", "acme", "--platform"], ["rotate", "x"], ["revoke", "x"]):
        code, _, err = invoke(env, "api-key", *args)
        assert code == 2 and "exactly one of --org SLUG or --platform" in err


def test_invite_resend_prints_a_new_link_and_revoke_closes_the_invite(env: Env, api: Api, bridge: Bridge) -> None:
    ada = api.invite("ada@example.com")
    code, out, err = invoke(env, "invite", "resend", ada["id"], "--org", "acme")
    assert code == 0, err
    link = out.strip()
    assert link.startswith("http://127.0.0.1:8080/invite/")
    assert link.rsplit("/", 1)[1] != ada["link"].rsplit("/", 1)[1]
    assert api.get(f"/invites/{ada['id']}").get_json()["send_count"] == 2
    assert api.client.get(ada["link"].replace("https://join.test", "")).status_code != 200
    assert api.client.get(link.replace("http://127.0.0.1:8080", "")).status_code == 200

    code, out, err = invoke(env, "invite", "revoke", ada["id"], "--org", "acme")
    assert code == 0 and "revoked invite" in out, err
    assert api.get(f"/invites/{ada['id']}").get_json()["status"] == "REVOKED"
    invite_actions = [a for a in cli_actions(bridge) if a[0].startswith("invite.")]
    assert invite_actions == [("invite.resent", ada["id"]), ("invite.revoked", ada["id"])]

    code, _, err = invoke(env, "invite", "revoke", ada["id"], "--org", "acme")
    assert code == 1 and "REVOKED" in err and "Traceback" not in err
    code, _, err = invoke(env, "invite", "resend", ada["id"], "--org", "acme")
    assert code == 1 and "REVOKED" in err


@pytest.mark.parametrize(("args", "code", "message"), [
    (["invite", "list", "--org", "ghost"], 1, "organization 'ghost' does not exist"),
    (["member", "list", "--org", "ghost"], 1, "organization 'ghost' does not exist"),
    (["invite", "resend", "nope", "--org", "acme"], 1, "invite nope does not exist in acme"),
    (["invite", "revoke", "nope", "--org", "acme"], 1, "invite nope does not exist in acme"),
    (["invite", "list", "--org", "acme", "--status", "LOST"], 2, "status: must be among"),
    (["member", "list", "--org", "acme", "--status", "GONE"], 2, "status: must be among"),
    (["invite", "list", "--org", "acme", "--limit", "0"], 2, "--limit"),
    (["member", "list"], 2, "--org"),
    (["org", "list", "--limit", "x"], 2, "--limit"),
])
def test_bad_listing_and_action_input_is_one_clear_error(env: Env, api: Api, args: list[str], code: int,
                                                         message: str) -> None:
    got, out, err = invoke(env, *args)
    assert got == code and message in err and "Traceback" not in err
    assert out == ""
