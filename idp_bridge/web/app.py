"""The Flask app of the HTTP faces: the JSON API, the invitee pages, the admin console and the operations
endpoints."""

from __future__ import annotations

from typing import Any

from flask import Flask, request
from flask.sessions import SessionInterface
from werkzeug.middleware.proxy_fix import ProxyFix

from idp_bridge.bridge import Bridge
from idp_bridge.metrics import HANDLER_KEY
from idp_bridge.web import api, console, headers, i18n, ops, pages, redact, scim, scim_direct

# Largest request body any face accepts (bulk CSV imports are the big ones).
MAX_CONTENT_LENGTH = 32 * 1024 * 1024


class NoCookieSession(SessionInterface):
    """No Flask session: the bridge keeps its few cookies itself (CSRF, login browser), so none is decoded or
    verified per request; writing to flask.session raises instead of setting a cookie."""

    def open_session(self, app: Flask, request: Any) -> None:
        return None

    def save_session(self, app: Flask, session: Any, response: Any) -> None:
        return None


def assemble(bridge: Bridge, *, job_kinds: list[str]) -> Flask:
    """The Flask app over `bridge`, with every face installed; the composition root mounts the rest around it."""
    app = Flask("idp_bridge")
    app.config.update(SECRET_KEY=bridge.settings.secret_key,
                      SECRET_KEY_FALLBACKS=list(bridge.settings.secret_key_fallbacks),
                      MAX_CONTENT_LENGTH=MAX_CONTENT_LENGTH, JSON_SORT_KEYS=False)
    app.extensions["idp_bridge"] = bridge
    app.extensions["idp_bridge_job_kinds"] = job_kinds
    app.session_interface = NoCookieSession()
    redact.register_converter(app)
    api.install(app)
    scim.install(app)
    headers.install(app, public_url=bridge.settings.public_url)
    app.register_blueprint(ops.bp)
    i18n.install(app)
    pages.install(app)
    console.install(app)
    redact.install(app)

    @app.url_value_preprocessor
    def name_handler(endpoint: str | None, _values: dict[str, Any] | None) -> None:
        # Runs first for every routed request, before any before_request hook can answer it (rate limits).
        request.environ[HANDLER_KEY] = endpoint or "unmatched"

    scim_direct.mount(app, bridge)
    if bridge.settings.trust_proxy_headers:
        # Outermost of the app's own layers: the client's address is the proxy's view of it for all of them.
        n = bridge.settings.trust_proxy_headers
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n)  # type: ignore[method-assign]
    return app
