"""The admin console: server-rendered pages for an org's owners and admins, signed in through the providers.

Every org page is registered with the permission it needs (ROUTES, the console's route registry); a handler
parses the form, calls the same service the API calls with the signed-in member as the actor, and renders.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from flask import (
    Blueprint,
    Flask,
    Response,
    abort,
    current_app,
    redirect,
    render_template,
    request,
    send_from_directory,
    stream_with_context,
)
from flask_babel import gettext
from sqlalchemy.orm import Session

from idp_bridge.audit import Actor
from idp_bridge.bridge import Bridge
from idp_bridge.errors import BridgeError, ValidationFailed
from idp_bridge.models import ConsoleSession, Organization
from idp_bridge.permissions import USERS_READ
from idp_bridge.security import token_hash
from idp_bridge.services import callback as login_callback
from idp_bridge.services import console, orgs
from idp_bridge.store.db import transaction
from idp_bridge.web import login_browser
from idp_bridge.web.api import status_for

bp = Blueprint("console", __name__, template_folder="templates")
SESSION_COOKIE = "ib_console"
COOKIE_PATH = "/console"
CSRF_FIELD = "csrf_token"
STATIC_DIR = Path(__file__).parent / "static"
# Static files are named with a digest of their content in the query string, so a year's cache never serves a
# stale copy after an upgrade.
STATIC_MAX_AGE = 365 * 24 * 3600
STATIC_TYPES = {".js": "text/javascript; charset=utf-8"}
T = TypeVar("T")


@dataclass(frozen=True)
class ConsoleRoute:
    """One org page of the console: its URL rule, methods and the permission its role must hold."""

    endpoint: str
    rule: str
    methods: tuple[str, ...]
    permission: str


# The console's route registry: every org page, with the permission it needs (tests walk it).
ROUTES: list[ConsoleRoute] = []


@dataclass
class Page:
    """A signed-in request to an org page: the bridge, its transaction, the session and the membership."""

    bridge: Bridge
    session: Session
    signed_in: ConsoleSession
    me: console.Membership

    @property
    def org(self) -> Organization:
        return self.me.org

    @property
    def actor(self) -> Actor:
        return self.me.actor(request.remote_addr)

    def render(self, template: str, status: int = 200, **context: Any) -> Response:
        return render(template, status, me=self.me, org=self.me.org, signed_in=self.signed_in,
                      csrf_token=csrf_token(self.signed_in), **context)

    def attempt(self, action: Callable[[], Any]) -> tuple[Any, BridgeError | None]:
        """Run a service call behind a savepoint: on a refusal nothing it wrote stays, and the refusal is returned."""
        try:
            with self.session.begin_nested():
                return action(), None
        except BridgeError as exc:
            return None, exc

    def not_found(self, exc: BridgeError) -> Response:
        """The page for a row that is missing or another org's."""
        return self.render("message.html", status_for(exc), title=gettext("Not found"), message=exc.detail)

    def confirmed(self, load: Callable[[], T], step: Callable[[T, int, BridgeError | None], Response],
                  act: Callable[[T], Any], done: Callable[[Any], Response], *, ask: bool = True) -> Response:
        """A per-row action behind its confirmation step.

        The row (or "Not found"); on GET, and on a POST without "Confirm" when `ask`, the step itself; then the
        action behind a savepoint: its result goes to `done`, a refusal shows the step again with the problem
        and leaves nothing changed.
        """
        try:
            target = load()
        except BridgeError as exc:
            return self.not_found(exc)
        if request.method == "GET" or (ask and request.form.get("confirmed") != "1"):
            return step(target, 200, None)
        result, error = self.attempt(lambda: act(target))
        if error is not None:
            return step(target, status_for(error), error)
        return done(result)


def install(app: Flask) -> None:
    """Register the console, with its own per-session rate limit (signed-in pages are not under the invite
    pages' per-IP limit)."""
    from idp_bridge.web.console import join_pages, pages  # noqa: F401  (register the org pages on bp)

    settings = app.extensions["idp_bridge"].settings
    app.jinja_env.globals["console_static"] = static_url
    app.register_blueprint(bp)
    limiter = app.extensions["idp_bridge_limiter"]
    limiter.limit(settings.console_rate_limit, key_func=_rate_key)(bp)


def bridge() -> Bridge:
    b: Bridge = current_app.extensions["idp_bridge"]
    return b


def _rate_key() -> str:
    token = request.cookies.get(SESSION_COOKIE) or ""
    return "console:" + (token_hash(token) if token else f"ip:{request.remote_addr}")


def headers() -> dict[str, str]:
    """The console's response headers: no caching, no sniffing, framed only by the configured origins."""
    ancestors = bridge().settings.console_frame_ancestors
    out = {
        "Referrer-Policy": "same-origin",
        "Cache-Control": "no-store",
        "Pragma": "no-cache",
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": f"default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; "
                                   f"img-src {image_sources()}; "
                                   "form-action 'self'; base-uri 'none'; frame-ancestors "
                                   + (" ".join(ancestors) if ancestors else "'none'"),
    }
    if not ancestors:
        out["X-Frame-Options"] = "DENY"
    return out


def image_sources() -> str:
    """CSP img-src: our own origin, and the hosts branding logos may come from."""
    return " ".join(["'self'", "data:", *(f"https://{host}" for host in bridge().settings.branding_image_hosts)])


@functools.cache
def static_url(name: str) -> str:
    """The URL of one of the console's static files, versioned by its content."""
    digest = hashlib.sha256((STATIC_DIR / name).read_bytes()).hexdigest()[:16]
    return f"/console/static/{name}?v={digest}"


@bp.get("/console/static/<name>")
def static_file(name: str) -> Response:
    """The console's own scripts (the CSP allows scripts from this origin only), cached for a year."""
    kind = STATIC_TYPES.get(Path(name).suffix)
    if kind is None or not (STATIC_DIR / name).is_file():
        abort(404)
    resp = send_from_directory(STATIC_DIR, name, max_age=STATIC_MAX_AGE, conditional=True)
    resp.headers["Content-Type"] = kind
    resp.headers["Cache-Control"] = f"public, max-age={STATIC_MAX_AGE}, immutable"
    resp.headers["X-Content-Type-Options"] = "nosniff"
    return resp


def render(template: str, status: int = 200, **context: Any) -> Response:
    """A console page with the console's headers (and the org's branding, on org pages)."""
    context.setdefault("product_name", bridge().settings.product_name)
    if context.get("org") is not None:
        context.setdefault("look", orgs.look_of(bridge().settings, context["org"]))
    resp = Response(render_template(f"console/{template}", **context), status=status, mimetype="text/html")
    resp.headers.update(headers())
    return resp


def see_other(url: str) -> Response:
    resp = redirect(url, 303)
    resp.headers.update(headers())
    return resp  # type: ignore[return-value]


@bp.errorhandler(429)
def too_many(_exc: Exception) -> Response:
    return render("message.html", 429, title=gettext("Too many requests"),
                  message=gettext("Too many requests from this session. Wait a minute and try again."))


def _csrf(signed_in: ConsoleSession, key: str) -> str:
    return hmac.new(key.encode(), b"console-csrf:" + signed_in.token_hash.encode(), hashlib.sha256).hexdigest()


def csrf_token(signed_in: ConsoleSession) -> str:
    """The session's CSRF token, for the hidden field of every form."""
    return _csrf(signed_in, bridge().settings.secret_key)


def csrf_ok(signed_in: ConsoleSession) -> bool:
    """The posted token is this session's (made with the current key or a fallback one)."""
    field = (request.form.get(CSRF_FIELD) or "").encode()
    return any(hmac.compare_digest(field, _csrf(signed_in, key).encode()) for key in bridge().secret_keys)


def _cookie() -> str:
    return request.cookies.get(SESSION_COOKIE) or ""


def set_session_cookie(resp: Response, token: str) -> None:
    settings = bridge().settings
    resp.set_cookie(SESSION_COOKIE, token, max_age=settings.console_session_max_hours * 3600, httponly=True,
                    samesite="Lax", secure=settings.public_url.startswith("https://"), path=COOKIE_PATH)


def clear_session_cookie(resp: Response) -> None:
    settings = bridge().settings
    resp.delete_cookie(SESSION_COOKIE, path=COOKIE_PATH, httponly=True, samesite="Lax",
                       secure=settings.public_url.startswith("https://"))


def org_page(rule: str, *, permission: str = USERS_READ,
             methods: tuple[str, ...] = ("GET",)) -> Callable[[Callable[..., Response]], Callable[..., Response]]:
    """Register an org page: signed in, an ACTIVE member of the org, the role's permission, CSRF on posts."""

    def decorate(fn: Callable[..., Response]) -> Callable[..., Response]:
        ROUTES.append(ConsoleRoute(fn.__name__, "/console/<org>" + rule, methods, permission))

        @functools.wraps(fn)
        def view(org: str, **path: Any) -> Response:
            b = bridge()
            with transaction(b.sessions) as session:
                signed_in = console.open_session(session, b.settings, _cookie())
                if signed_in is None:
                    return _signed_out_answer()
                me = console.membership(session, b.settings, signed_in, org)
                if me is None:
                    return render("message.html", 403, title=gettext("No access"), signed_in=signed_in,
                                  csrf_token=csrf_token(signed_in),
                                  message=gettext("You are not an active member of this organization."))
                page = Page(b, session, signed_in, me)
                if request.method == "POST" and not csrf_ok(signed_in):
                    return page.render("message.html", 400, title=gettext("Form expired"),
                                       message=gettext("This form has expired or did not come from this console. "
                                                       "Nothing was changed. Go back, reload the page and try "
                                                       "again."))
                if not me.may(permission):
                    return forbidden(page, permission)
                return fn(page, **path)

        bp.add_url_rule("/console/<org>" + rule, fn.__name__, view, methods=list(methods))
        return view

    return decorate


def forbidden(page: Page, permission: str) -> Response:
    """The 403 page naming the permission the member's role lacks."""
    return page.render("message.html", 403, title=gettext("Not allowed"),
                       message=gettext("Your role %(role)s does not have the permission %(permission)s.",
                                       role=page.me.member.role, permission=permission),
                       permission=permission)


def _signed_out_answer() -> Response:
    if request.method == "GET":
        return see_other("/console")
    resp = render("message.html", 401, title=gettext("Signed out"),
                  message=gettext("Your session has ended. Nothing was changed. Sign in again to continue."),
                  sign_in=True)
    clear_session_cookie(resp)
    return resp


@bp.get("/console")
def home() -> Response:
    """Sign-in, or for a signed-in person the org picker (straight to the org when there is one)."""
    b = bridge()
    with transaction(b.sessions) as session:
        signed_in = console.open_session(session, b.settings, _cookie())
        if signed_in is None:
            return _sign_in_page(b)
        found = console.memberships(session, b.settings, signed_in)
        if len(found) == 1:
            return see_other(f"/console/{found[0].org.slug}/members")
        status = 200 if found else 403
        return render("picker.html", status, memberships=found, signed_in=signed_in,
                      csrf_token=csrf_token(signed_in))


def _sign_in_page(b: Bridge) -> Response:
    providers = [(name, provider.label) for name, provider in b.providers.items()]
    if len(providers) == 1 and request.args.get("signed_out") != "1":
        return see_other(f"/console/login?provider={providers[0][0]}")
    return render("sign_in.html", 200 if providers else 503, providers=providers,
                  signed_out=request.args.get("signed_out") == "1")


@bp.get("/console/login")
def login() -> Response:
    """Start a console sign-in at one provider: the same login states and browser binding as an invite's."""
    b = bridge()
    provider = b.provider(request.args.get("provider", ""))
    if provider is None:
        return render("message.html", 404, title=gettext("Unknown sign-in provider"),
                      message=gettext("That sign-in provider is not configured."), sign_in=True)
    browser = login_browser.new_value()
    with transaction(b.sessions) as session:
        # Signing in again ends the session this browser held (the cookie reaches /console paths only).
        console.sign_out(session, _cookie())
        url = console.start(session, b.settings, provider, browser_secret=browser)
    if url is None:
        return render("message.html", 503, title=gettext("Sign-in unavailable"), sign_in=True,
                      message=gettext("%(label)s cannot be reached right now. Try again in a few minutes.",
                                      label=provider.label))
    resp = see_other(url)
    login_browser.remember(resp, browser)
    return resp


def signed_in(done: login_callback.Callback) -> Response:
    """The callback's answer to a console sign-in: the session cookie and the console, or why not."""
    assert done.sign_in is not None
    if done.sign_in.kind != console.SIGNED_IN:
        return render("message.html", 403, title=gettext("No access"), sign_in=True,
                      message=gettext("%(account)s is not linked to an active member of any organization. Sign in "
                                      "with the account you accepted your invitation with.",
                                      account=done.sign_in.account or gettext("That account")))
    resp = see_other("/console")
    set_session_cookie(resp, done.sign_in.token)
    return resp


@bp.post("/console/sign-out")
def sign_out() -> Response:
    """End the session (CSRF-checked: a cross-site post cannot sign anyone out)."""
    b = bridge()
    with transaction(b.sessions) as session:
        signed = console.open_session(session, b.settings, _cookie())
        if signed is None:
            resp = see_other("/console?signed_out=1")
            clear_session_cookie(resp)
            return resp
        if not csrf_ok(signed):
            return render("message.html", 400, title=gettext("Form expired"), signed_in=signed,
                          csrf_token=csrf_token(signed),
                          message=gettext("This form has expired or did not come from this console. Nothing was "
                                          "changed."))
        console.sign_out(session, _cookie())
    resp = see_other("/console?signed_out=1")
    clear_session_cookie(resp)
    return resp


def stream_csv(lines: Iterator[str], filename: str) -> Response:
    resp = Response(stream_with_context(lines), mimetype="text/csv")
    resp.headers.update(headers())
    resp.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    return resp


def field_errors(exc: BridgeError) -> dict[str, list[str]]:
    return exc.errors if isinstance(exc, ValidationFailed) else {}
