"""scim: members keep the directory's externalId and attributes; orgs choose whether SCIM-created members are mailed

Revision ID: 0006_scim
Revises: 0005_canonical_identifier_keys
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0006_scim"
down_revision = "0005_canonical_identifier_keys"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("organizations") as batch:
        batch.add_column(sa.Column("scim_send_email", sa.Boolean(), server_default=sa.text("true"), nullable=False))
    with op.batch_alter_table("members") as batch:
        batch.add_column(sa.Column("external_id", sa.String(length=255), nullable=True))
        batch.add_column(sa.Column(
            "directory", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"), nullable=True))
        batch.create_index("ix_members_org_external_id", ["org_id", "external_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("members") as batch:
        batch.drop_index("ix_members_org_external_id")
        batch.drop_column("directory")
        batch.drop_column("external_id")
    with op.batch_alter_table("organizations") as batch:
        batch.drop_column("scim_send_email")
