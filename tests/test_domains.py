"""Verified domains: the TXT challenge answered by a DNS server on loopback, one org per verified domain."""

from __future__ import annotations

import json
import socket
import sqlite3
from pathlib import Path

from flask.testing import FlaskClient
from sqlalchemy import delete, select, text, update

from idp_bridge.bootstrap import build, create_app
from idp_bridge.bridge import Bridge
from idp_bridge.models import AuditEvent, OrgDomain
from idp_bridge.settings import load_settings
from idp_bridge.store.db import gate_of, transaction
from idp_bridge.store.sql import is_sqlite
from tests.clirun import cli_env, invoke
from tests.dnsserver import LoopbackDNS
from tests.helpers import Api, make_key, make_org

MANAGE = ["orgs:manage", "users:read", "users:invite"]


def org_api(bridge: Bridge, client: FlaskClient, slug: str) -> Api:
    make_org(bridge, slug)
    return Api(client, make_key(bridge, slug, MANAGE), org=slug)


def add(api: Api, domain: str) -> dict[str, object]:
    resp = api.post("/domains", {"domain": domain})
    assert resp.status_code == 201, resp.get_json()
    body: dict[str, object] = resp.get_json()
    return body


def test_a_new_domain_is_pending_with_a_dns_txt_challenge(bridge: Bridge, client: FlaskClient) -> None:
    api = org_api(bridge, client, "acme")
    body = add(api, "Acme.Example")
    assert body["domain"] == "acme.example"
    assert body["status"] == "pending"
    challenge = body["challenge"]
    assert isinstance(challenge, dict)
    assert challenge["type"] == "dns-txt"
    assert challenge["name"] == "_idp-bridge-challenge.acme.example"
    assert str(challenge["value"]).startswith("idp-bridge-verification=")
    listed = api.get("/domains").get_json()["items"]
    assert [d["id"] for d in listed] == [body["id"]]
    assert api.get(f"/domains/{body['id']}").get_json() == body


def test_domains_are_stored_as_their_idna_a_label(bridge: Bridge, client: FlaskClient) -> None:
    api = org_api(bridge, client, "acme")
    assert add(api, "Bücher.Example")["domain"] == "xn--bcher-kva.example"
    again = api.post("/domains", {"domain": "xn--bcher-kva.example"})
    assert again.status_code == 409


def test_what_is_not_a_domain_is_refused_with_a_field_error(bridge: Bridge, client: FlaskClient) -> None:
    api = org_api(bridge, client, "acme")
    for bad in ("localhost", "10.0.0.1", "ann@acme.example", "*.acme.example", "a..example", "-x-.example"):
        resp = api.post("/domains", {"domain": bad})
        assert resp.status_code == 422, bad
        assert resp.mimetype == "application/problem+json"
        assert "domain" in resp.get_json()["errors"]
    assert api.get("/domains").get_json()["items"] == []


def test_verify_succeeds_when_the_txt_record_holds_the_value(bridge: Bridge, client: FlaskClient,
                                                             dns_server: LoopbackDNS) -> None:
    api = org_api(bridge, client, "acme")
    body = add(api, "acme.example")
    challenge = body["challenge"]
    assert isinstance(challenge, dict)
    dns_server.txt[challenge["name"]] = ["v=spf1 -all", challenge["value"]]
    resp = api.post(f"/domains/{body['id']}/verify")
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json()["status"] == "verified"
    assert resp.get_json()["verified_at"] is not None
    assert dns_server.queries[challenge["name"]] >= 1
    with transaction(bridge.sessions) as session:
        actions = list(session.scalars(select(AuditEvent.action).where(AuditEvent.action.like("domain.%"))))
    assert sorted(actions) == ["domain.added", "domain.verified"]


def _open_transactions(bridge: Bridge) -> list[str]:
    """What holds a transaction on the bridge's database right now, seen from outside the app's connections."""
    if is_sqlite(bridge.engine):
        gate = gate_of(bridge.engine)
        held = ["the write gate"] if gate is not None and gate.locked() else []
        probe = sqlite3.connect(str(bridge.engine.url.database), timeout=0, isolation_level=None)
        try:
            probe.execute("BEGIN IMMEDIATE")
            probe.execute("ROLLBACK")
        except sqlite3.OperationalError as exc:
            held.append(f"a SQLite writer ({exc})")
        finally:
            probe.close()
        return held
    with bridge.engine.connect() as conn:
        return list(conn.scalars(text(
            "SELECT state FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
            " AND state LIKE 'idle in transaction%'")))


def test_verify_looks_the_record_up_with_no_transaction_open(bridge: Bridge, client: FlaskClient,
                                                             dns_server: LoopbackDNS) -> None:
    api = org_api(bridge, client, "acme")
    body = add(api, "acme.example")
    challenge = body["challenge"]
    assert isinstance(challenge, dict)
    dns_server.txt[str(challenge["name"])] = [str(challenge["value"])]
    seen: list[list[str]] = []
    dns_server.on_txt = lambda _name: seen.append(_open_transactions(bridge))
    resp = api.post(f"/domains/{body['id']}/verify")
    assert resp.status_code == 200, resp.get_json()
    assert seen == [[]]
    assert api.get(f"/domains/{body['id']}").get_json()["status"] == "verified"


def test_a_domain_deleted_during_the_lookup_is_not_found_and_nothing_is_written(
        bridge: Bridge, client: FlaskClient, dns_server: LoopbackDNS) -> None:
    api = org_api(bridge, client, "acme")
    body = add(api, "acme.example")
    challenge = body["challenge"]
    assert isinstance(challenge, dict)
    dns_server.txt[str(challenge["name"])] = [str(challenge["value"])]

    def delete_meanwhile(_name: str) -> None:
        with transaction(bridge.sessions) as session:
            session.execute(delete(OrgDomain).where(OrgDomain.id == body["id"]))

    dns_server.on_txt = delete_meanwhile
    resp = api.post(f"/domains/{body['id']}/verify")
    assert resp.status_code == 404
    with transaction(bridge.sessions) as session:
        assert session.scalar(select(OrgDomain.id)) is None
        assert session.scalar(select(AuditEvent.id).where(AuditEvent.action == "domain.verified")) is None


def test_a_domain_another_org_verified_during_the_lookup_stays_theirs(
        bridge: Bridge, client: FlaskClient, dns_server: LoopbackDNS) -> None:
    first, second = org_api(bridge, client, "acme"), org_api(bridge, client, "rival")
    mine, theirs = add(first, "acme.example"), add(second, "acme.example")
    for body in (mine, theirs):
        challenge = body["challenge"]
        assert isinstance(challenge, dict)
        dns_server.txt.setdefault(str(challenge["name"]), []).append(str(challenge["value"]))

    def rival_verifies_meanwhile(_name: str) -> None:
        dns_server.on_txt = None
        with transaction(bridge.sessions) as session:
            session.execute(update(OrgDomain).where(OrgDomain.id == theirs["id"]).values(status="verified"))

    dns_server.on_txt = rival_verifies_meanwhile
    resp = first.post(f"/domains/{mine['id']}/verify")
    assert resp.status_code == 409
    assert "another organization" in resp.get_json()["detail"]
    assert first.get(f"/domains/{mine['id']}").get_json()["status"] == "pending"


def test_verify_fails_naming_the_wrong_values_found(bridge: Bridge, client: FlaskClient,
                                                    dns_server: LoopbackDNS) -> None:
    api = org_api(bridge, client, "acme")
    body = add(api, "acme.example")
    dns_server.txt["_idp-bridge-challenge.acme.example"] = ["idp-bridge-verification=someone-elses"]
    resp = api.post(f"/domains/{body['id']}/verify")
    assert resp.status_code == 409
    problem = resp.get_json()
    assert "idp-bridge-verification=someone-elses" in problem["detail"]
    assert problem["found"] == ["idp-bridge-verification=someone-elses"]
    assert api.get(f"/domains/{body['id']}").get_json()["status"] == "pending"


def test_verify_fails_saying_none_was_found_without_a_record(bridge: Bridge, client: FlaskClient) -> None:
    api = org_api(bridge, client, "acme")
    body = add(api, "acme.example")
    resp = api.post(f"/domains/{body['id']}/verify")
    assert resp.status_code == 409
    assert resp.get_json()["detail"].endswith("values found: none")
    assert resp.get_json()["found"] == []


def test_a_record_on_the_parent_does_not_verify_a_subdomain(bridge: Bridge, client: FlaskClient,
                                                            dns_server: LoopbackDNS) -> None:
    api = org_api(bridge, client, "acme")
    parent, sub = add(api, "acme.example"), add(api, "eu.acme.example")
    challenge = sub["challenge"]
    assert isinstance(challenge, dict)
    # The subdomain's value published at the parent's challenge name proves nothing about the subdomain.
    dns_server.txt["_idp-bridge-challenge.acme.example"] = [str(challenge["value"])]
    assert api.post(f"/domains/{sub['id']}/verify").status_code == 409
    parent_challenge = parent["challenge"]
    assert isinstance(parent_challenge, dict)
    dns_server.txt["_idp-bridge-challenge.acme.example"] = [str(parent_challenge["value"])]
    assert api.post(f"/domains/{parent['id']}/verify").status_code == 200
    assert api.get(f"/domains/{sub['id']}").get_json()["status"] == "pending"


def test_a_domain_another_org_verified_is_refused(bridge: Bridge, client: FlaskClient,
                                                  dns_server: LoopbackDNS) -> None:
    first, second = org_api(bridge, client, "acme"), org_api(bridge, client, "rival")
    mine, theirs = add(first, "acme.example"), add(second, "acme.example")
    for body in (mine, theirs):
        challenge = body["challenge"]
        assert isinstance(challenge, dict)
        dns_server.txt.setdefault(str(challenge["name"]), []).append(str(challenge["value"]))
    assert first.post(f"/domains/{mine['id']}/verify").status_code == 200
    resp = second.post(f"/domains/{theirs['id']}/verify")
    assert resp.status_code == 409
    assert "another organization" in resp.get_json()["detail"]
    with transaction(bridge.sessions) as session:
        statuses = sorted(session.scalars(select(OrgDomain.status).where(OrgDomain.domain == "acme.example")))
    assert statuses == ["pending", "verified"]


def test_a_deleted_domain_is_gone_and_frees_the_name(bridge: Bridge, client: FlaskClient,
                                                     dns_server: LoopbackDNS) -> None:
    api = org_api(bridge, client, "acme")
    body = add(api, "acme.example")
    assert api.delete(f"/domains/{body['id']}").status_code == 204
    assert api.get(f"/domains/{body['id']}").status_code == 404
    assert api.delete(f"/domains/{body['id']}").status_code == 404
    add(api, "acme.example")


def test_domains_need_orgs_manage(bridge: Bridge, client: FlaskClient) -> None:
    make_org(bridge, "acme")
    reader = Api(client, make_key(bridge, "acme", ["users:read", "users:invite"]))
    assert reader.post("/domains", {"domain": "acme.example"}).status_code == 403
    assert reader.get("/domains").status_code == 403


def test_domain_join_is_read_and_patched_with_the_org(bridge: Bridge, client: FlaskClient) -> None:
    api = org_api(bridge, client, "acme")
    assert api.get("").get_json()["domain_join"] == "off"
    assert api.patch("", {"domain_join": "request"}).get_json()["domain_join"] == "request"
    resp = api.patch("", {"domain_join": "sometimes"})
    assert resp.status_code == 422
    assert api.get("").get_json()["domain_join"] == "request"


def test_the_cli_adds_verifies_and_lists_domains_as_the_api_does(
        bridge: Bridge, client: FlaskClient, dns_server: LoopbackDNS, tmp_path: Path, database_url: str) -> None:
    api = org_api(bridge, client, "acme")
    env = {**cli_env(tmp_path, database_url), "IDP_BRIDGE_DNS_NAMESERVERS": f'["{dns_server.address}"]'}

    code, out, err = invoke(env, "domain", "add", "Acme.Example", "--org", "acme")
    assert code == 0, err
    name, kind, value = out.split()
    assert (name, kind) == ("_idp-bridge-challenge.acme.example", "TXT")

    code, _, err = invoke(env, "domain", "verify", "acme.example", "--org", "acme")
    assert code == 1
    assert err.startswith("Error: ") and "values found: none" in err

    dns_server.txt[name] = [value]
    code, out, err = invoke(env, "domain", "verify", "acme.example", "--org", "acme")
    assert code == 0, err
    assert out.strip() == "domain acme.example verified"

    code, out, err = invoke(env, "domain", "list", "--org", "acme", "--json")
    assert code == 0, err
    assert json.loads(out) == api.get("/domains").get_json()["items"]
    with transaction(bridge.sessions) as session:
        actors = set(session.scalars(select(AuditEvent.actor).where(AuditEvent.action.like("domain.%"))))
    assert actors == {"cli"}


def test_the_cli_refuses_what_is_not_a_domain_with_exit_2(bridge: Bridge, client: FlaskClient, tmp_path: Path,
                                                          database_url: str) -> None:
    org_api(bridge, client, "acme")
    code, out, err = invoke(cli_env(tmp_path, database_url), "domain", "add", "10.0.0.1", "--org", "acme")
    assert (code, out) == (2, "")
    assert "domain: must be a domain name, not an IP address" in err


def test_a_dns_server_that_does_not_answer_leaves_the_domain_pending_with_a_clear_409(
        settings_overrides: dict[str, object]) -> None:
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    try:
        host, port = silent.getsockname()
        settings_overrides["dns_nameservers"] = [f"{host}:{port}"]
        bridge = build(load_settings(overrides=settings_overrides, environ={}))
        try:
            client = create_app(bridge=bridge).test_client()
            api = org_api(bridge, client, "acme")
            body = add(api, "acme.example")
            resp = api.post(f"/domains/{body['id']}/verify")
        finally:
            bridge.close()
    finally:
        silent.close()
    assert resp.status_code == 409
    problem = resp.get_json()
    assert "DNS lookup of _idp-bridge-challenge.acme.example failed" in problem["detail"]
    assert problem["detail"].endswith("values found: none")
