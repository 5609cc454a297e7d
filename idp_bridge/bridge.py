"""The composition root's product: settings, database, providers and mail, wired once."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from idp_bridge.destinations import Destinations
from idp_bridge.idp import Provider, build_providers
from idp_bridge.mail import MailTransport, Renderer, make_transport
from idp_bridge.security import unseal
from idp_bridge.settings import Settings, ensure_instance
from idp_bridge.store.db import make_engine, make_session_factory
from providers.jwks import JWKSCache


@dataclass
class Bridge:
    """Everything services and handlers need, built from settings in one place."""

    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    providers: dict[str, Provider]
    mail: MailTransport
    renderer: Renderer = field(default_factory=Renderer)
    extras: dict[str, Any] = field(default_factory=dict)
    # One JWKS cache for every consumer of signing keys (OIDC login, Keycloak bearer webhooks, Google RISC),
    # so an unknown kid refetches a JWKS URL at most once per window whoever asks.
    jwks: JWKSCache = field(default_factory=JWKSCache)

    def __post_init__(self) -> None:
        for provider in self.providers.values():
            share = getattr(provider, "use_key_cache", None)
            if share is not None:
                share(self.jwks)

    @cached_property
    def destinations(self) -> Destinations:
        """Where outbound webhooks may connect (webhook_allow_networks, dns_nameservers), built once."""
        return Destinations.from_settings(self.settings)

    def provider(self, name: str) -> Provider | None:
        return self.providers.get(name)

    @property
    def secret_keys(self) -> list[str]:
        """The current secret key, then the older ones that still open what they sealed."""
        return [self.settings.secret_key, *self.settings.secret_key_fallbacks]

    def unseal(self, sealed: str) -> str:
        """Open a value sealed with the current key or any of secret_key_fallbacks."""
        return unseal(self.settings.secret_key, sealed, self.settings.secret_key_fallbacks)

    def link(self, token: str) -> str:
        """The invite link; always built from public_url, never from a request's Host header."""
        return f"{self.settings.public_url}/invite/{token}"

    def close(self) -> None:
        self.engine.dispose()


def build(settings: Settings, *, mail: MailTransport | None = None,
          providers: dict[str, Provider] | None = None, jwks: JWKSCache | None = None) -> Bridge:
    """Wire a Bridge from settings; configuration errors surface here, before serving."""
    ensure_instance(settings)
    engine = make_engine(settings.database_url)
    return Bridge(
        settings=settings,
        engine=engine,
        sessions=make_session_factory(engine),
        providers=providers if providers is not None else build_providers(
            settings.providers, public_url=settings.public_url),
        mail=mail or make_transport(settings),
        jwks=jwks or JWKSCache(),
    )
