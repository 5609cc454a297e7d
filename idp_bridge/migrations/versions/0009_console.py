"""console: sessions of signed-in admins, login states without an invite, the inviter of an invite, org branding

Revision ID: 0009_console
Revises: 0008_scim
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import idp_bridge.models

revision = "0009_console"
down_revision = "0008_scim"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "console_sessions",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("provider", sa.String(length=64), nullable=False),
        sa.Column("issuer", sa.String(length=500), nullable=False),
        sa.Column("subject", sa.String(length=255), nullable=False),
        sa.Column("account", sa.String(length=320), nullable=False),
        sa.Column("created_at", idp_bridge.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", idp_bridge.models.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_console_sessions")),
    )
    with op.batch_alter_table("console_sessions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_console_sessions_created_at"), ["created_at"], unique=False)
    with op.batch_alter_table("login_states", schema=None) as batch_op:
        batch_op.alter_column("invite_id", existing_type=sa.String(length=36), nullable=True)
    with op.batch_alter_table("organizations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("branding", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()),
                                                                       "postgresql"), nullable=True))
    with op.batch_alter_table("invites", schema=None) as batch_op:
        batch_op.add_column(sa.Column("inviter", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
                                      nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("invites", schema=None) as batch_op:
        batch_op.drop_column("inviter")
    with op.batch_alter_table("organizations", schema=None) as batch_op:
        batch_op.drop_column("branding")
    op.execute("DELETE FROM login_states WHERE invite_id IS NULL")
    with op.batch_alter_table("login_states", schema=None) as batch_op:
        batch_op.alter_column("invite_id", existing_type=sa.String(length=36), nullable=False)
    with op.batch_alter_table("console_sessions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_console_sessions_created_at"))
    op.drop_table("console_sessions")
