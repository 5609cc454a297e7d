"""What one login for an invite comes to, decided once from plain facts about the invite, the link and the login."""

from __future__ import annotations

import enum
from collections.abc import Collection
from dataclasses import dataclass

from idp_bridge.domain.states import ANY_PROVIDER, InviteStatus
from idp_bridge.domain.transitions import may_accept


class LinkState(enum.StrEnum):
    """The link the login came through: unknown for this invite, its current link, or one a resend replaced."""

    MISSING = "missing"
    CURRENT = "current"
    SUPERSEDED = "superseded"


class Binding(enum.StrEnum):
    """Whom the login's identity (provider, issuer, subject) is already bound to in the invite's org."""

    NONE = "none"
    THIS_MEMBER = "this_member"
    # Bound to a DELETED member: the identity may move to the new membership.
    GONE_MEMBER = "gone_member"
    OTHER_MEMBER = "other_member"


class Verdict(enum.StrEnum):
    """The kinds of outcome; the values are what the invitee's pages and the callback report."""

    ACCEPT = "accepted"
    CONTINUE = "continue"
    USED = "used"
    INVALID = "invalid"
    SUPERSEDED = "superseded"
    REJECT = "rejected"


WRONG_PROVIDER = "wrong_provider"
IDENTITY_BOUND = "identity_bound_to_other_member"


@dataclass(frozen=True)
class Facts:
    """Everything the decision reads, as plain values."""

    invite_status: str  # effective: a PENDING invite past its expiry is EXPIRED
    member_status: str
    link: LinkState
    provider: str  # the provider the login went through
    invite_provider: str  # the invite's provider, or ANY_PROVIDER
    configured: Collection[str]  # the deployment's provider names
    org_providers: Collection[str] | None  # the org's allowed providers; None allows every configured one
    identity_problem: str | None  # the provider's identity rule the login broke, if any
    binding: Binding


@dataclass(frozen=True)
class Decision:
    """A verdict, with the reason for REJECT (and SUPERSEDED)."""

    verdict: Verdict
    reason: str | None = None


def provider_allowed(provider: str, invite_provider: str, configured: Collection[str],
                     org_providers: Collection[str] | None) -> bool:
    """Rule 2: the invite's provider, or for `any` a configured provider the org allows."""
    if provider not in configured:
        return False
    if invite_provider != ANY_PROVIDER:
        return provider == invite_provider
    return org_providers is None or provider in org_providers


def decide(facts: Facts) -> Decision:
    """Rules 2, 5, 6 and 7 over one login: accept, continue, used, invalid, superseded, or reject with a reason."""
    if facts.invite_status == InviteStatus.ACCEPTED:
        # The same person coming back after success just continues (rule 7).
        if facts.binding == Binding.THIS_MEMBER:
            return Decision(Verdict.CONTINUE)
        return Decision(Verdict.USED)
    if facts.link == LinkState.MISSING or not may_accept(facts.invite_status, facts.member_status):
        return Decision(Verdict.INVALID)
    if facts.link == LinkState.SUPERSEDED:
        return Decision(Verdict.SUPERSEDED, "superseded")
    if not provider_allowed(facts.provider, facts.invite_provider, facts.configured, facts.org_providers):
        return Decision(Verdict.REJECT, WRONG_PROVIDER)
    if facts.identity_problem is not None:
        return Decision(Verdict.REJECT, facts.identity_problem)
    if facts.binding == Binding.OTHER_MEMBER:
        return Decision(Verdict.REJECT, IDENTITY_BOUND)  # rule 6
    return Decision(Verdict.ACCEPT)
