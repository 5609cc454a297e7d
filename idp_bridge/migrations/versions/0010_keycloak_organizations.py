"""keycloak organizations: the Keycloak organization of an org; the display of a directory group's member

Revision ID: 0010_keycloak_organizations
Revises: 0009_console
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_keycloak_organizations"
down_revision = "0009_console"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("organizations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("keycloak_organization", sa.String(length=255), nullable=True))
    with op.batch_alter_table("directory_group_members", schema=None) as batch_op:
        batch_op.add_column(sa.Column("display", sa.String(length=256), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("directory_group_members", schema=None) as batch_op:
        batch_op.drop_column("display")
    with op.batch_alter_table("organizations", schema=None) as batch_op:
        batch_op.drop_column("keycloak_organization")
