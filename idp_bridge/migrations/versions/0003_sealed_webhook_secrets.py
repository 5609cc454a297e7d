"""webhook signing secrets stored sealed; merges the two 0002 heads

Revision ID: 0003_sealed_webhook_secrets
Revises: 0002_login_states, 0002_webhook_attempts

The sealed form (a Fernet token) is longer than the plaintext secret, so the columns widen. Existing plaintext
rows cannot be sealed here (a migration has no secret key): the code reads them as they are and
`serve`/`worker` seal them at start (services.webhooks.seal_legacy_secrets).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_sealed_webhook_secrets"
down_revision = ("0002_login_states", "0002_webhook_attempts")
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("webhook_endpoints", schema=None) as batch_op:
        batch_op.alter_column("secret", existing_type=sa.String(length=200), type_=sa.String(length=500),
                              existing_nullable=False)
        batch_op.alter_column("previous_secret", existing_type=sa.String(length=200), type_=sa.String(length=500),
                              existing_nullable=True)


def downgrade() -> None:
    with op.batch_alter_table("webhook_endpoints", schema=None) as batch_op:
        batch_op.alter_column("previous_secret", existing_type=sa.String(length=500), type_=sa.String(length=200),
                              existing_nullable=True)
        batch_op.alter_column("secret", existing_type=sa.String(length=500), type_=sa.String(length=200),
                              existing_nullable=False)
