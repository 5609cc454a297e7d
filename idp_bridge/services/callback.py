"""The OIDC callback as one use case: find the login in flight, finish it at the IdP, redeem or say why not."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from idp_bridge.audit import Actor
from idp_bridge.domain.providers import LoginFailed, Provider
from idp_bridge.services import console, joining, redeem
from idp_bridge.services.ports import Redeeming
from idp_bridge.store.db import read_only, transaction

log = logging.getLogger(__name__)

# How a callback ended, besides the redemption outcomes (redeem.ACCEPTED, …): the login was unknown, used or
# expired; the person cancelled at the IdP (or it refused); the IdP's answer failed validation.
EXPIRED = "expired"
CANCELLED = "cancelled"
FAILED = "failed"


@dataclass(frozen=True)
class Callback:
    """What the callback came to: its kind and reason, and what the page shows."""

    kind: str
    reason: str | None = None
    # The provider's label and the URL that starts the login again, once the login in flight is known.
    label: str = ""
    retry_url: str = ""
    link_token: str = ""
    outcome: redeem.Redemption | None = None
    # Set when the login started on an org's join page rather than from an invite.
    joined: joining.JoinOutcome | None = None
    # A console sign-in (a login started at /console, for no invite): what it came to.
    sign_in: console.SignIn | None = None


def finish(deps: Redeeming, actor: Actor, provider_name: str, *, state: str, browser_secrets: Sequence[str],
           code: str | None, error: str | None, iss: str | None) -> Callback:
    """Finish the login `state` names, in this browser, at `provider_name`."""
    provider = deps.provider(provider_name)
    if provider is None:
        return Callback(EXPIRED)
    pending = redeem.find_login(deps, state=state, browser_secrets=browser_secrets, provider=provider_name)
    if pending is None:
        return _finish_join(deps, actor, provider, state=state, browser_secrets=browser_secrets, code=code,
                            error=error, iss=iss)
    if pending.invite_id is None:
        return _finish_console(deps, actor, provider, pending, code=code, error=error, iss=iss)
    retry = f"/invite/{pending.link_token}/login?provider={provider_name}"
    if error or not code:
        # The person cancelled at the IdP or it refused: nothing to audit against the invite.
        with transaction(deps.sessions) as session:
            redeem.claim_login(session, pending)
        return Callback(CANCELLED, label=provider.label, retry_url=retry)
    try:
        claims = provider.complete_login(code=code, code_verifier=pending.code_verifier, nonce=pending.nonce,
                                         iss=iss)
        # One transaction uses the state up and redeems, so a login is either finished or still usable.
        with deps.engine.begin() as connection:
            outcome = redeem.complete_login(connection, deps, actor, pending, provider, claims)
    except LoginFailed as exc:
        log.warning("login for invite %s failed: %s", pending.invite_id, exc)
        with transaction(deps.sessions) as session:
            if redeem.claim_login(session, pending):
                redeem.record_login_failure(session, actor, pending.invite_id, provider_name, exc.reason, exc.detail)
        return Callback(FAILED, exc.reason, label=provider.label, retry_url=retry)
    if outcome is None:
        # Another callback with the same state finished first.
        return Callback(EXPIRED)
    return Callback(outcome.kind, outcome.reason, label=provider.label, retry_url=retry,
                    link_token=pending.link_token, outcome=outcome)


def _finish_join(deps: Redeeming, actor: Actor, provider: Provider, *, state: str, browser_secrets: Sequence[str],
                 code: str | None, error: str | None, iss: str | None) -> Callback:
    """The same callback for a login started on an org's join page: validate, then join or say why not."""
    with read_only(), transaction(deps.sessions) as session:
        pending = joining.find_login(session, state=state, browser_secrets=browser_secrets, provider=provider.name)
    if pending is None:
        return Callback(EXPIRED)
    retry = f"/join/{pending.org_slug}/login?provider={provider.name}"
    if error or not code:
        with transaction(deps.sessions) as session:
            joining.claim_login(session, pending)
        return Callback(CANCELLED, label=provider.label, retry_url=retry)
    try:
        claims = provider.complete_login(code=code, code_verifier=pending.code_verifier, nonce=pending.nonce,
                                         iss=iss)
        with transaction(deps.sessions) as session:
            outcome = joining.complete(session, deps, actor, pending, provider, claims)
    except LoginFailed as exc:
        log.warning("join login for org %s failed: %s", pending.org_slug, exc)
        with transaction(deps.sessions) as session:
            if joining.claim_login(session, pending):
                joining.record_login_failure(session, actor, pending, exc.reason, exc.detail)
        return Callback(FAILED, exc.reason, label=provider.label, retry_url=retry)
    if outcome is None:
        return Callback(EXPIRED)
    return Callback(outcome.kind, outcome.reason, label=provider.label, retry_url=retry, joined=outcome)


def _finish_console(deps: Redeeming, actor: Actor, provider: Provider, pending: redeem.PendingLogin, *,
                    code: str | None, error: str | None, iss: str | None) -> Callback:
    """A console sign-in: the same validation of the IdP's answer, then a session or a refusal."""
    retry = f"/console/login?provider={provider.name}"
    if error or not code:
        with transaction(deps.sessions) as session:
            redeem.claim_login(session, pending)
        return Callback(CANCELLED, label=provider.label, retry_url=retry)
    try:
        claims = provider.complete_login(code=code, code_verifier=pending.code_verifier, nonce=pending.nonce,
                                         iss=iss)
    except LoginFailed as exc:
        log.warning("console sign-in at %s failed: %s", provider.name, exc)
        with transaction(deps.sessions) as session:
            redeem.claim_login(session, pending)
        return Callback(FAILED, exc.reason, label=provider.label, retry_url=retry)
    signed = console.finish(deps, actor, pending, provider, claims)
    if signed is None:
        return Callback(EXPIRED)
    return Callback(signed.kind, label=provider.label, retry_url=retry, sign_in=signed)
