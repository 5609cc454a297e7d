"""Static proof, checked by mypy, that each built-in provider implements the core's protocols.

Nothing here runs: a provider whose methods drift from a protocol fails `mypy providers` at the line naming it.
"""

from __future__ import annotations

from idp_bridge.domain.providers import (
    ChangeNotificationSource,
    OrganizationMembership,
    Provider,
    Provisioner,
    RealmEventSource,
    SecurityEventSource,
)
from idp_bridge.plugins import ProviderType
from providers.entra import EntraProvider
from providers.google import GoogleProvider
from providers.keycloak import KeycloakProvider
from providers.oidc import OIDCProvider

PROVIDER_TYPES: tuple[ProviderType, ...] = (KeycloakProvider, GoogleProvider, EntraProvider, OIDCProvider)


def _keycloak(p: KeycloakProvider) -> tuple[Provider, Provisioner, RealmEventSource, OrganizationMembership]:
    return p, p, p, p


def _entra(p: EntraProvider) -> tuple[Provider, Provisioner, ChangeNotificationSource]:
    return p, p, p


def _google(p: GoogleProvider) -> tuple[Provider, SecurityEventSource]:
    return p, p


def _oidc(p: OIDCProvider) -> Provider:
    return p
