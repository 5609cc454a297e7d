"""Verified domains and join by domain: the challenge, the statuses, and who may join, decided from plain facts."""

from __future__ import annotations

import enum
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from idp_bridge.domain.redemption import Binding, provider_allowed
from idp_bridge.domain.states import ANY_PROVIDER, MemberStatus

CHALLENGE_PREFIX = "_idp-bridge-challenge"
CHALLENGE_TYPE: Final = "dns-txt"


class DomainStatus(enum.StrEnum):
    PENDING = "pending"
    VERIFIED = "verified"


class JoinPolicy(enum.StrEnum):
    """An org's `domain_join`: nobody joins by domain, qualifying people join at once, or they ask first."""

    OFF = "off"
    AUTO = "auto"
    REQUEST = "request"


class JoinRequestStatus(enum.StrEnum):
    PENDING = "PENDING"
    APPROVED = "APPROVED"
    DECLINED = "DECLINED"


def challenge_name(domain: str) -> str:
    """The DNS name whose TXT record proves control of `domain` (subdomains prove nothing of their parent)."""
    return f"{CHALLENGE_PREFIX}.{domain}"


def email_domain(email: str) -> str:
    """The part of an address after its last @ (the caller puts it in canonical form)."""
    return email.rpartition("@")[2]


class JoinVerdict(enum.StrEnum):
    """What a login from a join page comes to."""

    JOIN = "joined"
    REQUEST = "requested"
    CONTINUE = "continue"
    REJECT = "rejected"


# Reasons a login from a join page does not qualify (besides the provider's own identity problems).
JOIN_OFF = "join_off"
WRONG_PROVIDER = "wrong_provider"
NOT_ON_DOMAIN = "domain_not_verified"
ALREADY_MEMBER = "already_member"
SEAT_LIMIT = "seat_limit"


@dataclass(frozen=True)
class JoinFacts:
    """Everything the join decision reads, as plain values."""

    policy: str  # the org's domain_join
    provider: str
    configured: Collection[str]
    org_providers: Collection[str] | None
    identity_problem: str | None  # the provider's verified-email rules (§3 rule 5) applied to the login
    email_domain: str | None  # canonical; None when the identity has no usable address
    verified_domains: Collection[str]
    binding: Binding  # NONE, GONE_MEMBER (bound to a DELETED member) or OTHER_MEMBER (a live one)
    bound_member_status: str | None  # the status of the live member the identity is bound to, if any
    member_with_address: str | None  # the status of a live member holding the address already, if any


@dataclass(frozen=True)
class JoinDecision:
    verdict: JoinVerdict
    reason: str | None = None


def decide_join(facts: JoinFacts) -> JoinDecision:
    """Whether a login from a join page joins, asks to join, continues as the member it is, or is refused."""
    if facts.policy not in (JoinPolicy.AUTO, JoinPolicy.REQUEST):
        return JoinDecision(JoinVerdict.REJECT, JOIN_OFF)
    if not provider_allowed(facts.provider, ANY_PROVIDER, facts.configured, facts.org_providers):
        return JoinDecision(JoinVerdict.REJECT, WRONG_PROVIDER)
    if facts.binding == Binding.OTHER_MEMBER:
        # The account already belongs to a member: an active one just carries on; anyone else (invited,
        # deactivated) is not let in by a join page.
        if facts.bound_member_status == MemberStatus.ACTIVE:
            return JoinDecision(JoinVerdict.CONTINUE)
        return JoinDecision(JoinVerdict.REJECT, ALREADY_MEMBER)
    if facts.identity_problem is not None:
        return JoinDecision(JoinVerdict.REJECT, facts.identity_problem)
    if facts.email_domain is None or facts.email_domain not in facts.verified_domains:
        return JoinDecision(JoinVerdict.REJECT, NOT_ON_DOMAIN)
    if facts.member_with_address is not None:
        return JoinDecision(JoinVerdict.REJECT, ALREADY_MEMBER)
    if facts.policy == JoinPolicy.REQUEST:
        return JoinDecision(JoinVerdict.REQUEST)
    return JoinDecision(JoinVerdict.JOIN)


def joined_member(*, now: datetime) -> dict[str, Any]:
    """The one owner of a member joining by domain: it starts ACTIVE, signed in now."""
    return {"status": MemberStatus.ACTIVE.value, "activated_at": now, "last_login_at": now, "updated_at": now}
