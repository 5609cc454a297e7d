"""The composition root: the one place that builds settings, the database, providers, jobs and faces, and
wires the adapters (providers/, webhooks/) into the core."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask

from idp_bridge import logs
from idp_bridge.bridge import Bridge
from idp_bridge.domain.providers import Provider
from idp_bridge.errors import ConfigError
from idp_bridge.mail import MailTransport, make_transport
from idp_bridge.metrics import RequestMetrics
from idp_bridge.plugins import build_providers
from idp_bridge.settings import Settings, ensure_instance, load_settings, warn_unknown_environment
from idp_bridge.store.db import make_engine, make_session_factory
from idp_bridge.web.requestid import RequestId
from idp_bridge.worker import JobKind, Worker
from providers.http import ProviderHTTP
from providers.jwks import JWKSCache

# Outbound webhooks leave this soon after the change that emitted them; expired invites close as promptly.
PERIODIC_EVERY_SECONDS = 5.0


def build(settings: Settings, *, mail: MailTransport | None = None,
          providers: dict[str, Provider] | None = None, jwks: JWKSCache | None = None) -> Bridge:
    """Wire a Bridge from settings; configuration errors surface here, before serving."""
    ensure_instance(settings)
    engine = make_engine(settings.database_url)
    # One JWKS cache for every consumer of signing keys (OIDC login, Keycloak bearer webhooks, Google RISC),
    # so an unknown kid refetches a JWKS URL at most once per window whoever asks; `create_app` hands the
    # inbound webhooks the same one.
    http = ProviderHTTP(jwks=jwks or JWKSCache())
    return Bridge(
        settings=settings,
        engine=engine,
        sessions=make_session_factory(engine),
        providers=providers if providers is not None else build_providers(
            settings.providers, public_url=settings.public_url, http=http),
        mail=mail or make_transport(settings),
    )


def create_app(test_config: Mapping[str, Any] | None = None, *, bridge: Bridge | None = None,
               jwks: JWKSCache | None = None, settings: Settings | None = None) -> Flask:
    """Build the Flask app; test_config overrides settings like environment variables do.

    `bridge` and `jwks`: what `build` made, when the caller built it (tests); the inbound webhooks verify
    signatures through `jwks`, the cache the bridge's providers were handed. `settings`: already loaded ones.
    """
    from idp_bridge.web.app import assemble
    from webhooks.inbound.routes import Receiver, mount

    jwks = jwks or JWKSCache()
    if bridge is None:
        settings = settings or load_settings(overrides=test_config)
        # Under a WSGI server that configured no logging; `idp-bridge serve` did this already.
        logs.configure(settings.log_format)
        warn_unknown_environment()
        bridge = build(settings, jwks=jwks)
    app = assemble(bridge, job_kinds=sorted(job_kinds(bridge)))
    mount(app, Receiver(bridge, jwks))
    # Outermost, so they also count and label the inbound webhooks mounted in front of the Flask app.
    app.wsgi_app = RequestMetrics(app.wsgi_app)  # type: ignore[method-assign]
    app.wsgi_app = RequestId(app.wsgi_app)  # type: ignore[method-assign]
    return app


def job_kinds(bridge: Bridge) -> dict[str, JobKind]:
    """Every job kind this deployment runs: the core's and those its plugins contribute."""
    from idp_bridge.core_jobs import core_kinds
    from idp_bridge.provisioning import Provisioning
    from webhooks.inbound import routes as inbound
    from webhooks.outbound.delivery import Outbound

    kinds = core_kinds()
    kinds.update(inbound.job_kinds())
    kinds.update(Provisioning(bridge).job_kinds())
    kinds.update(Outbound(bridge).job_kinds())
    for name, provider in bridge.providers.items():
        for kind_name, kind in provider.job_kinds().items():
            if not isinstance(kind, JobKind):
                raise ConfigError(f"providers.{name}", f"job kind {kind_name!r} is not an idp_bridge.worker.JobKind")
            kinds[kind_name] = kind
    return kinds


def make_worker(bridge: Bridge, *, concurrency: int = 4) -> Worker:
    """A worker with every job kind and periodic task wired."""
    from idp_bridge.core_jobs import sweep_expired
    from webhooks.inbound.microsoft_graph import renew_due
    from webhooks.outbound.delivery import fan_out

    return Worker(bridge, job_kinds(bridge), concurrency=concurrency, periodic_every=PERIODIC_EVERY_SECONDS,
                  lease_seconds=bridge.settings.job_lease_seconds,
                  periodic=[sweep_expired, fan_out, renew_due])


def graph_subscribe(bridge: Bridge, names: list[str]) -> list[tuple[str, Any]]:
    """Create the Graph users subscription of each named Entra provider (every one with a client state if none)."""
    from webhooks.inbound import microsoft_graph

    names = names or [s.name for s in microsoft_graph.sources(bridge) if s.client_state()]
    return [(name, microsoft_graph.subscribe(bridge, name)) for name in names]
