"""Alembic environment: uses the engine idp-bridge hands it, or the URL in the config."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

# Adapters own some tables (graph_subscriptions); importing them puts those on Base.metadata for autogenerate.
import webhooks.inbound.microsoft_graph  # noqa: F401
from idp_bridge.models import Base

config = context.config
target_metadata = Base.metadata


def run_migrations_offline() -> None:
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=target_metadata,
                      literal_binds=True, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = config.attributes.get("engine") or create_engine(str(config.get_main_option("sqlalchemy.url")))
    with engine.connect() as connection:
        # Batch mode lets later migrations alter SQLite tables (copy-and-move).
        context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True,
                          compare_type=True)
        with context.begin_transaction():
            if connection.dialect.name == "postgresql":
                # Two processes upgrading at once (several `serve` starting) take turns.
                connection.exec_driver_sql("SELECT pg_advisory_xact_lock(774411)")
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
