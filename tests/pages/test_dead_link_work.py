"""Dead invite links cost the same whatever killed them: the same SQL, the same template, the same bytes.

Timing is never measured here (bench/link_timing.py prints it); the work behind it is compared instead.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask, template_rendered
from flask.testing import FlaskClient
from sqlalchemy import event

from idp_bridge.bridge import Bridge
from idp_bridge.core_jobs import sweep_expired
from idp_bridge.models import Invite, utcnow
from idp_bridge.store.db import transaction
from tests.helpers import Api
from tests.pages.conftest import OPs, token_of
from tests.pages.test_redeem_rules import ALICE, login

ROUTES = ["/invite/{token}", "/invite/{token}/login"]
# Links that must be indistinguishable from outside; "superseded" and "accepted" have pages of their own
# (SPEC §6), yet are looked up with the very same work.
INVALID = ["expired", "expired and swept", "revoked", "unknown", "tampered", "too long", "superseded and revoked"]
OWN_PAGE = {"superseded": "pages/superseded.html", "accepted": "pages/used.html"}


@dataclass(frozen=True)
class Work:
    """What serving one request took: the SQL sent, the templates rendered, and the answer."""

    statements: tuple[str, ...]
    templates: tuple[tuple[str, int], ...]
    status: int
    body: bytes


@contextmanager
def watching(bridge: Bridge, app: Flask) -> Iterator[tuple[list[str], list[tuple[str, int]]]]:
    statements: list[str] = []
    templates: list[tuple[str, int]] = []

    def on_sql(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    def on_render(_app: Flask, template: Any, context: dict[str, Any], **_kw: Any) -> None:
        templates.append((str(template.name), len(context)))

    event.listen(bridge.engine, "before_cursor_execute", on_sql)
    template_rendered.connect(on_render, app)
    try:
        yield statements, templates
    finally:
        template_rendered.disconnect(on_render, app)
        event.remove(bridge.engine, "before_cursor_execute", on_sql)


def work(bridge: Bridge, client: FlaskClient, url: str) -> Work:
    app = client.application
    with watching(bridge, app) as (statements, templates):
        resp = client.get(url)
    return Work(tuple(statements), tuple(templates), resp.status_code, resp.get_data())


def tamper(token: str) -> str:
    last = "A" if token[-1] != "A" else "B"
    return token[:-1] + last


def expire_now(bridge: Bridge, invite_id: str) -> None:
    with transaction(bridge.sessions) as session:
        row = session.get(Invite, invite_id)
        assert row is not None
        row.expires_at = utcnow() - timedelta(seconds=1)


@pytest.fixture
def links(api: Api, ops: OPs, bridge: Bridge, client: FlaskClient) -> dict[str, str]:
    """A token of every kind of dead link, and of the two with pages of their own."""
    expired, swept, revoked, replaced, accepted, withdrawn = (
        api.invite(f"{name}@example.com", provider="oidc")
        for name in ("expired", "swept", "revoked", "replaced", "alice", "withdrawn"))
    # `swept` is marked EXPIRED by the sweeper; `expired` passes its expiry only afterwards, so it is still
    # PENDING in the database, as it is until the sweeper next runs.
    expire_now(bridge, swept["id"])
    sweep_expired(bridge)
    expire_now(bridge, expired["id"])
    api.post(f"/invites/{revoked['id']}/revoke")
    api.post(f"/invites/{replaced['id']}/resend")
    api.post(f"/invites/{withdrawn['id']}/resend")
    api.post(f"/invites/{withdrawn['id']}/revoke")
    assert login(client, ops.oidc, accepted["link"], "oidc", ALICE).status_code == 303
    return {
        "expired": token_of(expired["link"]),
        "expired and swept": token_of(swept["link"]),
        "revoked": token_of(revoked["link"]),
        "unknown": secrets.token_urlsafe(32),
        "tampered": tamper(token_of(api.invite("fresh@example.com")["link"])),
        "too long": secrets.token_urlsafe(300),
        "superseded and revoked": token_of(withdrawn["link"]),
        "superseded": token_of(replaced["link"]),
        "accepted": token_of(accepted["link"]),
    }


@pytest.mark.parametrize("route", ROUTES)
def test_every_dead_link_sends_the_same_sql_renders_the_same_page_and_answers_the_same_bytes(
        links: dict[str, str], bridge: Bridge, client: FlaskClient, route: str) -> None:
    seen = {kind: work(bridge, client, route.format(token=token)) for kind, token in links.items()}

    reference = seen["unknown"]
    assert reference.statements and [name for name, _ in reference.templates] == ["pages/invalid.html"]
    assert {kind: w.statements for kind, w in seen.items()} == {kind: reference.statements for kind in seen}
    assert {kind: (w.templates, w.status, w.body) for kind, w in seen.items() if kind in INVALID} == {
        kind: (reference.templates, 404, reference.body) for kind in INVALID}
    for kind, template in OWN_PAGE.items():
        assert [name for name, _ in seen[kind].templates] == [template] and seen[kind].status == 410, kind


def test_an_open_link_is_looked_up_with_the_same_statement_before_its_page_is_built(
        links: dict[str, str], api: Api, bridge: Bridge, client: FlaskClient) -> None:
    dead = work(bridge, client, f"/invite/{links['unknown']}")
    open_link = work(bridge, client, f"/invite/{token_of(api.invite('new@example.com')['link'])}")

    lookup = [s for s in dead.statements if "invite_links" in s]
    assert len(lookup) == 1 and lookup[0] in open_link.statements
    assert open_link.status == 200
