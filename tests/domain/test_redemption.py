"""redemption.decide() over its whole input space: plain values in, one verdict out, no database."""

from __future__ import annotations

import itertools
from collections.abc import Collection, Iterator

import pytest

from idp_bridge.domain.redemption import (
    IDENTITY_BOUND,
    WRONG_PROVIDER,
    Binding,
    Decision,
    Facts,
    LinkState,
    Verdict,
    decide,
    provider_allowed,
)
from idp_bridge.domain.states import ANY_PROVIDER, InviteStatus, MemberStatus

CONFIGURED = ("oidc", "google")
PROVIDERS = ("oidc", "google", "entra")  # entra is not configured
INVITE_PROVIDERS = (ANY_PROVIDER, "oidc", "google")
ORG_PROVIDERS: tuple[Collection[str] | None, ...] = (None, ("oidc",), ())
PROBLEMS = (None, "email_mismatch", "email_not_verified")


def every_facts() -> Iterator[Facts]:
    for (invite_status, member_status, link, provider, invite_provider, org_providers, problem,
         binding) in itertools.product(InviteStatus, MemberStatus, LinkState, PROVIDERS, INVITE_PROVIDERS,
                                       ORG_PROVIDERS, PROBLEMS, Binding):
        yield Facts(invite_status=invite_status.value, member_status=member_status.value, link=link,
                    provider=provider, invite_provider=invite_provider, configured=CONFIGURED,
                    org_providers=org_providers, identity_problem=problem, binding=binding)


ALL = list(every_facts())


def allowed(f: Facts) -> bool:
    return provider_allowed(f.provider, f.invite_provider, f.configured, f.org_providers)


def test_the_input_space_is_covered_whole() -> None:
    assert len(ALL) == 4 * 4 * 3 * 3 * 3 * 3 * 3 * 4


def test_every_input_gets_exactly_one_decision_and_a_reason_only_where_one_is_due() -> None:
    for facts in ALL:
        decision = decide(facts)
        assert isinstance(decision, Decision)
        assert (decision.reason is not None) == (decision.verdict in (Verdict.REJECT, Verdict.SUPERSEDED)), facts


def test_an_invite_is_accepted_only_when_every_rule_holds() -> None:
    for facts in ALL:
        every_rule_holds = (facts.invite_status == InviteStatus.PENDING
                            and facts.member_status == MemberStatus.INVITED
                            and facts.link == LinkState.CURRENT and allowed(facts)
                            and facts.identity_problem is None and facts.binding != Binding.OTHER_MEMBER)
        assert (decide(facts).verdict == Verdict.ACCEPT) == every_rule_holds, facts


def test_an_accepted_invite_continues_for_its_own_identity_and_is_used_for_any_other() -> None:
    for facts in ALL:
        if facts.invite_status != InviteStatus.ACCEPTED:
            continue
        expected = Verdict.CONTINUE if facts.binding == Binding.THIS_MEMBER else Verdict.USED
        assert decide(facts) == Decision(expected), facts


def test_continue_and_used_come_only_from_an_accepted_invite() -> None:
    for facts in ALL:
        if decide(facts).verdict in (Verdict.CONTINUE, Verdict.USED):
            assert facts.invite_status == InviteStatus.ACCEPTED


@pytest.mark.parametrize("status", [InviteStatus.EXPIRED, InviteStatus.REVOKED])
def test_an_expired_or_revoked_invite_is_invalid_whatever_the_login(status: InviteStatus) -> None:
    for facts in ALL:
        if facts.invite_status == status:
            assert decide(facts) == Decision(Verdict.INVALID), facts


def test_a_link_that_is_not_the_invites_is_invalid_and_a_replaced_one_says_so() -> None:
    for facts in ALL:
        if facts.invite_status != InviteStatus.PENDING or facts.member_status != MemberStatus.INVITED:
            continue
        if facts.link == LinkState.MISSING:
            assert decide(facts) == Decision(Verdict.INVALID), facts
        if facts.link == LinkState.SUPERSEDED:
            assert decide(facts) == Decision(Verdict.SUPERSEDED, "superseded"), facts


def test_rejections_name_the_first_broken_rule_wrong_provider_then_identity_then_binding() -> None:
    for facts in ALL:
        decision = decide(facts)
        if decision.verdict != Verdict.REJECT:
            continue
        assert (facts.invite_status, facts.member_status, facts.link) == (
            InviteStatus.PENDING, MemberStatus.INVITED, LinkState.CURRENT)
        if not allowed(facts):
            assert decision.reason == WRONG_PROVIDER
        elif facts.identity_problem is not None:
            assert decision.reason == facts.identity_problem
        else:
            assert facts.binding == Binding.OTHER_MEMBER and decision.reason == IDENTITY_BOUND


def test_an_identity_of_a_removed_member_or_of_this_member_does_not_block_acceptance() -> None:
    facts = Facts(invite_status="PENDING", member_status="INVITED", link=LinkState.CURRENT, provider="oidc",
                  invite_provider="oidc", configured=CONFIGURED, org_providers=None, identity_problem=None,
                  binding=Binding.NONE)
    for binding in (Binding.NONE, Binding.THIS_MEMBER, Binding.GONE_MEMBER):
        assert decide(Facts(**{**facts.__dict__, "binding": binding})).verdict == Verdict.ACCEPT


@pytest.mark.parametrize(("provider", "invite_provider", "org_providers", "expected"), [
    ("oidc", "oidc", None, True),
    ("oidc", "google", None, False),
    ("oidc", ANY_PROVIDER, None, True),
    ("oidc", ANY_PROVIDER, ("google",), False),
    ("oidc", ANY_PROVIDER, ("oidc",), True),
    ("oidc", "oidc", ("google",), True),  # a named provider was checked against the org when the invite was made
    ("entra", "entra", None, False),  # not configured (any more)
    ("entra", ANY_PROVIDER, None, False),
])
def test_rule_two_the_invites_provider_or_for_any_a_configured_one_the_org_allows(
        provider: str, invite_provider: str, org_providers: Collection[str] | None, expected: bool) -> None:
    assert provider_allowed(provider, invite_provider, CONFIGURED, org_providers) is expected
