"""Every write waits its turn: a refused request's audit write, and any write, never fails on a busy database."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select, text

from idp_bridge.bridge import Bridge
from idp_bridge.models import AuditEvent
from idp_bridge.store.db import WriteInReadTransaction, read_only, transaction, writing
from idp_bridge.store.sql import is_sqlite
from tests.helpers import make_key, make_org
from tests.writers import concurrent_writer

REFUSED_GETS = 60


def denied_count(bridge: Bridge) -> int:
    with transaction(bridge.sessions) as session:
        return int(session.scalar(select(func.count()).select_from(AuditEvent)
                                  .where(AuditEvent.action == "auth.denied")) or 0)


def test_refused_gets_are_audited_and_answered_403_while_another_connection_keeps_writing(
        bridge: Bridge, client: FlaskClient, database_url: str) -> None:
    make_org(bridge)
    key = make_key(bridge, permissions=["users:invite"])  # no users:read: listing members is refused
    headers = {"Authorization": f"Bearer {key}"}
    with concurrent_writer(database_url) as hammer:
        statuses = [client.get("/api/v1/orgs/acme/members", headers=headers).status_code
                    for _ in range(REFUSED_GETS)]
    assert not hammer.errors and hammer.commits > 0
    assert statuses == [403] * REFUSED_GETS
    assert denied_count(bridge) == REFUSED_GETS


def test_a_write_inside_a_transaction_declared_read_only_fails_at_once_on_sqlite(bridge: Bridge) -> None:
    if not is_sqlite(bridge.engine):
        pytest.skip("PostgreSQL has no lock upgrade to fail; its readers may write")
    make_org(bridge)
    with pytest.raises(WriteInReadTransaction), read_only(), transaction(bridge.sessions) as session:
        session.execute(text("UPDATE organizations SET name = 'Renamed' WHERE slug = 'acme'"))
    with read_only(), writing(), transaction(bridge.sessions) as session:
        session.execute(text("UPDATE organizations SET name = 'Renamed' WHERE slug = 'acme'"))
    with read_only(), transaction(bridge.sessions) as session:
        assert session.scalar(text("SELECT name FROM organizations WHERE slug = 'acme'")) == "Renamed"
