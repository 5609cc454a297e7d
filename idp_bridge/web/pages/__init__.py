"""Invitee pages: server-rendered HTML, no JavaScript, no external assets."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, Flask, Response, current_app, g, redirect, render_template, request
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from werkzeug.wrappers import Response as BaseResponse

from idp_bridge.audit import Actor
from idp_bridge.bridge import Bridge
from idp_bridge.idp import ANY, LoginFailed
from idp_bridge.metrics import count_login
from idp_bridge.models import Invite, InviteStatus, Organization
from idp_bridge.services import invites, redeem
from idp_bridge.store.db import read_only, transaction
from idp_bridge.web.pages import ratelimit

bp = Blueprint("pages", __name__, template_folder="templates")

SECURITY_HEADERS = {
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "Pragma": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
                               "form-action 'self' https: http:; frame-ancestors 'none'; base-uri 'none'",
}
# Expired, revoked, unknown and tampered links look the same from outside: one page, one status.
INVALID_STATUS = 404
CSRF_COOKIE = "ib_csrf"
BROWSER_COOKIE = "ib_login"
# How many logins one browser may have in flight at once (tabs); the cookie holds one value for each.
LOGINS_PER_BROWSER = 4
BROWSER_VALUE_RANDOM = 43
COOKIE_MAX_AGE = 3600


def install(app: Flask) -> None:
    """Register the invitee pages with their rate limits (in the database by default, shared by every process)."""
    b = bridge_of(app)
    url = b.settings.rate_limit_storage_url
    settings = b.settings
    # No X-RateLimit-* headers on every page (reading the window back costs a second storage round per
    # request); a refused request still says when to come back (too_many). When the storage cannot be written
    # (database read-only, Redis down) the pages stay up, limited per process, with one warning, until the
    # storage answers again.
    limiter = Limiter(get_remote_address, app=app, storage_uri=ratelimit.storage_uri(url),
                      storage_options=ratelimit.storage_options(url, b.engine), in_memory_fallback_enabled=True,
                      default_limits=[], headers_enabled=False, key_prefix="pages")
    app.register_blueprint(bp)
    limiter.limit(settings.invite_page_rate_limit)(bp)
    # Code tries get a tighter limit on top of the per-invite lockout after five wrong codes.
    view = app.view_functions["pages.login_post"]
    app.view_functions["pages.login_post"] = limiter.limit(settings.invite_code_rate_limit)(view)  # type: ignore[assignment]
    app.extensions["idp_bridge_limiter"] = limiter


def bridge_of(app: Flask) -> Bridge:
    b: Bridge = app.extensions["idp_bridge"]
    return b


def bridge() -> Bridge:
    b: Bridge = current_app.extensions["idp_bridge"]
    return b


def page(template: str, status: int = 200, **context: Any) -> Response:
    """Render an invitee page with the headers every invite page carries."""
    context.setdefault("product_name", bridge().settings.product_name)
    context.setdefault("support_contact", bridge().settings.support_contact)
    resp = Response(render_template(f"pages/{template}", **context), status=status, mimetype="text/html")
    resp.headers.update(SECURITY_HEADERS)
    return resp


def invalid_page() -> Response:
    return page("invalid.html", INVALID_STATUS)


def _csrf_secret() -> str:
    """This browser's CSRF cookie value (created on first render)."""
    value = request.cookies.get(CSRF_COOKIE) or ""
    if len(value) < 20:
        value = g.get("new_csrf") or secrets.token_urlsafe(32)
        g.new_csrf = value
    return value


def _csrf_token(secret: str, key: str | None = None) -> str:
    key = bridge().settings.secret_key if key is None else key
    return hmac.new(key.encode(), b"csrf:" + secret.encode(), hashlib.sha256).hexdigest()


def _csrf_ok() -> bool:
    """Double-submit check: the form field must be the MAC of this browser's CSRF cookie."""
    cookie = request.cookies.get(CSRF_COOKIE) or ""
    field = request.form.get("csrf") or ""
    # A form rendered before a secret-key change still submits: its MAC may be by a fallback key.
    return len(cookie) >= 20 and any(hmac.compare_digest(field.encode(), _csrf_token(cookie, key).encode())
                                     for key in bridge().secret_keys)


def _set_cookie(resp: BaseResponse, name: str, value: str) -> None:
    resp.set_cookie(name, value, max_age=COOKIE_MAX_AGE, httponly=True, samesite="Lax", secure=request.is_secure,
                    path="/")


def _with_csrf_cookie(resp: Response) -> Response:
    value = g.get("new_csrf")
    if value and request.cookies.get(CSRF_COOKIE) != value:
        _set_cookie(resp, CSRF_COOKIE, value)
    return resp


@bp.errorhandler(429)
def too_many(_exc: Exception) -> Response:
    resp = page("too_many.html", 429)
    hit = current_app.extensions["idp_bridge_limiter"].current_limit
    if hit is not None:
        resp.headers["Retry-After"] = str(max(1, int(hit.reset_at - time.time())))
    return resp


@bp.get("/invite/<secret:token>")
def landing(token: str) -> Response:
    """What the invite offers and which account it needs."""
    b = bridge()
    with read_only(), transaction(b.sessions) as session:
        found = invites.by_token(session, token)
        resp = _dead_link_page(found)
        if resp is not None:
            return resp
        invite, org = _open_invite(session, found)
        return _landing_page(b, invite, org, token, again=request.args.get("again") == "1")


def _dead_link_page(found: invites.LinkLookup) -> Response | None:
    """The page for a link that cannot be used now, or None when the invite is open.

    Decided from the lookup alone, with no further reads: a dead link costs the same whatever killed it.
    """
    if found.open:
        return None
    named = {"name": found.org_name}
    if found.superseded and found.status == InviteStatus.PENDING:
        return page("superseded.html", 410, org=named)
    if not found.superseded and found.status == InviteStatus.ACCEPTED:
        return page("used.html", 410, org=named)
    return invalid_page()


def _open_invite(session: Any, found: invites.LinkLookup) -> tuple[Invite, Organization]:
    """The invite and org behind an open link."""
    invite = session.get(Invite, found.invite_id)
    org = session.get(Organization, found.org_id)
    assert invite is not None and org is not None
    return invite, org


def _account(b: Bridge, invite: Invite, org: Organization) -> str:
    provider = b.provider(invite.provider) if invite.provider != ANY else None
    target = invites.target_of(invite, org)
    return provider.account_description(target) if provider else f"an account for {invite.identifier}"


def _needs_code(invite: Invite, org: Organization) -> bool:
    return bool(org.require_invite_code and invite.code_hash)


def _landing_page(b: Bridge, invite: Invite, org: Organization, token: str, *, again: bool = False,
                  error: str = "", status: int = 200) -> Response:
    choices = redeem.login_providers(b, invite, org)
    needs_code = _needs_code(invite, org)
    locked = needs_code and redeem.code_locked(invite)
    csrf = _csrf_secret() if needs_code else ""
    resp = page("landing.html", 403 if locked else status, org=org, invite=invite, account=_account(b, invite, org),
                role=invite.role.replace("_", " ").title(),
                expires=invite.expires_at.strftime("%d %B %Y, %H:%M UTC"),
                inviter=_inviter(invite.created_by, org), token=token, needs_code=needs_code, locked=locked,
                csrf=_csrf_token(csrf) if csrf else "", error=error, again=again,
                providers=[(name, b.providers[name].label) for name in choices],
                login_url=f"/invite/{token}/login" + ("?again=1" if again else ""))
    return _with_csrf_cookie(resp)


@bp.get("/invite/<secret:token>/login")
def login(token: str) -> Response:
    """Start the OIDC login for this invite (or ask which provider, for `any` with several)."""
    b = bridge()
    again = request.args.get("again") == "1"
    with transaction(b.sessions) as session:
        found = invites.by_token(session, token)
        resp = _dead_link_page(found)
        if resp is not None:
            return resp
        invite, org = _open_invite(session, found)
        if _needs_code(invite, org):
            # The code is typed on the landing page and posted; a GET cannot skip it.
            return redirect(f"/invite/{token}" + ("?again=1" if again else ""), 303)  # type: ignore[return-value]
        return _begin(b, session, invite, org, token, request.args.get("provider"), again)


@bp.post("/invite/<secret:token>/login")
def login_post(token: str) -> Response:
    """The invite-code form: check CSRF and the code, then start the login."""
    b = bridge()
    again = request.form.get("again") == "1"
    if not _csrf_ok():
        return page("form_expired.html", 400, token=token)
    with transaction(b.sessions) as session:
        found = invites.by_token(session, token)
        resp = _dead_link_page(found)
        if resp is not None:
            return resp
        assert found.invite_id is not None
        invite = redeem.lock_invite(session, found.invite_id)
        assert invite is not None
        org = session.get(Organization, invite.org_id)
        assert org is not None
        if _needs_code(invite, org):
            if redeem.code_locked(invite):
                return _landing_page(b, invite, org, token, again=again)
            if not redeem.try_code(session, b, _actor(), invite, request.form.get("code", "")):
                left = redeem.MAX_CODE_FAILURES - invite.code_failures
                message = (f"That code is not right. {left} {'try' if left == 1 else 'tries'} left."
                           if left > 0 else "")
                return _landing_page(b, invite, org, token, again=again, error=message, status=400)
        return _begin(b, session, invite, org, token, request.form.get("provider"), again)


def _actor() -> Actor:
    return Actor("invitee", "", request.remote_addr)


def _begin(b: Bridge, session: Any, invite: Invite, org: Organization, token: str, provider_name: str | None,
           again: bool) -> Response:
    choices = redeem.login_providers(b, invite, org)
    if provider_name:
        if provider_name not in choices:
            return page("choose.html", 400, org=org, token=token, again=again, needs_code=False,
                        providers=[(n, b.providers[n].label) for n in choices])
    elif len(choices) == 1:
        provider_name = choices[0]
    elif not choices:
        return page("no_provider.html", 503, org=org)
    else:
        return page("choose.html", org=org, token=token, again=again, needs_code=_needs_code(invite, org),
                    providers=[(n, b.providers[n].label) for n in choices])
    provider = b.providers[provider_name]
    # Always a new value of our own, never one the browser presents: a value planted in the invitee's browser
    # (session fixation) would otherwise bind this login to a secret the planter knows.
    browser = _new_browser_value()
    state, nonce, verifier = redeem.start_login(session, b, invite, link_token=token, provider=provider_name,
                                                browser_secret=browser)
    try:
        url = provider.authorization_url(invites.target_of(invite, org), state=state, nonce=nonce,
                                         code_verifier=verifier, select_account=again)
    except LoginFailed as exc:
        current_app.logger.warning("login at %s cannot start: %s", provider_name, exc)
        return page("provider_down.html", 503, org=org, token=token, label=provider.label)
    resp = redirect(url, 303)
    resp.headers.update(SECURITY_HEADERS)
    # Logins started earlier in this browser (other tabs) stay finishable; only values we made are kept.
    kept = [value for value in _browser_values() if _we_made(value)][:LOGINS_PER_BROWSER - 1]
    _set_cookie(resp, BROWSER_COOKIE, ".".join([browser, *kept]))
    return resp  # type: ignore[return-value]


def _browser_mac(value: str) -> str:
    digest = hmac.new(bridge().settings.secret_key.encode(), b"login-browser:" + value.encode(), hashlib.sha256)
    return base64.urlsafe_b64encode(digest.digest()[:16]).decode().rstrip("=")


def _new_browser_value() -> str:
    """A fresh login-browser value: 256 random bits and our MAC of them (so we know it for ours later)."""
    value = secrets.token_urlsafe(32)
    return value + _browser_mac(value)


def _we_made(value: str) -> bool:
    """Whether a presented login-browser value is one this deployment made (not one planted from elsewhere)."""
    random_part, mac = value[:BROWSER_VALUE_RANDOM], value[BROWSER_VALUE_RANDOM:]
    return (len(random_part) == BROWSER_VALUE_RANDOM
            and hmac.compare_digest(mac.encode(), _browser_mac(random_part).encode()))


def _browser_values() -> list[str]:
    """The login-browser values this browser presents, one per login in flight (the callback checks the binding)."""
    return [v for v in (request.cookies.get(BROWSER_COOKIE) or "").split(".")[:LOGINS_PER_BROWSER] if v]


def mask(account: str) -> str:
    """Enough of an account for its owner to recognise it, not enough to harvest it."""
    if "@" in account:
        local, domain = account.rsplit("@", 1)
        shown = local[0] + "•••" + (local[-1] if len(local) > 2 else "")
        return f"{shown}@{domain}"
    return account[:2] + "•••" if len(account) > 2 else "•••"


REASONS = {
    "different_account": "That is not the account this invitation was sent to.",
    "email_not_verified": "That account's email address is not verified by its provider.",
    "no_email": "That account did not share an email address, so we cannot tell whether it is yours.",
    "wrong_domain": "That account is not part of the required Google Workspace domain.",
    "wrong_tenant": "That account belongs to a different Microsoft organization.",
    "personal_account": "That is a personal Microsoft account; this invitation needs a work or school account.",
    "wrong_provider": "That account is from a different sign-in provider than the invitation needs.",
    "identity_bound_to_other_member": "That account is already linked to another member of this organization.",
    "no_subject": "The provider did not identify that account.",
}


@bp.get("/auth/callback/<provider_name>")
def callback(provider_name: str) -> Response:
    """Finish the login: validate everything, apply the identity rules, redeem or explain why not."""
    b = bridge()
    provider = b.provider(provider_name)
    if provider is None:
        count_login("unknown", "expired")
        return page("login_expired.html", 400)
    pending = redeem.find_login(b, state=request.args.get("state", ""), browser_secrets=_browser_values(),
                                provider=provider_name)
    if pending is None:
        count_login(provider_name, "expired")
        return page("login_expired.html", 400)
    actor = _actor()
    retry = f"/invite/{pending.link_token}/login?provider={provider_name}"
    code = request.args.get("code")
    if request.args.get("error") or not code:
        # The person cancelled at the IdP or it refused: nothing to audit against the invite.
        with transaction(b.sessions) as session:
            redeem.claim_login(session, pending)
        count_login(provider_name, "cancelled")
        return page("signin_failed.html", 400, retry=retry, label=provider.label, cancelled=True)
    try:
        claims = provider.complete_login(code=code, code_verifier=pending.code_verifier, nonce=pending.nonce,
                                         iss=request.args.get("iss"))
        # One transaction uses the state up and redeems, so a login is either finished or still usable.
        with b.engine.begin() as connection:
            outcome = redeem.complete_login(connection, b, actor, pending, provider, claims)
    except LoginFailed as exc:
        current_app.logger.warning("login for invite %s failed: %s", pending.invite_id, exc)
        with transaction(b.sessions) as session:
            if redeem.claim_login(session, pending):
                redeem.record_login_failure(session, actor, pending.invite_id, provider_name, exc.reason, exc.detail)
        count_login(provider_name, "failed", exc.reason)
        return page("signin_failed.html", 400, retry=retry, label=provider.label, cancelled=False)
    if outcome is None:
        # Another callback with the same state finished first.
        count_login(provider_name, "expired")
        return page("login_expired.html", 400)
    count_login(provider_name, outcome.kind, outcome.reason)
    return _outcome_page(b, outcome, pending.link_token, provider_name)


def _outcome_page(b: Bridge, outcome: redeem.Outcome, token: str, provider_name: str) -> Response:
    if outcome.kind in (redeem.ACCEPTED, redeem.CONTINUE):
        if outcome.redirect_url:
            resp = redirect(outcome.redirect_url, 303)
            resp.headers.update(SECURITY_HEADERS)
            return resp  # type: ignore[return-value]
        return page("welcome.html", org=outcome.org)
    if outcome.kind == redeem.USED:
        return page("used.html", 410, org=outcome.org)
    if outcome.kind == redeem.REJECTED:
        assert outcome.invite is not None and outcome.org is not None
        used = mask(outcome.identity.account) if outcome.identity and outcome.identity.account else "an account"
        # For an `any` invite the person may want another provider: the choice page comes back if several.
        params = {"again": "1"}
        return page("wrong_account.html", 403, org=outcome.org, used=used,
                    expected=_account(b, outcome.invite, outcome.org),
                    reason=REASONS.get(outcome.reason or "", "That account cannot accept this invitation."),
                    bound=outcome.reason == "identity_bound_to_other_member",
                    again_url=f"/invite/{token}/login?{urlencode(params)}")
    if outcome.reason == "superseded" and outcome.org is not None:
        return page("superseded.html", 410, org=outcome.org)
    return invalid_page()


def _inviter(created_by: str, org: Organization) -> str:
    if created_by.startswith(("api_key:", "cli", "worker")) or not created_by:
        return f"An admin of {org.name}"
    return created_by
