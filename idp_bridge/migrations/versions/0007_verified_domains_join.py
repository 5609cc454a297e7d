"""verified domains and join by domain: org_domains, join_requests, join_logins, organizations.domain_join

Revision ID: 0007_verified_domains_join
Revises: 0006_paces_and_retention
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from idp_bridge.models import UTCDateTime

revision = "0007_verified_domains_join"
down_revision = "0006_paces_and_retention"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("organizations") as batch:
        batch.add_column(sa.Column("domain_join", sa.String(length=10), server_default="off", nullable=False))
    op.create_table(
        "org_domains",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("org_id", sa.String(length=36), nullable=False),
        sa.Column("domain", sa.String(length=253), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("challenge", sa.String(length=100), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("verified_at", UTCDateTime(), nullable=True),
        sa.Column("checked_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["org_id"], ["organizations.id"], name=op.f("fk_org_domains_org_id_organizations"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_org_domains")),
        sa.UniqueConstraint("org_id", "domain", name=op.f("uq_org_domains_org_id_domain")),
    )
    op.create_index(op.f("ix_org_domains_org_id"), "org_domains", ["org_id"], unique=False)
    op.create_index("uq_org_domains_verified_domain", "org_domains", ["domain"], unique=True,
                    sqlite_where=sa.text("status = 'verified'"), postgresql_where=sa.text("status = 'verified'"))
    op.create_table(
        "join_requests",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("org_id", sa.String(length=36), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("email_key", sa.String(length=320), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("provider", sa.String(length=64), nullable=False),
        sa.Column("issuer", sa.String(length=500), nullable=False),
        sa.Column("subject", sa.String(length=255), nullable=False),
        sa.Column("tenant_id", sa.String(length=36), nullable=True),
        sa.Column("member_id", sa.String(length=36), nullable=True),
        sa.Column("decided_by", sa.String(length=200), nullable=True),
        sa.Column("decided_at", UTCDateTime(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["org_id"], ["organizations.id"],
                                name=op.f("fk_join_requests_org_id_organizations"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_join_requests")),
    )
    op.create_index("uq_join_requests_pending_identity", "join_requests", ["org_id", "provider", "issuer", "subject"],
                    unique=True, sqlite_where=sa.text("status = 'PENDING'"),
                    postgresql_where=sa.text("status = 'PENDING'"))
    op.create_index("ix_join_requests_org_created", "join_requests", ["org_id", "created_at", "id"], unique=False)
    op.create_table(
        "join_logins",
        sa.Column("state_hash", sa.String(length=64), nullable=False),
        sa.Column("browser_hash", sa.String(length=64), nullable=False),
        sa.Column("org_id", sa.String(length=36), nullable=False),
        sa.Column("provider", sa.String(length=64), nullable=False),
        sa.Column("nonce", sa.String(length=100), nullable=False),
        sa.Column("code_verifier", sa.String(length=300), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("used_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["org_id"], ["organizations.id"], name=op.f("fk_join_logins_org_id_organizations"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("state_hash", name=op.f("pk_join_logins")),
    )
    op.create_index(op.f("ix_join_logins_org_id"), "join_logins", ["org_id"], unique=False)
    op.create_index(op.f("ix_join_logins_created_at"), "join_logins", ["created_at"], unique=False)


def downgrade() -> None:
    op.drop_table("join_logins")
    op.drop_table("join_requests")
    op.drop_table("org_domains")
    with op.batch_alter_table("organizations") as batch:
        batch.drop_column("domain_join")
