"""Verified domains: an org claims a domain, publishes a DNS TXT challenge, and verifies it; one org per domain."""

from __future__ import annotations

import ipaddress
import secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from idp_bridge import audit
from idp_bridge.audit import Actor
from idp_bridge.domain.joining import DomainStatus, challenge_name
from idp_bridge.errors import AlreadyExists, Conflict, DNSLookupFailed, NotFound, ValidationFailed, lazy_gettext
from idp_bridge.identifiers import InvalidDomain, canonical_domain
from idp_bridge.models import Organization, OrgDomain, utcnow
from idp_bridge.services.ports import TXTLookup

CHALLENGE_VALUE_PREFIX = "idp-bridge-verification="
# The values a 409 names are the record's own text, cut short: a zone can hold anything.
SHOWN_VALUES = 10
SHOWN_CHARS = 120


class NotVerified(Conflict):
    code = "domain_not_verified"
    title = lazy_gettext("Domain not verified")


def normalize(domain: str) -> str:
    """A domain as stored: its IDNA A-label in lower case; ValidationFailed for anything that is not a domain."""
    text = domain.strip().removesuffix(".")
    problem: str | None = None
    try:
        ipaddress.ip_address(text.strip("[]"))
        problem = lazy_gettext("must be a domain name, not an IP address")
    except ValueError:
        pass
    if problem is None:
        try:
            canonical = canonical_domain(text)
        except InvalidDomain as exc:
            canonical, problem = "", exc.args[0] if exc.args and isinstance(exc.args[0], str) else str(exc)
        if not problem and ("." not in canonical or len(canonical) > 253
                            or any(not label or len(label) > 63 for label in canonical.split("."))):
            problem = lazy_gettext("must be a fully qualified domain name such as example.com")
        if not problem and canonical.startswith(("*.", "_")):
            problem = lazy_gettext("must be a plain domain name (no wildcards or service labels)")
    if problem:
        raise ValidationFailed({"domain": [problem]})
    return canonical


def challenge_value(domain: OrgDomain) -> str:
    return CHALLENGE_VALUE_PREFIX + domain.challenge


def add(session: Session, actor: Actor, org: Organization, domain: str) -> OrgDomain:
    """Claim a domain for the org (pending until verified); the org may hold each domain once."""
    name = normalize(domain)
    if session.scalar(select(OrgDomain.id).where(OrgDomain.org_id == org.id, OrgDomain.domain == name)):
        raise AlreadyExists(lazy_gettext("%(org)s already has the domain %(domain)s", org=org.slug, domain=name))
    row = OrgDomain(org_id=org.id, domain=name, status=DomainStatus.PENDING.value,
                    challenge=secrets.token_urlsafe(24))
    session.add(row)
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError:
        raise AlreadyExists(lazy_gettext("%(org)s already has the domain %(domain)s", org=org.slug,
                                         domain=name)) from None
    audit.record(session, actor, "domain.added", org_id=org.id, target_type="domain", target_id=row.id,
                 details={"domain": name})
    return row


def list_for(session: Session, org: Organization) -> list[OrgDomain]:
    return list(session.scalars(select(OrgDomain).where(OrgDomain.org_id == org.id).order_by(OrgDomain.domain)))


def get(session: Session, org: Organization, domain_id: str) -> OrgDomain:
    """One of the org's domains, by id or by name."""
    row = session.scalar(select(OrgDomain).where(OrgDomain.org_id == org.id, OrgDomain.id == domain_id))
    if row is None:
        try:
            name = normalize(domain_id)
        except ValidationFailed:
            name = ""
        row = session.scalar(select(OrgDomain).where(OrgDomain.org_id == org.id, OrgDomain.domain == name))
    if row is None:
        raise NotFound(lazy_gettext("%(org)s has no domain %(domain)s", org=org.slug, domain=domain_id))
    return row


def verified_domains(session: Session, org: Organization) -> list[str]:
    return list(session.scalars(select(OrgDomain.domain).where(OrgDomain.org_id == org.id,
                                                                OrgDomain.status == DomainStatus.VERIFIED)))


def _held_elsewhere(session: Session, org: Organization, name: str) -> bool:
    return session.scalar(select(OrgDomain.id).where(OrgDomain.domain == name, OrgDomain.org_id != org.id,
                                                     OrgDomain.status == DomainStatus.VERIFIED)) is not None


def _shown(values: list[str]) -> str:
    if not values:
        return lazy_gettext("none")
    quoted = ", ".join(repr(v[:SHOWN_CHARS] + ("…" if len(v) > SHOWN_CHARS else "")) for v in values[:SHOWN_VALUES])
    if len(values) > SHOWN_VALUES:
        return lazy_gettext("%(values)s and %(more)s more", values=quoted, more=len(values) - SHOWN_VALUES)
    return quoted


@dataclass(frozen=True)
class Challenge:
    """What a verification looks up, read before any lookup so that no transaction waits on DNS."""

    domain_id: str
    domain: str
    record: str
    expected: str
    verified: bool


@dataclass(frozen=True)
class Finding:
    """The TXT values a lookup found, or why no server answered."""

    found: list[str]
    failure: str | None = None


def challenge_for(session: Session, org: Organization, domain_id: str) -> Challenge:
    """The challenge of one of the org's domains (reads only); 409 when another org verified the domain."""
    row = get(session, org, domain_id)
    if row.status != DomainStatus.VERIFIED and _held_elsewhere(session, org, row.domain):
        raise AlreadyExists(lazy_gettext("%(domain)s is verified by another organization", domain=row.domain))
    return Challenge(row.id, row.domain, challenge_name(row.domain), challenge_value(row),
                     row.status == DomainStatus.VERIFIED)


def look_up(lookup: TXTLookup, challenge: Challenge) -> Finding:
    """The TXT record of a challenge, as found now; run with no transaction open."""
    if challenge.verified:
        return Finding([])
    try:
        return Finding(lookup.txt_records(challenge.record))
    except DNSLookupFailed as exc:
        return Finding([], exc.detail)


def record(session: Session, actor: Actor, org: Organization, challenge: Challenge, finding: Finding) -> OrgDomain:
    """Write what a lookup found, re-reading the domain: verified when the record holds the expected value, else
    NotVerified naming what was found. A domain another org verified meanwhile stays theirs (409)."""
    row = session.scalar(select(OrgDomain).where(OrgDomain.org_id == org.id, OrgDomain.id == challenge.domain_id)
                         .with_for_update())
    if row is None:
        raise NotFound(lazy_gettext("%(org)s has no domain %(domain)s", org=org.slug, domain=challenge.domain))
    if row.status == DomainStatus.VERIFIED:
        return row
    if _held_elsewhere(session, org, row.domain):
        raise AlreadyExists(lazy_gettext("%(domain)s is verified by another organization", domain=row.domain))
    name, expected = challenge.record, challenge_value(row)
    if finding.failure is not None:
        raise NotVerified(lazy_gettext("%(failure)s; values found: none", failure=finding.failure),
                          domain=row.domain, record=name, expected=expected, found=[])
    if expected not in finding.found:
        raise NotVerified(lazy_gettext("the TXT record %(record)s does not hold %(expected)r; values found: %(found)s",
                                       record=name, expected=expected, found=_shown(finding.found)),
                          domain=row.domain, record=name, expected=expected, found=finding.found[:SHOWN_VALUES])
    row.status = DomainStatus.VERIFIED.value
    row.verified_at = row.checked_at = utcnow()
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError:
        # Another org verified it between the check above and this write: the unique index decided.
        raise AlreadyExists(lazy_gettext("%(domain)s is verified by another organization",
                                         domain=row.domain)) from None
    audit.record(session, actor, "domain.verified", org_id=org.id, target_type="domain", target_id=row.id,
                 details={"domain": row.domain})
    return row


def delete(session: Session, actor: Actor, org: Organization, domain_id: str) -> None:
    row = get(session, org, domain_id)
    session.delete(row)
    audit.record(session, actor, "domain.deleted", org_id=org.id, target_type="domain", target_id=row.id,
                 details={"domain": row.domain, "status": row.status})
