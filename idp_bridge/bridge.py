"""What the composition root hands the services, jobs and faces: settings, database, providers and mail."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from idp_bridge.destinations import Destinations
from idp_bridge.dnstxt import TXTResolver
from idp_bridge.domain.providers import Provider
from idp_bridge.mail import MailTransport, Renderer
from idp_bridge.pacing import PaceStore
from idp_bridge.security import unseal
from idp_bridge.services import ports
from idp_bridge.settings import Settings


@dataclass
class Bridge:
    """Everything services and handlers need, built from settings by `idp_bridge.bootstrap`."""

    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    providers: dict[str, Provider]
    mail: MailTransport
    renderer: Renderer = field(default_factory=Renderer)

    @cached_property
    def destinations(self) -> Destinations:
        """Where outbound webhooks may connect (webhook_allow_networks, dns_nameservers), built once."""
        return Destinations.from_settings(self.settings)

    @cached_property
    def paces(self) -> PaceStore:
        """Where the deployment's shared paces live (the store rate_limit_storage_url names), opened once."""
        from idp_bridge.pacing import open_paces

        return open_paces(self.settings.rate_limit_storage_url, self.engine)

    @cached_property
    def txt_lookup(self) -> TXTResolver:
        """TXT records for domain verification, through dns_nameservers; built once."""
        return TXTResolver(self.settings.dns_nameservers)

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



def _satisfies_every_port(bridge: Bridge) -> tuple[ports.Inviting, ports.Opening, ports.Redeeming, ports.Mailing,
                                                   ports.ProvisioningContext]:
    """Never called: mypy checks here that a Bridge is each port the services and jobs name."""
    return bridge, bridge, bridge, bridge, bridge
