"""Alembic environment: the engine idp-bridge hands it, the URL in the Alembic config, or the configured database.

The last one is for plain `alembic upgrade head` beside alembic.ini: it migrates the database idp-bridge itself
would use (IDP_BRIDGE_DATABASE_URL, or the configuration file).
"""

from __future__ import annotations

from alembic import context

# Adapters own some tables (graph_subscriptions); importing them puts those on Base.metadata for autogenerate.
import webhooks.inbound.microsoft_graph  # noqa: F401
from idp_bridge.models import Base
from idp_bridge.store.db import make_engine, migrating, migration_lock_sql

config = context.config
target_metadata = Base.metadata


def database_url() -> str:
    url = config.get_main_option("sqlalchemy.url")
    if url:
        return url
    from idp_bridge.settings import load_settings

    settings = load_settings()
    # The default SQLite file lives in the instance dir, which idp-bridge would have created first.
    settings.instance_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    return settings.database_url


def run_migrations_offline() -> None:
    context.configure(url=database_url(), target_metadata=target_metadata,
                      literal_binds=True, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = config.attributes.get("engine") or make_engine(database_url())
    with engine.connect() as connection:
        # Batch mode lets later migrations alter SQLite tables (copy-and-move).
        context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True,
                          compare_type=True)
        with migrating(connection), context.begin_transaction():
            lock = migration_lock_sql(connection)
            if lock is not None:
                # Two processes upgrading at once (several `serve` starting, a migration Job) take turns.
                connection.exec_driver_sql(lock)
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
