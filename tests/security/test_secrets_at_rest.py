"""Secrets at rest: webhook secrets sealed, private files and dirs, and one shared key for a shared database."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from flask.testing import FlaskClient
from sqlalchemy import update

from idp_bridge.bootstrap import build, create_app, make_worker
from idp_bridge.bridge import Bridge
from idp_bridge.cli import cli
from idp_bridge.models import WebhookEndpoint
from idp_bridge.security import unseal
from idp_bridge.settings import load_settings
from idp_bridge.store.db import transaction
from tests.conftest import PG_ADMIN_URL
from tests.helpers import Api, make_key, make_org
from tests.webhooks.receiver import Receiver


@pytest.fixture(autouse=True)
def local_receivers(settings_overrides: dict[str, Any]) -> None:
    settings_overrides["webhook_allow_networks"] = ["127.0.0.0/8"]


def stored(bridge: Bridge, endpoint_id: str) -> WebhookEndpoint:
    with transaction(bridge.sessions) as session:
        row = session.get(WebhookEndpoint, endpoint_id)
        assert row is not None
        session.expunge(row)
        return row


def deliver_until_accepted(bridge: Bridge, receiver: Receiver, count: int) -> None:
    worker = make_worker(bridge, concurrency=1)
    for _ in range(30):
        worker.run_once(time_limit=10)
        if len(receiver.accepted) >= count:
            return


def test_webhook_secrets_current_and_previous_are_stored_sealed_and_still_sign(
        bridge: Bridge, client: FlaskClient) -> None:
    make_org(bridge, "acme")
    api = Api(client, make_key(bridge))
    receiver = Receiver()
    try:
        created = api.post("/webhook-endpoints", {"url": receiver.url}).get_json()
        rotated = api.post(f"/webhook-endpoints/{created['id']}/rotate-secret").get_json()
        row = stored(bridge, created["id"])
        for issued, at_rest in ((rotated["secret"], row.secret), (created["secret"], row.previous_secret)):
            assert at_rest is not None and issued not in at_rest and not at_rest.startswith("whsec_")
            assert unseal(bridge.settings.secret_key, at_rest) == issued

        receiver.secrets = [created["secret"]]  # a receiver not yet switched over verifies with the old one
        receiver.start()
        api.invite("ada@example.com")
        deliver_until_accepted(bridge, receiver, 1)
        assert len(receiver.accepted) == 1 and receiver.rejected == 0
    finally:
        receiver.stop()


def test_a_plaintext_secret_from_before_sealing_keeps_signing_and_is_sealed_at_the_next_start(
        bridge: Bridge, client: FlaskClient, settings_overrides: dict[str, Any]) -> None:
    make_org(bridge, "acme")
    api = Api(client, make_key(bridge))
    receiver = Receiver()
    legacy = "whsec_" + "TGVnYWN5U2VjcmV0" * 2 + "QUJDREVGR0g="
    try:
        created = api.post("/webhook-endpoints", {"url": receiver.url}).get_json()
        with transaction(bridge.sessions) as session:  # the row as revision 0002 stored it
            session.execute(update(WebhookEndpoint).values(secret=legacy))
        receiver.secrets = [legacy]
        receiver.start()
        api.invite("ada@example.com")
        deliver_until_accepted(bridge, receiver, 1)
        assert len(receiver.accepted) == 1

        env = cli_env(instance_dir=settings_overrides["instance_dir"], database_url=settings_overrides["database_url"],
                      secret_key=bridge.settings.secret_key)
        result = CliRunner().invoke(cli, ["db", "upgrade"], env=env, catch_exceptions=False)
        assert result.exit_code == 0, result.stderr

        at_rest = stored(bridge, created["id"]).secret
        assert legacy not in at_rest and unseal(bridge.settings.secret_key, at_rest) == legacy
        api.invite("bob@example.com")
        deliver_until_accepted(bridge, receiver, 2)
        assert len(receiver.accepted) == 2 and receiver.rejected == 0
    finally:
        receiver.stop()


def cli_env(**variables: str | None) -> dict[str, str | None]:
    """IDP_BRIDGE_* variables for a CLI run, with none of the test runner's own (IDP_BRIDGE_TEST_DB …)."""
    cleared = {name: None for name in os.environ if name.startswith("IDP_BRIDGE_")}
    return {**cleared, **{f"IDP_BRIDGE_{k.upper()}": v for k, v in variables.items()}}


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_instance_dir_the_database_the_key_and_the_outbox_are_private(tmp_path: Path) -> None:
    old = os.umask(0o022)  # a typical umask, under which files would otherwise be world-readable
    try:
        settings = load_settings(overrides={"instance_dir": str(tmp_path / "inst")}, environ={})
        bridge = build(settings)
        try:
            from idp_bridge.migrate import upgrade

            upgrade(bridge.engine)
            make_org(bridge, "acme")
            Api(create_app(bridge=bridge).test_client(), make_key(bridge)).invite("ada@example.com")
            make_worker(bridge, concurrency=1).run_once()  # the file transport writes the invitation
        finally:
            bridge.close()
    finally:
        os.umask(old)

    instance = tmp_path / "inst"
    database = instance / "idp-bridge.sqlite3"
    assert mode(instance) == 0o700
    assert mode(instance / "secret_key") == 0o600
    assert mode(database) == 0o600
    for sidecar in (instance / "idp-bridge.sqlite3-wal", instance / "idp-bridge.sqlite3-shm"):
        if sidecar.exists():
            assert mode(sidecar) & 0o077 == 0, sidecar
    assert mode(settings.mail_dir) == 0o700
    mails = list(settings.mail_dir.glob("*.eml"))
    assert mails and all(mode(m) == 0o600 for m in mails)


@pytest.mark.parametrize("command", [["serve", "--no-worker"], ["worker", "--once"]])
def test_on_a_shared_database_serve_and_worker_refuse_to_start_without_a_secret_key(
        tmp_path: Path, command: list[str]) -> None:
    env = cli_env(instance_dir=str(tmp_path / "inst"),
                  database_url=PG_ADMIN_URL.rsplit("/", 1)[0] + "/never_connected")

    result = CliRunner().invoke(cli, command, env=env, catch_exceptions=False)

    assert result.exit_code == 2
    assert "IDP_BRIDGE_SECRET_KEY" in result.stderr and "secret_key" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "inst" / "secret_key").exists()


def test_on_embedded_sqlite_the_worker_generates_its_key_into_the_instance_dir(tmp_path: Path) -> None:
    env = cli_env(instance_dir=str(tmp_path / "inst"))

    result = CliRunner().invoke(cli, ["worker", "--once"], env=env, catch_exceptions=False)

    assert result.exit_code == 0, result.stderr
    assert len((tmp_path / "inst" / "secret_key").read_text().strip()) >= 32


def test_after_a_key_change_the_next_start_reseals_webhook_secrets_with_the_new_key(
        bridge: Bridge, client: FlaskClient, settings_overrides: dict[str, Any]) -> None:
    make_org(bridge, "acme")
    api = Api(client, make_key(bridge))
    created = api.post("/webhook-endpoints", {"url": "http://127.0.0.1:9/hooks"}).get_json()
    rotated = api.post(f"/webhook-endpoints/{created['id']}/rotate-secret").get_json()
    old_key, new_key = bridge.settings.secret_key, "the-new-secret-key-after-rotation"

    env = cli_env(instance_dir=settings_overrides["instance_dir"], database_url=settings_overrides["database_url"],
                  secret_key=new_key, secret_key_fallbacks=f'["{old_key}"]')
    result = CliRunner().invoke(cli, ["db", "upgrade"], env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.stderr

    row = stored(bridge, created["id"])
    assert row.previous_secret is not None
    assert unseal(new_key, row.secret) == rotated["secret"]  # the old key is no longer needed for them
    assert unseal(new_key, row.previous_secret) == created["secret"]
