"""paces shared by every worker; indexes the retention deletes walk

Revision ID: 0006_paces_and_retention
Revises: 0005_canonical_identifier_keys
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_paces_and_retention"
down_revision = "0005_canonical_identifier_keys"
branch_labels = None
depends_on = None

# (index, table, columns): each retention kind finds its oldest finished rows through one of these.
INDEXES = (
    ("ix_audit_events_at", "audit_events", ["at"]),
    ("ix_jobs_finished", "jobs", ["status", "finished_at"]),
    ("ix_webhook_deliveries_finished", "webhook_deliveries", ["status", "last_attempt_at"]),
    ("ix_webhook_attempts_at", "webhook_attempts", ["at"]),
    ("ix_inbound_events_status_received", "inbound_events", ["status", "received_at"]),
)


def upgrade() -> None:
    op.create_table(
        "paces",
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("next_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_paces")),
    )
    for name, table, columns in INDEXES:
        op.create_index(name, table, columns, unique=False)


def downgrade() -> None:
    for name, table, _columns in reversed(INDEXES):
        op.drop_index(name, table_name=table)
    op.drop_table("paces")
