"""Test helpers that speak to the API the way a host platform does."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask.testing import FlaskClient

from idp_bridge import audit
from idp_bridge.bridge import Bridge
from idp_bridge.inputs import OrgCreate
from idp_bridge.permissions import ALL_PERMISSIONS
from idp_bridge.services import api_keys, orgs
from idp_bridge.store.db import transaction

ORG_PERMISSIONS = sorted(ALL_PERMISSIONS - {"orgs:manage"})


def make_org(bridge: Bridge, slug: str = "acme", **settings: Any) -> str:
    """Create an org directly through the service layer; returns its id."""
    with transaction(bridge.sessions) as session:
        org = orgs.create(session, bridge, audit.CLI, OrgCreate(slug=slug, name=slug.title(), **settings))
        return org.id


def make_key(bridge: Bridge, org: str | None = "acme", permissions: list[str] | None = None) -> str:
    """Issue an API key (org-scoped, or platform-wide with org=None); returns the secret."""
    with transaction(bridge.sessions) as session:
        scope = orgs.get(session, org) if org else None
        _, secret = api_keys.create(session, audit.CLI, org=scope,
                                    permissions=permissions or (ORG_PERMISSIONS if org else sorted(ALL_PERMISSIONS)))
        return secret


@dataclass
class Api:
    """A thin authenticated client for one org."""

    client: FlaskClient
    key: str
    org: str = "acme"

    def headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}", **(extra or {})}

    def url(self, path: str) -> str:
        return f"/api/v1/orgs/{self.org}{path}"

    def get(self, path: str, **kw: Any) -> Any:
        return self.client.get(self.url(path), headers=self.headers(kw.pop("headers", None)), **kw)

    def post(self, path: str, json: Any = None, **kw: Any) -> Any:
        return self.client.post(self.url(path), json=json, headers=self.headers(kw.pop("headers", None)), **kw)

    def patch(self, path: str, json: Any = None, **kw: Any) -> Any:
        return self.client.patch(self.url(path), json=json, headers=self.headers(kw.pop("headers", None)), **kw)

    def delete(self, path: str, **kw: Any) -> Any:
        return self.client.delete(self.url(path), headers=self.headers(kw.pop("headers", None)), **kw)

    def invite(self, identifier: str, **fields: Any) -> dict[str, Any]:
        resp = self.post("/invites", {"identifier": identifier, **fields})
        assert resp.status_code == 201, resp.get_json()
        body: dict[str, Any] = resp.get_json()
        return body


def metric(client: FlaskClient, name: str, **labels: str) -> float:
    """The sum of the samples called `name` on /metrics whose labels include `labels` (0 when there is none)."""
    from prometheus_client.parser import text_string_to_metric_families

    resp = client.get("/metrics")
    assert resp.status_code == 200
    total = 0.0
    for family in text_string_to_metric_families(resp.get_data(as_text=True)):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total
