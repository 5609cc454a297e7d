"""The login-browser cookie: which browser started a login, so only that browser can finish it (invites and the
console sign in through the same callback)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from flask import current_app, request
from werkzeug.wrappers import Response

BROWSER_COOKIE = "ib_login"
# How many logins one browser may have in flight at once (tabs); the cookie holds one value for each.
LOGINS_PER_BROWSER = 4
BROWSER_VALUE_RANDOM = 43
COOKIE_MAX_AGE = 3600


def _mac(value: str) -> str:
    key = current_app.extensions["idp_bridge"].settings.secret_key
    digest = hmac.new(key.encode(), b"login-browser:" + value.encode(), hashlib.sha256)
    return base64.urlsafe_b64encode(digest.digest()[:16]).decode().rstrip("=")


def new_value() -> str:
    """A fresh login-browser value: 256 random bits and our MAC of them (so we know it for ours later).

    Always a new value of our own, never one the browser presents: a value planted in the browser (session
    fixation) would otherwise bind the login to a secret the planter knows.
    """
    value = secrets.token_urlsafe(32)
    return value + _mac(value)


def we_made(value: str) -> bool:
    """Whether a presented login-browser value is one this deployment made (not one planted from elsewhere)."""
    random_part, mac = value[:BROWSER_VALUE_RANDOM], value[BROWSER_VALUE_RANDOM:]
    return (len(random_part) == BROWSER_VALUE_RANDOM
            and hmac.compare_digest(mac.encode(), _mac(random_part).encode()))


def values() -> list[str]:
    """The login-browser values this browser presents, one per login in flight (the callback checks the binding)."""
    return [v for v in (request.cookies.get(BROWSER_COOKIE) or "").split(".")[:LOGINS_PER_BROWSER] if v]


def remember(resp: Response, browser: str) -> None:
    """Add a login started now to the cookie; logins started earlier in this browser (other tabs) stay
    finishable, and only values we made are kept."""
    kept = [value for value in values() if we_made(value)][:LOGINS_PER_BROWSER - 1]
    resp.set_cookie(BROWSER_COOKIE, ".".join([browser, *kept]), max_age=COOKIE_MAX_AGE, httponly=True,
                    samesite="Lax", secure=request.is_secure, path="/")
