"""canonical identifier keys: recompute identifier_key of members and invites with a non-ASCII identifier

SPEC §3 rule 5 now compares identifiers in one canonical form (ASCII letters lower-cased, every other code
point as given, the domain as its IDNA 2008 / UTS #46 A-label). Keys written before were str.casefold() of
the identifier; for an ASCII identifier both forms are equal, so only non-ASCII rows change. No two rows can
collide: the canonical form never equates two identifiers that casefold kept apart.

Revision ID: 0005_canonical_identifier_keys
Revises: 0004_rate_limits
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from idp_bridge.identifiers import identifier_key

revision = "0005_canonical_identifier_keys"
down_revision = "0004_rate_limits"
branch_labels = None
depends_on = None

BATCH = 1000


def upgrade() -> None:
    conn = op.get_bind()
    for name in ("members", "invites"):
        table = sa.table(name, sa.column("id", sa.String), sa.column("identifier", sa.String),
                         sa.column("identifier_key", sa.String))
        changed: list[dict[str, str]] = []
        # Only rows with a non-ASCII identifier (more bytes than characters) can change; read only those.
        if conn.dialect.name == "postgresql":
            octets = sa.func.octet_length(table.c.identifier)
        else:
            octets = sa.func.length(sa.cast(table.c.identifier, sa.LargeBinary))
        rows = conn.execute(sa.select(table.c.id, table.c.identifier, table.c.identifier_key)
                            .where(octets != sa.func.length(table.c.identifier)))
        for row_id, identifier, old_key in rows:
            try:
                key = identifier_key(identifier.strip())
            except ValueError:
                continue  # Never valid IDNA: it matches no identity anyway, so its key may stay.
            if key != old_key:
                changed.append({"row_id": row_id, "key": key})
        update = table.update().where(table.c.id == sa.bindparam("row_id")).values(identifier_key=sa.bindparam("key"))
        for start in range(0, len(changed), BATCH):
            conn.execute(update, changed[start:start + BATCH])


def downgrade() -> None:
    # Casefolded keys could make two live rows (straße and strasse) collide in the unique indexes; the
    # canonical keys stay, and an older release only misses duplicates among non-ASCII identifiers.
    pass
