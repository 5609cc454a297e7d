"""Fixtures wiring the fakes to `responses` and to the real client libraries."""

from __future__ import annotations

from collections.abc import Iterator

import msal
import pytest
import responses
from keycloak import KeycloakAdmin, KeycloakOpenIDConnection

from .keycloak import FakeKeycloak
from .microsoft import FakeMicrosoft


@pytest.fixture
def rsps() -> Iterator[responses.RequestsMock]:
    """A RequestsMock that refuses any request no fake answers."""
    # Not asserting all registrations fired: a fake registers a catch-all per root.
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


@pytest.fixture
def keycloak(rsps: responses.RequestsMock) -> FakeKeycloak:
    """A fake realm `acme` at https://kc.test, answering through `responses`."""
    fake = FakeKeycloak(base_url="https://kc.test", realm="acme", client_id="idp-bridge", client_secret="s3cret")
    fake.install(rsps)
    return fake


@pytest.fixture
def kc_admin(keycloak: FakeKeycloak) -> KeycloakAdmin:
    """python-keycloak's admin client, authenticating as the realm's service account."""
    connection = KeycloakOpenIDConnection(
        server_url=keycloak.base_url,
        realm_name=keycloak.realm,
        client_id=keycloak.client_id,
        client_secret_key=keycloak.client_secret,
        timeout=5,
    )
    return KeycloakAdmin(connection=connection)


@pytest.fixture
def microsoft(rsps: responses.RequestsMock) -> FakeMicrosoft:
    """A fake Entra tenant plus Graph, answering through `responses`."""
    fake = FakeMicrosoft()
    fake.install(rsps)
    return fake


@pytest.fixture
def msal_app(microsoft: FakeMicrosoft) -> msal.ConfidentialClientApplication:
    """msal configured exactly as the entra provider does: tenant authority, client secret."""
    return msal.ConfidentialClientApplication(
        microsoft.client_id, authority=microsoft.authority, client_credential=microsoft.client_secret
    )
