"""Invitee pages: server-rendered HTML that works without JavaScript, no external assets (one script of our own
tells the server the reader's time zone)."""

from __future__ import annotations

import functools
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, Flask, Response, current_app, g, redirect, render_template, request
from flask_babel import gettext, lazy_gettext, ngettext
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from sqlalchemy.orm import Session
from werkzeug.wrappers import Response as BaseResponse

from idp_bridge import locales
from idp_bridge.audit import Actor
from idp_bridge.bridge import Bridge
from idp_bridge.domain.providers import ANY
from idp_bridge.errors import NotFound
from idp_bridge.metrics import count_login
from idp_bridge.models import Invite, InviteStatus, Organization
from idp_bridge.services import callback as login_callback
from idp_bridge.services import invitee, invites, joining, orgs, redeem
from idp_bridge.store.db import read_only, transaction
from idp_bridge.web import console, i18n, login_browser
from idp_bridge.web.pages import ratelimit

bp = Blueprint("pages", __name__, template_folder="templates")
# A page handler: the bridge, the page's transaction, and the URL's path values.
PageHandler = Callable[..., Response]

SECURITY_HEADERS = {
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "Pragma": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; "
                               "img-src 'self' data:; "
                               "form-action 'self' https: http:; frame-ancestors 'none'; base-uri 'none'",
}
# Expired, revoked, unknown and tampered links look the same from outside: one page, one status.
INVALID_STATUS = 404
CSRF_COOKIE = "ib_csrf"
BROWSER_COOKIE = login_browser.BROWSER_COOKIE
COOKIE_MAX_AGE = login_browser.COOKIE_MAX_AGE


def install(app: Flask) -> None:
    """Register the invitee pages with their rate limits (shared by every process of the deployment by default)."""
    b = bridge_of(app)
    url = b.settings.rate_limit_storage_url
    settings = b.settings
    # No X-RateLimit-* headers on every page (reading the window back costs a second storage round per
    # request); a refused request still says when to come back (too_many). When the storage cannot be written
    # (database read-only, counter file gone, Redis down) the pages stay up, limited per process, with one
    # warning, until the storage answers again.
    storage_uri, storage_options = ratelimit.limiter_storage(url, b.engine)
    limiter = Limiter(get_remote_address, app=app, storage_uri=storage_uri, storage_options=storage_options,
                      in_memory_fallback_enabled=True, default_limits=[], headers_enabled=False, key_prefix="pages")
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


def page(template: str, status: int = 200, *, invite: Invite | None = None, **context: Any) -> Response:
    """Render an invitee page with the headers every invite page carries, in the invite's language if it has one."""
    if invite is not None:
        i18n.speak(invite.locale)
        context["invite"] = invite
    settings = bridge().settings
    context.setdefault("product_name", settings.product_name)
    context.setdefault("support_contact", settings.support_contact)
    if isinstance(context.get("org"), Organization):
        context.setdefault("look", orgs.look_of(settings, context["org"]))
    resp = Response(render_template(f"pages/{template}", **context), status=status, mimetype="text/html")
    resp.headers.update(SECURITY_HEADERS)
    if settings.branding_image_hosts:
        # Branding logos are shown from these hosts only (orgs.look_of leaves out any other).
        hosts = " ".join(f"https://{host}" for host in settings.branding_image_hosts)
        resp.headers["Content-Security-Policy"] = SECURITY_HEADERS["Content-Security-Policy"].replace(
            "img-src 'self' data:", f"img-src 'self' data: {hosts}")
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


def invitee_page(*, writes: bool) -> Callable[[PageHandler], Callable[..., Response]]:
    """Run an invitee page in one transaction (read-only unless it `writes`); a dead link gets its own page."""

    def decorate(fn: PageHandler) -> Callable[..., Response]:
        @functools.wraps(fn)
        def view(**path: Any) -> Response:
            b = bridge()
            try:
                with nullcontext() if writes else read_only(), transaction(b.sessions) as session:
                    return fn(b, session, **path)
            except invitee.DeadLink as exc:
                return _dead_link_page(exc.found)

        return view

    return decorate


@bp.get("/invite/<secret:token>")
@invitee_page(writes=False)
def landing(b: Bridge, session: Session, token: str) -> Response:
    """What the invite offers and which account it needs."""
    invite, org = invitee.open_invite(session, token)
    return _landing_page(b, invite, org, token, again=request.args.get("again") == "1")


def _dead_link_page(found: invites.LinkLookup) -> Response:
    """The page for a link that cannot be used now.

    Decided from the lookup alone, with no further reads: a dead link costs the same whatever killed it. A link
    that names an invite is answered in the invite's language, as its live page was.
    """
    i18n.speak(found.locale)
    named = {"name": found.org_name}
    if found.superseded and found.status == InviteStatus.PENDING:
        return page("superseded.html", 410, org=named)
    if not found.superseded and found.status == InviteStatus.ACCEPTED:
        return page("used.html", 410, org=named)
    return invalid_page()


def _account(b: Bridge, invite: Invite, org: Organization) -> str:
    provider = b.provider(invite.provider) if invite.provider != ANY else None
    target = invites.target_of(invite, org)
    if provider is None:
        return str(gettext("an account for %(identifier)s", identifier=invite.identifier))
    with locales.speaking(i18n.language()):
        return provider.account_description(target)


def _landing_page(b: Bridge, invite: Invite, org: Organization, token: str, *, again: bool = False,
                  error: str = "", status: int = 200) -> Response:
    i18n.speak(invite.locale)
    choices = redeem.login_providers(b, invite, org)
    needs_code = invitee.needs_code(invite, org)
    locked = needs_code and redeem.code_locked(invite)
    csrf = _csrf_secret() if needs_code else ""
    resp = page("landing.html", 403 if locked else status, org=org, invite=invite, account=_account(b, invite, org),
                role=invite.role.replace("_", " ").title(), expires=i18n.long_when(invite.expires_at),
                inviter=invites.inviter_text(invite, org, invite.created_by,
                                             unnamed=gettext("An admin of %(org)s", org=org.name)),
                token=token, needs_code=needs_code,
                locked=locked,
                csrf=_csrf_token(csrf) if csrf else "", error=error, again=again,
                providers=[(name, b.providers[name].label) for name in choices],
                login_url=f"/invite/{token}/login" + ("?again=1" if again else ""))
    return _with_csrf_cookie(resp)


@bp.get("/invite/<secret:token>/login")
@invitee_page(writes=True)
def login(b: Bridge, session: Session, token: str) -> Response:
    """Start the OIDC login for this invite (or ask which provider, for `any` with several)."""
    again = request.args.get("again") == "1"
    invite, org = invitee.open_invite(session, token)
    if invitee.needs_code(invite, org):
        # The code is typed on the landing page and posted; a GET cannot skip it.
        return redirect(f"/invite/{token}" + ("?again=1" if again else ""), 303)  # type: ignore[return-value]
    # Always a new value of our own, never one the browser presents: a value planted in the invitee's browser
    # (session fixation) would otherwise bind this login to a secret the planter knows.
    browser = login_browser.new_value()
    started = invitee.start(session, b, invite, org, token=token, provider_name=request.args.get("provider"),
                            browser_secret=browser, select_account=again)
    return _started(b, invite, org, token, again, started, browser)


@bp.post("/invite/<secret:token>/login")
def login_post(token: str) -> Response:
    """The invite-code form: check CSRF and the code, then start the login."""
    if not _csrf_ok():
        return page("form_expired.html", 400, token=token)
    return _login_with_code(token=token)


@invitee_page(writes=True)
def _login_with_code(b: Bridge, session: Session, token: str) -> Response:
    again = request.form.get("again") == "1"
    invite, org = invitee.open_invite(session, token, lock=True)
    browser = login_browser.new_value()
    started = invitee.start_with_code(session, b, _actor(), invite, org, code=request.form.get("code", ""),
                                      token=token, provider_name=request.form.get("provider"),
                                      browser_secret=browser, select_account=again)
    return _started(b, invite, org, token, again, started, browser)


def _actor() -> Actor:
    return Actor("invitee", "", request.remote_addr)


def _started(b: Bridge, invite: Invite, org: Organization, token: str, again: bool, started: invitee.Start,
             browser: str) -> Response:
    """The page (or redirect to the IdP) for how starting the login ended."""
    i18n.speak(invite.locale)
    providers = [(name, b.providers[name].label) for name in started.choices]
    if started.kind == invitee.NOT_ALLOWED:
        return page("choose.html", 400, org=org, token=token, again=again, needs_code=False, providers=providers)
    if started.kind == invitee.CHOOSE:
        return page("choose.html", org=org, token=token, again=again, needs_code=invitee.needs_code(invite, org),
                    providers=providers)
    if started.kind == invitee.NO_PROVIDER:
        return page("no_provider.html", 503, org=org)
    if started.kind == invitee.PROVIDER_DOWN:
        return page("provider_down.html", 503, org=org, token=token, label=started.label)
    if started.kind == invitee.CODE_LOCKED:
        return _landing_page(b, invite, org, token, again=again)
    if started.kind == invitee.WRONG_CODE:
        left = started.tries_left
        message = ngettext("That code is not right. %(num)d try left.", "That code is not right. %(num)d tries left.",
                           left) if left > 0 else ""
        return _landing_page(b, invite, org, token, again=again, error=message, status=400)
    return _to_provider(started.url, browser)


def _to_provider(url: str, browser: str) -> Response:
    """Send the browser to the IdP, holding the login-browser value the callback checks."""
    resp = redirect(url, 303)
    resp.headers.update(SECURITY_HEADERS)
    login_browser.remember(resp, browser)
    return resp  # type: ignore[return-value]


def mask(account: str) -> str:
    """Enough of an account for its owner to recognise it, not enough to harvest it."""
    if "@" in account:
        local, domain = account.rsplit("@", 1)
        shown = local[0] + "•••" + (local[-1] if len(local) > 2 else "")
        return f"{shown}@{domain}"
    return account[:2] + "•••" if len(account) > 2 else "•••"


REASONS = {
    "different_account": lazy_gettext("That is not the account this invitation was sent to."),
    "email_not_verified": lazy_gettext("That account's email address is not verified by its provider."),
    "no_email": lazy_gettext("That account did not share an email address, so we cannot tell whether it is "
                             "yours."),
    "wrong_domain": lazy_gettext("That account is not part of the required Google Workspace domain."),
    "wrong_tenant": lazy_gettext("That account belongs to a different Microsoft organization."),
    "personal_account": lazy_gettext("That is a personal Microsoft account; this invitation needs a work or "
                                     "school account."),
    "wrong_provider": lazy_gettext("That account is from a different sign-in provider than the invitation needs."),
    "identity_bound_to_other_member": lazy_gettext("That account is already linked to another member of this "
                                                   "organization."),
    "no_subject": lazy_gettext("The provider did not identify that account."),
}


@bp.get("/auth/callback/<provider_name>")
def callback(provider_name: str) -> Response:
    """Finish the login: validate everything, apply the identity rules, redeem or explain why not."""
    args = request.args
    done = login_callback.finish(bridge(), _actor(), provider_name, state=args.get("state", ""),
                                 browser_secrets=login_browser.values(), code=args.get("code"), error=args.get("error"),
                                 iss=args.get("iss"))
    count_login(provider_name if bridge().provider(provider_name) else "unknown", done.kind, done.reason)
    if done.sign_in is not None:
        return console.signed_in(done)
    if done.outcome is not None:
        return _outcome_page(bridge(), done.outcome, done.link_token, provider_name)
    if done.joined is not None:
        return _join_outcome_page(done.joined)
    if done.kind == login_callback.EXPIRED:
        return page("login_expired.html", 400)
    return page("signin_failed.html", 400, retry=done.retry_url, label=done.label,
                cancelled=done.kind == login_callback.CANCELLED)


def _outcome_page(b: Bridge, outcome: redeem.Redemption, token: str, provider_name: str) -> Response:
    if outcome.invite is not None:
        i18n.speak(outcome.invite.locale)
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
        used = (mask(outcome.identity.account) if outcome.identity and outcome.identity.account
                else gettext("an account"))
        # For an `any` invite the person may want another provider: the choice page comes back if several.
        params = {"again": "1"}
        return page("wrong_account.html", 403, org=outcome.org, used=used,
                    expected=_account(b, outcome.invite, outcome.org),
                    reason=REASONS.get(outcome.reason or "",
                                       lazy_gettext("That account cannot accept this invitation.")),
                    bound=outcome.reason == "identity_bound_to_other_member",
                    again_url=f"/invite/{token}/login?{urlencode(params)}")
    if outcome.reason == "superseded" and outcome.org is not None:
        return page("superseded.html", 410, org=outcome.org)
    return invalid_page()



JOIN_REASONS = {
    **REASONS,
    "no_email": lazy_gettext("That account did not share an email address, so we cannot tell which domain it "
                             "belongs to."),
    "email_not_verified": lazy_gettext("That account's email address is not verified by its provider (for a "
                                       "Microsoft work account: its organization has not verified the address's "
                                       "domain)."),
    "personal_account": lazy_gettext("That is a personal Microsoft account; this organization needs a work or "
                                     "school account."),
    "wrong_provider": lazy_gettext("That sign-in provider is not one this organization accepts."),
    "domain_not_verified": lazy_gettext("That account's email address is not on a domain this organization has "
                                        "verified."),
    "already_member": lazy_gettext("That account or its email address already has a membership or an invitation "
                                   "here; use your invitation, or ask an admin."),
    "seat_limit": lazy_gettext("This organization has no free seats right now."),
    "join_off": lazy_gettext("This organization does not let people join by their email domain."),
}


def _join_page(session: Session, slug: str) -> tuple[Organization | None, Response | None]:
    """The org behind a join URL, or the page saying it cannot be joined (unknown orgs look the same)."""
    try:
        org = orgs.get(session, slug)
    except NotFound:
        return None, page("join_closed.html", INVALID_STATUS)
    if not joining.accepting(org):
        return None, page("join_closed.html", INVALID_STATUS)
    return org, None


def _join_choices(b: Bridge, choices: list[str]) -> list[tuple[str, str]]:
    return [(name, b.providers[name].label) for name in choices]


@bp.get("/join/<slug>")
def join_landing(slug: str) -> Response:
    """An org's join page: the same sign-in choice as an invite page."""
    b = bridge()
    with read_only(), transaction(b.sessions) as session:
        org, closed = _join_page(session, slug)
        if org is None:
            assert closed is not None
            return closed
        return page("join.html", org=org, providers=_join_choices(b, joining.login_providers(b, org)),
                    request_mode=org.domain_join == "request", again=request.args.get("again") == "1")


@bp.get("/join/<slug>/login")
def join_login(slug: str) -> Response:
    """Start the OIDC login from a join page (straight to the provider when only one)."""
    b = bridge()
    again = request.args.get("again") == "1"
    with transaction(b.sessions) as session:
        org, closed = _join_page(session, slug)
        if org is None:
            assert closed is not None
            return closed
        browser = login_browser.new_value()
        started = joining.start(session, b, org, provider_name=request.args.get("provider"), browser_secret=browser,
                                select_account=again)
        if started.kind == invitee.REDIRECT:
            return _to_provider(started.url, browser)
        choices = _join_choices(b, started.choices or joining.login_providers(b, org))
        common: dict[str, Any] = {"org": org, "providers": choices, "request_mode": org.domain_join == "request",
                                  "again": again}
        if started.kind == invitee.CHOOSE:
            return page("join.html", **common)
        if started.kind == invitee.NOT_ALLOWED:
            return page("join.html", 400, error=gettext("That sign-in provider is not available here; pick one below."),
                        **common)
        label = started.label or gettext("The sign-in provider")
        return page("join.html", 503, error=gettext("%(label)s can't be reached right now; try again in a few minutes.",
                                                    label=label), **common)


def _join_outcome_page(outcome: joining.JoinOutcome) -> Response:
    used = mask(outcome.identity.account) if outcome.identity and outcome.identity.account else gettext("an account")
    if outcome.kind in (joining.JOINED, joining.CONTINUE):
        if outcome.redirect_url:
            resp = redirect(outcome.redirect_url, 303)
            resp.headers.update(SECURITY_HEADERS)
            return resp  # type: ignore[return-value]
        return page("join_result.html", org=outcome.org, used=used, requested=False)
    if outcome.kind == joining.REQUESTED:
        return page("join_result.html", 202, org=outcome.org, used=used, requested=True)
    return page("join_refused.html", 403, org=outcome.org, used=used,
                reason=JOIN_REASONS.get(outcome.reason or "",
                                        lazy_gettext("That account cannot join this organization.")),
                again_url=f"/join/{outcome.org.slug}/login?again=1")
