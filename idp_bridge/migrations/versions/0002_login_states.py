"""login states: OIDC state, nonce and PKCE verifier bound to a browser and an invite

Revision ID: 0002_login_states
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import idp_bridge.models

revision = "0002_login_states"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "login_states",
        sa.Column("state_hash", sa.String(length=64), nullable=False),
        sa.Column("browser_hash", sa.String(length=64), nullable=False),
        sa.Column("invite_id", sa.String(length=36), nullable=False),
        sa.Column("link_sealed", sa.Text(), nullable=False),
        sa.Column("provider", sa.String(length=64), nullable=False),
        sa.Column("nonce", sa.String(length=100), nullable=False),
        sa.Column("code_verifier", sa.String(length=300), nullable=False),
        sa.Column("created_at", idp_bridge.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("used_at", idp_bridge.models.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["invite_id"], ["invites.id"], name=op.f("fk_login_states_invite_id_invites"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("state_hash", name=op.f("pk_login_states")),
    )
    with op.batch_alter_table("login_states", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_login_states_invite_id"), ["invite_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_login_states_created_at"), ["created_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("login_states", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_login_states_created_at"))
        batch_op.drop_index(batch_op.f("ix_login_states_invite_id"))
    op.drop_table("login_states")
