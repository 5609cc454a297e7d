"""webhook delivery attempt log and Graph subscriptions

Revision ID: 0002_webhook_attempts
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import idp_bridge.models

revision = '0002_webhook_attempts'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('webhook_attempts',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('delivery_id', sa.String(length=36), nullable=False),
    sa.Column('endpoint_id', sa.String(length=36), nullable=False),
    sa.Column('event_id', sa.String(length=40), nullable=False),
    sa.Column('attempt', sa.Integer(), nullable=False),
    sa.Column('manual', sa.Boolean(), nullable=False),
    sa.Column('success', sa.Boolean(), nullable=False),
    sa.Column('status_code', sa.Integer(), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('duration_ms', sa.Integer(), nullable=False),
    sa.Column('at', idp_bridge.models.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['delivery_id'], ['webhook_deliveries.id'], name=op.f('fk_webhook_attempts_delivery_id_webhook_deliveries'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook_attempts'))
    )
    with op.batch_alter_table('webhook_attempts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_webhook_attempts_delivery_id'), ['delivery_id'], unique=False)
        batch_op.create_index('ix_webhook_attempts_endpoint_at', ['endpoint_id', 'at', 'id'], unique=False)

    op.create_table('graph_subscriptions',
    sa.Column('id', sa.String(length=100), nullable=False),
    sa.Column('provider', sa.String(length=64), nullable=False),
    sa.Column('resource', sa.String(length=200), nullable=False),
    sa.Column('change_type', sa.String(length=100), nullable=False),
    sa.Column('notification_url', sa.String(length=2000), nullable=False),
    sa.Column('lifecycle_url', sa.String(length=2000), nullable=True),
    sa.Column('expires_at', idp_bridge.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('created_at', idp_bridge.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('renewed_at', idp_bridge.models.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_graph_subscriptions'))
    )
    with op.batch_alter_table('graph_subscriptions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_graph_subscriptions_provider'), ['provider'], unique=False)


def downgrade() -> None:
    op.drop_table('graph_subscriptions')
    op.drop_table('webhook_attempts')
