"""What each use case needs from the composition root, as narrow protocols.

The composition root's `Bridge` satisfies every one of them structurally (`idp_bridge/bridge.py` proves it to
mypy); a service names the port it uses and never the `Bridge` itself, so its signature says what it reads.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from idp_bridge.domain.providers import Provider
from idp_bridge.mail import MailTransport, Renderer
from idp_bridge.pacing import PaceStore
from idp_bridge.settings import Settings


class Configured(Protocol):
    """The deployment's settings."""

    @property
    def settings(self) -> Settings: ...


class WithProviders(Configured, Protocol):
    """The settings and the configured providers by name."""

    @property
    def providers(self) -> Mapping[str, Provider]: ...

    def provider(self, name: str) -> Provider | None: ...


class WithSessions(Protocol):
    """Transactions of their own, for jobs and the callback's steps."""

    @property
    def sessions(self) -> sessionmaker[Session]: ...


class WithDatabase(WithSessions, Protocol):
    """Sessions, and the engine for bare connections on hot paths."""

    @property
    def engine(self) -> Engine: ...


class TXTLookup(Protocol):
    """DNS TXT records (idp_bridge/dnstxt.py); raises errors.DNSLookupFailed when no server answers."""

    def txt_records(self, name: str) -> list[str]: ...


class Inviting(WithProviders, Protocol):
    """services/invites.py and bulk.py: check and issue invites, build their links."""

    def link(self, token: str) -> str: ...


class Opening(WithProviders, Protocol):
    """services/invitee.py: an invitee passes the invite code and picks a provider."""

    @property
    def secret_keys(self) -> list[str]: ...


class Redeeming(WithProviders, WithDatabase, Protocol):
    """services/redeem.py, callback.py and invitee.py: logins in flight, their callbacks and redemption."""

    def unseal(self, sealed: str) -> str: ...


class Mailing(Inviting, WithSessions, Protocol):
    """core_jobs.py: mail an invitation with the link and code sealed into its job."""

    @property
    def renderer(self) -> Renderer: ...

    @property
    def mail(self) -> MailTransport: ...

    def unseal(self, sealed: str) -> str: ...


class ProvisioningContext(Inviting, WithDatabase, Protocol):
    """provisioning.py: create, bind and undo IdP accounts for invites."""

    @property
    def paces(self) -> PaceStore: ...

    def unseal(self, sealed: str) -> str: ...
