"""scim: members keep the directory's externalId and attributes; directory groups; orgs choose SCIM mail

Revision ID: 0008_scim
Revises: 0007_verified_domains_join
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import idp_bridge.models

revision = "0008_scim"
down_revision = "0007_verified_domains_join"
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
    op.create_table(
        "directory_groups",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("org_id", sa.String(length=36), nullable=False),
        sa.Column("display_name", sa.String(length=256), nullable=False),
        sa.Column("external_id", sa.String(length=255), nullable=True),
        sa.Column("created_at", idp_bridge.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", idp_bridge.models.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["org_id"], ["organizations.id"],
                                name=op.f("fk_directory_groups_org_id_organizations"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_directory_groups")),
        sa.UniqueConstraint("org_id", "display_name", name=op.f("uq_directory_groups_org_id_display_name")),
    )
    op.create_table(
        "directory_group_members",
        sa.Column("group_id", sa.String(length=36), nullable=False),
        sa.Column("member_id", sa.String(length=36), nullable=False),
        sa.ForeignKeyConstraint(["group_id"], ["directory_groups.id"],
                                name=op.f("fk_directory_group_members_group_id_directory_groups"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["member_id"], ["members.id"],
                                name=op.f("fk_directory_group_members_member_id_members"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("group_id", "member_id", name=op.f("pk_directory_group_members")),
    )
    op.create_index(op.f("ix_directory_group_members_member_id"), "directory_group_members", ["member_id"],
                    unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_directory_group_members_member_id"), table_name="directory_group_members")
    op.drop_table("directory_group_members")
    op.drop_table("directory_groups")
    with op.batch_alter_table("members") as batch:
        batch.drop_index("ix_members_org_external_id")
        batch.drop_column("directory")
        batch.drop_column("external_id")
    with op.batch_alter_table("organizations") as batch:
        batch.drop_column("scim_send_email")
