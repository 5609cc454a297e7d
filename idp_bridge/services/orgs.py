"""Organizations: create, read, change settings, and the row lock that serializes seat changes."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from idp_bridge import audit
from idp_bridge.audit import Actor
from idp_bridge.errors import AlreadyExists, NotFound, ValidationFailed, lazy_gettext
from idp_bridge.inputs import OrgCreate, OrgUpdate
from idp_bridge.models import Organization
from idp_bridge.services.ports import WithProviders
from idp_bridge.settings import Settings
from idp_bridge.store.sql import lock_rows


def get(session: Session, slug: str) -> Organization:
    """The organization with this slug, or NotFound."""
    org = session.scalar(select(Organization).where(Organization.slug == slug))
    if org is None:
        raise NotFound(lazy_gettext("organization %(slug)r does not exist", slug=slug))
    return org


def list_all(session: Session, *, limit: int) -> list[Organization]:
    """Organizations by slug, at most `limit` of them."""
    return list(session.scalars(select(Organization).order_by(Organization.slug).limit(limit)))


def lock(session: Session, org: Organization) -> Organization:
    """Hold the org row until commit, so seat counts and invite checks cannot interleave.

    PostgreSQL takes a row lock; SQLite write transactions already run one at a time (the write gate).
    """
    if lock_rows(session, select(Organization.id).where(Organization.id == org.id)):
        session.refresh(org)
    return org


def redirect_allowed(settings: Settings, url: str) -> bool:
    """Whether url is an absolute http(s) URL under one of the configured allowlist prefixes."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.username or parts.password:
        return False
    for allowed in settings.redirect_allowlist:
        allowed_parts = urlsplit(allowed)
        same_origin = (parts.scheme, parts.netloc.lower()) == (allowed_parts.scheme, allowed_parts.netloc.lower())
        if same_origin and parts.path.startswith(allowed_parts.path or "/"):
            return True
    return False


def _check_settings(deps: WithProviders, values: dict[str, Any]) -> None:
    errors: dict[str, list[str]] = {}
    providers = values.get("allowed_providers")
    if providers is not None:
        unknown = [p for p in providers if p not in deps.providers]
        if unknown:
            configured = ", ".join(sorted(deps.providers)) or "none"
            errors["allowed_providers"] = [lazy_gettext("unknown provider %(unknown)s (configured: %(configured)s)",
                                                        unknown=", ".join(unknown), configured=configured)]
    url = values.get("redirect_url")
    if url and not redirect_allowed(deps.settings, url):
        errors["redirect_url"] = [lazy_gettext("is not on the configured redirect allowlist (redirect_allowlist)")]
    if values.get("keycloak_organization") and not any(
            p.organizations() is not None for p in deps.providers.values()):
        errors["keycloak_organization"] = [lazy_gettext("no configured provider has Keycloak Organizations turned "
                                                        "on (organizations = true under [providers.NAME] of type "
                                                        "keycloak)")]
    if errors:
        raise ValidationFailed(errors)


def create(session: Session, deps: WithProviders, actor: Actor, data: OrgCreate) -> Organization:
    """Create an organization; the slug must be new."""
    values = data.model_dump()
    _check_settings(deps, values)
    if session.scalar(select(Organization.id).where(Organization.slug == data.slug)):
        raise AlreadyExists(lazy_gettext("organization %(slug)r already exists", slug=data.slug))
    org = Organization(**values)
    session.add(org)
    try:
        session.flush()
    except IntegrityError as exc:
        raise AlreadyExists(lazy_gettext("organization %(slug)r already exists", slug=data.slug)) from exc
    audit.record(session, actor, "org.created", org_id=org.id, target_type="org", target_id=org.slug,
                 details={"name": org.name, "member_limit": org.member_limit})
    return org


def update(session: Session, deps: WithProviders, actor: Actor, org: Organization, data: OrgUpdate) -> Organization:
    """Change settings; only the fields given change."""
    changes = data.model_dump(exclude_unset=True)
    nullable = {"allowed_providers", "redirect_url", "branding", "keycloak_organization"}
    changes = {k: v for k, v in changes.items() if v is not None or k in nullable}
    _check_settings(deps, changes)
    lock(session, org)
    before = {k: getattr(org, k) for k in changes}
    for key, value in changes.items():
        setattr(org, key, value)
    session.flush()
    audit.record(session, actor, "org.updated", org_id=org.id, target_type="org", target_id=org.slug,
                 details={"before": before, "after": changes})
    return org


@dataclass(frozen=True)
class Look:
    """An org's branding as pages and mail use it: the name to show, a logo only from an allowed host, the
    accent colour, the mail sender's name."""

    display_name: str
    logo_url: str | None
    accent_color: str | None
    mail_sender_name: str | None


def look_of(settings: Settings, org: Organization) -> Look:
    """The org's branding, checked again on use (the allowed image hosts may have changed since it was set)."""
    branding = org.branding or {}
    logo = branding.get("logo_url")
    host = urlsplit(logo).hostname if isinstance(logo, str) and logo.startswith("https://") else None
    accent = branding.get("accent_color")
    return Look(display_name=str(branding.get("display_name") or org.name),
                logo_url=logo if host and host in settings.branding_image_hosts else None,
                accent_color=accent if isinstance(accent, str) and re.fullmatch(r"#[0-9a-fA-F]{6}", accent) else None,
                mail_sender_name=branding.get("mail_sender_name") or None)
