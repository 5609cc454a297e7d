"""A provider's `ca_file` (a private CA) is what its sign-in trusts too: discovery, token and key calls, not only
its admin APIs."""

from __future__ import annotations

from typing import Any

import pytest

from idp_bridge.domain.providers import LoginFailed
from providers.entra import EntraProvider
from providers.keycloak import KeycloakProvider
from tests.fakes.http import FakeRequest, FakeResponse, serve

TENANT = "3f2a6b1e-7c44-4d7a-9a51-0c3e5b9d2f10"
DISCOVERY = "/.well-known/openid-configuration"


def discovery(request: FakeRequest) -> FakeResponse:
    """A discovery document naming the issuer it was asked for."""
    if not request.path.endswith(DISCOVERY):
        return FakeResponse.empty(404)
    issuer = request.root + request.path.removesuffix(DISCOVERY)
    return FakeResponse.json(200, {"issuer": issuer, "authorization_endpoint": f"{issuer}/authorize",
                                   "token_endpoint": f"{issuer}/token", "jwks_uri": f"{issuer}/keys"})


def entra(url: str, **options: Any) -> EntraProvider:
    return EntraProvider.from_config("entra", {"client_id": "c", "client_secret": "s", "tenant": TENANT,
                                               "authority": url, **options}, public_url="http://127.0.0.1:9")


def keycloak(url: str, **options: Any) -> KeycloakProvider:
    return KeycloakProvider.from_config("keycloak", {"client_id": "c", "client_secret": "s", "server_url": url,
                                                     "realm": "acme", **options}, public_url="http://127.0.0.1:9")


@pytest.mark.parametrize("build", [entra, keycloak], ids=["entra", "keycloak"])
def test_sign_in_trusts_the_providers_ca_file_and_nothing_else_without_it(
        monkeypatch: pytest.MonkeyPatch, build: Any) -> None:
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    with serve(discovery, tls=True) as url:
        assert url.ca_file is not None
        trusting = build(str(url), ca_file=url.ca_file)
        assert trusting.oidc.metadata()["token_endpoint"] == f"{trusting.issuer}/token"

        with pytest.raises(LoginFailed) as refused:
            build(str(url)).oidc.metadata()
        assert refused.value.reason == "discovery_failed"
        assert "SSLError" in refused.value.detail


def test_the_providers_ca_file_wins_over_the_environments_bundle(monkeypatch: pytest.MonkeyPatch) -> None:
    with serve(discovery, tls=True) as url, serve(discovery, tls=True) as other:
        assert url.ca_file is not None and other.ca_file is not None
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", other.ca_file)
        assert entra(str(url), ca_file=url.ca_file).oidc.metadata()["issuer"] == f"{url}/{TENANT}/v2.0"
        # Without its own, the environment's bundle still applies (as before).
        assert entra(str(other)).oidc.metadata()["issuer"] == f"{other}/{TENANT}/v2.0"
