"""Alembic, run programmatically against the configured database."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.environment import EnvironmentContext
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False).replace("%", "%%"))
    cfg.attributes["engine"] = engine
    return cfg


def scripts() -> ScriptDirectory:
    """The migration scripts, without a database."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return ScriptDirectory.from_config(cfg)


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to `revision` (default: the newest), one process at a time on a shared database."""
    command.upgrade(alembic_config(engine), revision)


def downgrade(engine: Engine, revision: str) -> None:
    """Take the schema back to `revision` (`base` empties it; `-1` is one step)."""
    command.downgrade(alembic_config(engine), revision)


def current_heads(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        return set(MigrationContext.configure(conn).get_current_heads())


@dataclass(frozen=True)
class Revision:
    """One revision the database is at."""

    revision: str
    description: str
    head: bool


def current(engine: Engine) -> list[Revision]:
    """The revisions the database is at (none for an empty database)."""
    found = scripts()
    heads = set(found.get_heads())
    return [Revision(rev, found.get_revision(rev).doc.splitlines()[0] if found.get_revision(rev).doc else "",
                     rev in heads)
            for rev in sorted(current_heads(engine))]


def drift(engine: Engine) -> list[str]:
    """What differs between the models and the schema the migrations built, one line each; empty when none.

    The comparison runs inside the migrations' own environment (env.py), which knows every table on the
    models' metadata, adapters' included. A database that is not at the newest revision is reported as such:
    its differences would be the migrations not yet applied, not drift.
    """
    cfg = alembic_config(engine)
    found = scripts()
    heads = set(found.get_heads())
    lines: list[str] = []

    def compare(rev: Any, context: MigrationContext) -> list[Any]:
        at = set(context.get_current_heads())
        if at != heads:
            lines.append(f"the database is at {', '.join(sorted(at)) or 'no revision'}, not at the newest "
                         f"revision {', '.join(sorted(heads))}: run `idp-bridge db upgrade` first")
        else:
            metadata = context.opts["target_metadata"]
            lines.extend(describe(diff) for diff in compare_metadata(context, metadata))
        return []

    with EnvironmentContext(cfg, found, fn=compare):
        found.run_env()
    return lines


def describe(diff: Any) -> str:
    """One line for an autogenerate difference: `add_column members.nickname`, `modify_type t.c: A -> B`."""
    if isinstance(diff, list):
        return "; ".join(describe(part) for part in diff)
    op = diff[0]
    if op.startswith("modify_"):
        _, schema, table, column, _existing, old, new = diff
        return f"{op} {_dotted(schema, table, column)}: {old!r} -> {new!r}"
    if op in ("add_column", "remove_column"):
        _, schema, table, column = diff
        return f"{op} {_dotted(schema, table, column.name)}"
    item = diff[1]
    table = getattr(item, "table", None)
    name = getattr(item, "name", None) or repr(item)
    return f"{op} {_dotted(getattr(table, 'schema', None), getattr(table, 'name', None), name)}"


def _dotted(*parts: str | None) -> str:
    return ".".join(p for p in parts if p)
