"""invite locale: the invitee's language (a BCP 47 tag) for the pages and the mail

Revision ID: 0011_invite_locale
Revises: 0010_keycloak_organizations
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011_invite_locale"
down_revision = "0010_keycloak_organizations"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("invites", schema=None) as batch_op:
        batch_op.add_column(sa.Column("locale", sa.String(length=35), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("invites", schema=None) as batch_op:
        batch_op.drop_column("locale")
