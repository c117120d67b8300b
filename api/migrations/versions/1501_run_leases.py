"""run leases: owner + heartbeat, sealed extravars for remote workers, cancel request

Revision ID: 1501_run_leases
Revises: 1402_vault_bindings
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "1501_run_leases"
down_revision = "1402_vault_bindings"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("owner", sa.String(length=300), nullable=True))
        batch.add_column(sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("extravars_sealed", sa.Text(), nullable=True))
        batch.add_column(
            sa.Column("cancel_requested_at", sa.DateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("cancel_requested_at")
        batch.drop_column("extravars_sealed")
        batch.drop_column("heartbeat_at")
        batch.drop_column("owner")
