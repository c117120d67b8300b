"""rollouts: one action over many toolboxes in batches; the droplets' DigitalOcean tags kept
by the sync (targets by tag)

Revision ID: 1701_rollouts
Revises: 1701_registry_credentials
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "1701_rollouts"
down_revision = "1701_registry_credentials"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("toolboxes") as table:
        table.add_column(sa.Column("tags", sa.JSON(), nullable=False, server_default="[]"))
    op.create_table(
        "rollouts",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.String(length=64), nullable=True),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("target", sa.JSON(), nullable=False),
        sa.Column("batch_size", sa.String(length=16), nullable=False),
        sa.Column("batch_hosts", sa.Integer(), nullable=False),
        sa.Column("canary", sa.Boolean(), nullable=False),
        sa.Column("max_failures", sa.Integer(), nullable=False),
        sa.Column("parameters", sa.JSON(), nullable=False),
        sa.Column("hosts", sa.JSON(), nullable=False),
        sa.Column("run_id", sa.String(length=32), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("cancel_requested_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_rollouts_user_id_users"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name=op.f("fk_rollouts_run_id_runs"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rollouts")),
    )
    op.create_index(op.f("ix_rollouts_created_at"), "rollouts", ["created_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_rollouts_created_at"), table_name="rollouts")
    op.drop_table("rollouts")
    with op.batch_alter_table("toolboxes") as table:
        table.drop_column("tags")
