"""joining.decide_join() over its input space: who joins, asks, carries on, or is refused, and why."""

from __future__ import annotations

import itertools
from collections.abc import Collection, Iterator

import pytest

from idp_bridge.domain.joining import (
    ALREADY_MEMBER,
    JOIN_OFF,
    NOT_ON_DOMAIN,
    WRONG_PROVIDER,
    JoinDecision,
    JoinFacts,
    JoinPolicy,
    JoinVerdict,
    challenge_name,
    decide_join,
)
from idp_bridge.domain.redemption import Binding
from idp_bridge.domain.states import MemberStatus

CONFIGURED = ("oidc", "entra")
VERIFIED = ("contoso.com",)
ORG_PROVIDERS: tuple[Collection[str] | None, ...] = (None, ("oidc",))
DOMAINS = (None, "contoso.com", "eu.contoso.com", "fabrikam.com")
HOLDERS = (None, MemberStatus.INVITED.value, MemberStatus.ACTIVE.value)
BOUND: tuple[tuple[Binding, str | None], ...] = (
    (Binding.NONE, None), (Binding.GONE_MEMBER, None), (Binding.OTHER_MEMBER, MemberStatus.ACTIVE.value),
    (Binding.OTHER_MEMBER, MemberStatus.DEACTIVATED.value), (Binding.OTHER_MEMBER, MemberStatus.INVITED.value))


def every_facts() -> Iterator[JoinFacts]:
    for policy, provider, org_providers, problem, domain, (binding, bound_status), holder in itertools.product(
            ("off", "auto", "request", "bogus"), ("oidc", "entra", "google"), ORG_PROVIDERS,
            (None, "email_not_verified"), DOMAINS, BOUND, HOLDERS):
        yield JoinFacts(policy=policy, provider=provider, configured=CONFIGURED, org_providers=org_providers,
                        identity_problem=problem, email_domain=domain, verified_domains=VERIFIED, binding=binding,
                        bound_member_status=bound_status, member_with_address=holder)


ALL = list(every_facts())


def test_only_an_allowed_provider_a_verified_address_and_an_exactly_verified_domain_let_a_newcomer_in() -> None:
    admitted = [f for f in ALL if decide_join(f).verdict in (JoinVerdict.JOIN, JoinVerdict.REQUEST)]
    assert admitted
    for facts in admitted:
        assert facts.policy in (JoinPolicy.AUTO, JoinPolicy.REQUEST)
        assert facts.provider in CONFIGURED
        assert facts.org_providers is None or facts.provider in facts.org_providers
        assert facts.identity_problem is None
        assert facts.email_domain == "contoso.com"
        assert facts.binding in (Binding.NONE, Binding.GONE_MEMBER)
        assert facts.member_with_address is None
        expected = JoinVerdict.JOIN if facts.policy == JoinPolicy.AUTO else JoinVerdict.REQUEST
        assert decide_join(facts).verdict == expected


def test_an_org_that_does_not_join_by_domain_refuses_everyone() -> None:
    for facts in ALL:
        if facts.policy not in (JoinPolicy.AUTO, JoinPolicy.REQUEST):
            assert decide_join(facts) == JoinDecision(JoinVerdict.REJECT, JOIN_OFF)


def test_only_an_account_bound_to_an_active_member_carries_on() -> None:
    for facts in ALL:
        if decide_join(facts).verdict == JoinVerdict.CONTINUE:
            assert (facts.binding, facts.bound_member_status) == (Binding.OTHER_MEMBER, MemberStatus.ACTIVE)


@pytest.mark.parametrize(("change", "reason"), [
    ({"provider": "google"}, WRONG_PROVIDER),
    ({"identity_problem": "email_not_verified"}, "email_not_verified"),
    ({"email_domain": "eu.contoso.com"}, NOT_ON_DOMAIN),
    ({"email_domain": None}, NOT_ON_DOMAIN),
    ({"member_with_address": "INVITED"}, ALREADY_MEMBER),
    ({"binding": Binding.OTHER_MEMBER, "bound_member_status": "DEACTIVATED"}, ALREADY_MEMBER),
])
def test_each_broken_condition_is_named(change: dict[str, object], reason: str) -> None:
    base = {"policy": "auto", "provider": "oidc", "configured": CONFIGURED, "org_providers": None,
            "identity_problem": None, "email_domain": "contoso.com", "verified_domains": VERIFIED,
            "binding": Binding.NONE, "bound_member_status": None, "member_with_address": None}
    assert decide_join(JoinFacts(**{**base, **change})) == JoinDecision(JoinVerdict.REJECT, reason)  # type: ignore[arg-type]


def test_the_challenge_lives_under_the_domain_itself() -> None:
    assert challenge_name("eu.contoso.com") == "_idp-bridge-challenge.eu.contoso.com"
