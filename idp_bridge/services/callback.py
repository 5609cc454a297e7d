"""The OIDC callback as one use case: find the login in flight, finish it at the IdP, redeem or say why not."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

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
    invite_id = pending.invite_id
    retry = f"/invite/{pending.link_token}/login?provider={provider_name}"

    def release(failure: LoginFailed | None) -> None:
        # A cancel or refusal at the IdP is not audited against the invite; a failed validation is.
        if failure is not None:
            log.warning("login for invite %s failed: %s", invite_id, failure)
        with transaction(deps.sessions) as session:
            if redeem.claim_login(session, pending) and failure is not None:
                redeem.record_login_failure(session, actor, invite_id, provider_name, failure.reason, failure.detail)

    def conclude(claims: Mapping[str, Any]) -> Callback:
        # One transaction uses the state up and redeems, so a login is either finished or still usable.
        with deps.engine.begin() as connection:
            outcome = redeem.complete_login(connection, deps, actor, pending, provider, claims)
        if outcome is None:
            # Another callback with the same state finished first.
            return Callback(EXPIRED)
        return Callback(outcome.kind, outcome.reason, label=provider.label, retry_url=retry,
                        link_token=pending.link_token, outcome=outcome)

    return _through_provider(provider, pending.code_verifier, pending.nonce, code=code, error=error, iss=iss,
                             retry=retry, release=release, conclude=conclude)


def _through_provider(provider: Provider, code_verifier: str, nonce: str, *, code: str | None, error: str | None,
                      iss: str | None, retry: str, release: Callable[[LoginFailed | None], None],
                      conclude: Callable[[Mapping[str, Any]], Callback]) -> Callback:
    """What every login's callback shares (an invite's, a join page's, the console's): a cancel or refusal at the
    IdP releases the login; otherwise the IdP's answer is validated and concluded, and a validation that fails
    (here or in the conclusion) releases the login with its reason."""
    if error or not code:
        release(None)
        return Callback(CANCELLED, label=provider.label, retry_url=retry)
    try:
        return conclude(provider.complete_login(code=code, code_verifier=code_verifier, nonce=nonce, iss=iss))
    except LoginFailed as exc:
        release(exc)
        return Callback(FAILED, exc.reason, label=provider.label, retry_url=retry)


def _finish_join(deps: Redeeming, actor: Actor, provider: Provider, *, state: str, browser_secrets: Sequence[str],
                 code: str | None, error: str | None, iss: str | None) -> Callback:
    """The same callback for a login started on an org's join page: validate, then join or say why not."""
    with read_only(), transaction(deps.sessions) as session:
        pending = joining.find_login(session, state=state, browser_secrets=browser_secrets, provider=provider.name)
    if pending is None:
        return Callback(EXPIRED)
    join = pending
    retry = f"/join/{join.org_slug}/login?provider={provider.name}"

    def release(failure: LoginFailed | None) -> None:
        if failure is not None:
            log.warning("join login for org %s failed: %s", join.org_slug, failure)
        with transaction(deps.sessions) as session:
            if joining.claim_login(session, join) and failure is not None:
                joining.record_login_failure(session, actor, join, failure.reason, failure.detail)

    def conclude(claims: Mapping[str, Any]) -> Callback:
        with transaction(deps.sessions) as session:
            outcome = joining.complete(session, deps, actor, join, provider, claims)
        if outcome is None:
            return Callback(EXPIRED)
        return Callback(outcome.kind, outcome.reason, label=provider.label, retry_url=retry, joined=outcome)

    return _through_provider(provider, join.code_verifier, join.nonce, code=code, error=error, iss=iss, retry=retry,
                             release=release, conclude=conclude)


def _finish_console(deps: Redeeming, actor: Actor, provider: Provider, pending: redeem.PendingLogin, *,
                    code: str | None, error: str | None, iss: str | None) -> Callback:
    """A console sign-in: the same validation of the IdP's answer, then a session or a refusal."""
    retry = f"/console/login?provider={provider.name}"

    def release(failure: LoginFailed | None) -> None:
        if failure is not None:
            log.warning("console sign-in at %s failed: %s", provider.name, failure)
        with transaction(deps.sessions) as session:
            redeem.claim_login(session, pending)

    def conclude(claims: Mapping[str, Any]) -> Callback:
        signed = console.finish(deps, actor, pending, provider, claims)
        if signed is None:
            return Callback(EXPIRED)
        return Callback(signed.kind, label=provider.label, retry_url=retry, sign_in=signed)

    return _through_provider(provider, pending.code_verifier, pending.nonce, code=code, error=error, iss=iss,
                             retry=retry, release=release, conclude=conclude)
