"""The app factory: the one composition root that wires settings, database, providers and HTTP."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask, request
from flask.sessions import SessionInterface
from werkzeug.middleware.proxy_fix import ProxyFix

from idp_bridge.bridge import Bridge, build
from idp_bridge.errors import ConfigError
from idp_bridge.metrics import HANDLER_KEY, RequestMetrics
from idp_bridge.settings import load_settings
from idp_bridge.worker import JobKind, Worker


class NoCookieSession(SessionInterface):
    """No Flask session: the bridge keeps its few cookies itself (CSRF, login browser), so none is decoded or
    verified per request; writing to flask.session raises instead of setting a cookie."""

    def open_session(self, app: Flask, request: Any) -> None:
        return None

    def save_session(self, app: Flask, session: Any, response: Any) -> None:
        return None


def create_app(test_config: Mapping[str, Any] | None = None, *, bridge: Bridge | None = None) -> Flask:
    """Build the Flask app; test_config overrides settings like environment variables do."""
    from idp_bridge.web import api, headers, ops, pages, redact

    if bridge is None:
        bridge = build(load_settings(overrides=test_config))
    app = Flask(__name__)
    app.config.update(SECRET_KEY=bridge.settings.secret_key,
                      SECRET_KEY_FALLBACKS=list(bridge.settings.secret_key_fallbacks),
                      MAX_CONTENT_LENGTH=32 * 1024 * 1024, JSON_SORT_KEYS=False)
    app.extensions["idp_bridge"] = bridge
    app.session_interface = NoCookieSession()
    if bridge.settings.trust_proxy_headers:
        n = bridge.settings.trust_proxy_headers
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n)  # type: ignore[method-assign]
    redact.register_converter(app)
    api.install(app)
    headers.install(app, public_url=bridge.settings.public_url)
    app.register_blueprint(ops.bp)
    pages.install(app)
    from webhooks.inbound.routes import mount as mount_inbound_webhooks

    mount_inbound_webhooks(app)
    redact.install(app)

    @app.url_value_preprocessor
    def name_handler(endpoint: str | None, _values: dict[str, Any] | None) -> None:
        # Runs first for every routed request, before any before_request hook can answer it (rate limits).
        request.environ[HANDLER_KEY] = endpoint or "unmatched"

    app.extensions["idp_bridge_job_kinds"] = sorted(job_kinds(bridge))
    # Outermost, so it also counts the inbound webhooks mounted in front of the Flask app.
    app.wsgi_app = RequestMetrics(app.wsgi_app)  # type: ignore[method-assign]
    return app


def job_kinds(bridge: Bridge) -> dict[str, JobKind]:
    """Every job kind this deployment runs: the core's and those its plugins contribute."""
    from idp_bridge.handlers import core_kinds
    from idp_bridge.provisioning import provisioning_kinds
    from webhooks.inbound import routes as inbound
    from webhooks.outbound import delivery

    kinds = core_kinds()
    kinds.update(inbound.job_kinds())
    kinds.update(provisioning_kinds())
    kinds.update(delivery.job_kinds())
    for name, provider in bridge.providers.items():
        for kind_name, kind in provider.job_kinds().items():
            if not isinstance(kind, JobKind):
                raise ConfigError(f"providers.{name}", f"job kind {kind_name!r} is not an idp_bridge.worker.JobKind")
            kinds[kind_name] = kind
    return kinds


def make_worker(bridge: Bridge, *, concurrency: int = 4) -> Worker:
    """A worker with every job kind and periodic task wired."""
    from idp_bridge.handlers import sweep_expired
    from webhooks.inbound.microsoft_graph import renew_due
    from webhooks.outbound.delivery import fan_out

    # Every few seconds, so outbound webhooks leave soon after the change that emitted them.
    return Worker(bridge, job_kinds(bridge), concurrency=concurrency, periodic_every=5.0,
                  lease_seconds=bridge.settings.job_lease_seconds,
                  periodic=[sweep_expired, fan_out, renew_due])
