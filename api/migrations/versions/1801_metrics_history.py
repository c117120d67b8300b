"""metrics history: downsampled rows beside the raw ones, per-tool samples

Revision ID: 1801_metrics_history
Revises: 0902_alert_ack_maintenance
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "1801_metrics_history"
down_revision = "0902_alert_ack_maintenance"
branch_labels = None
depends_on = None

_AUTO_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_VALUES = ["cpu_percent", "memory_percent", "disk_percent", "load_1m"]


def upgrade() -> None:
    with op.batch_alter_table("metric_samples") as table:
        table.add_column(
            sa.Column("step_seconds", sa.Integer(), server_default=sa.text("0"), nullable=False)
        )
    op.drop_index("ix_metric_samples_toolbox_at", table_name="metric_samples")
    # Covering: a toolbox's history is read from the index alone.
    op.create_index(
        "ix_metric_samples_toolbox_step_at",
        "metric_samples",
        ["toolbox_id", "step_seconds", "at", *_VALUES],
    )
    op.create_table(
        "tool_metric_samples",
        sa.Column("id", _AUTO_ID, nullable=False),
        sa.Column("toolbox_id", sa.String(length=32), nullable=False),
        sa.Column("tool", sa.String(length=128), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("step_seconds", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("cpu_percent", sa.Float(), nullable=True),
        sa.Column("memory_bytes", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(
            ["toolbox_id"],
            ["toolboxes.id"],
            name=op.f("fk_tool_metric_samples_toolbox_id_toolboxes"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tool_metric_samples")),
    )
    op.create_index(op.f("ix_tool_metric_samples_at"), "tool_metric_samples", ["at"])
    op.create_index(
        "ix_tool_metric_samples_toolbox_step_at",
        "tool_metric_samples",
        ["toolbox_id", "step_seconds", "at", "tool", "cpu_percent", "memory_bytes"],
    )


def downgrade() -> None:
    op.drop_index("ix_tool_metric_samples_toolbox_step_at", table_name="tool_metric_samples")
    op.drop_index(op.f("ix_tool_metric_samples_at"), table_name="tool_metric_samples")
    op.drop_table("tool_metric_samples")
    op.drop_index("ix_metric_samples_toolbox_step_at", table_name="metric_samples")
    op.create_index("ix_metric_samples_toolbox_at", "metric_samples", ["toolbox_id", "at"])
    with op.batch_alter_table("metric_samples") as table:
        table.drop_column("step_seconds")
