"""monitoring: metric samples, check states, alerts, notifications, recovery, settings

Revision ID: 0901_monitoring
Revises: 0101_web_sessions
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0901_monitoring"
down_revision = "0101_web_sessions"
branch_labels = None
depends_on = None

_AUTO_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_OPEN = sa.text("state = 'open'")


def _toolbox_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["toolbox_id"],
        ["toolboxes.id"],
        name=op.f(f"fk_{table}_toolbox_id_toolboxes"),
        ondelete="CASCADE",
    )


def _alert_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["alert_id"], ["alerts.id"], name=op.f(f"fk_{table}_alert_id_alerts"), ondelete="CASCADE"
    )


def upgrade() -> None:
    op.create_table(
        "monitoring_settings",
        sa.Column("toolbox_id", sa.String(length=32), nullable=False),
        sa.Column("cpu_threshold", sa.Float(), nullable=True),
        sa.Column("memory_threshold", sa.Float(), nullable=True),
        sa.Column("disk_threshold", sa.Float(), nullable=True),
        sa.Column("agent_down_checks", sa.Integer(), nullable=True),
        sa.Column("threshold_checks", sa.Integer(), nullable=True),
        sa.Column("recovery_enabled", sa.Boolean(), nullable=True),
        sa.Column("recovery_max_attempts", sa.Integer(), nullable=True),
        sa.Column("recovery_window_seconds", sa.Integer(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        _toolbox_fk("monitoring_settings"),
        sa.PrimaryKeyConstraint("toolbox_id", name=op.f("pk_monitoring_settings")),
    )
    op.create_table(
        "metric_samples",
        sa.Column("id", _AUTO_ID, nullable=False),
        sa.Column("toolbox_id", sa.String(length=32), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("cpu_percent", sa.Float(), nullable=True),
        sa.Column("memory_percent", sa.Float(), nullable=True),
        sa.Column("disk_percent", sa.Float(), nullable=True),
        sa.Column("load_1m", sa.Float(), nullable=True),
        _toolbox_fk("metric_samples"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_metric_samples")),
    )
    op.create_index(op.f("ix_metric_samples_at"), "metric_samples", ["at"])
    op.create_index("ix_metric_samples_toolbox_at", "metric_samples", ["toolbox_id", "at"])
    op.create_table(
        "check_states",
        sa.Column("id", _AUTO_ID, nullable=False),
        sa.Column("toolbox_id", sa.String(length=32), nullable=False),
        sa.Column("check", sa.String(length=128), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("consecutive_failures", sa.Integer(), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("threshold", sa.Float(), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("memory", sa.JSON(), nullable=False),
        sa.Column("since", sa.DateTime(timezone=True), nullable=False),
        _toolbox_fk("check_states"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_check_states")),
        sa.UniqueConstraint("toolbox_id", "check", name=op.f("uq_check_states_toolbox_id")),
    )
    op.create_table(
        "alerts",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("toolbox_id", sa.String(length=32), nullable=False),
        sa.Column("check", sa.String(length=128), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("threshold", sa.Float(), nullable=True),
        sa.Column("recovery", sa.String(length=16), nullable=False),
        sa.Column("recovery_attempts", sa.Integer(), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        _toolbox_fk("alerts"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alerts")),
    )
    op.create_index("ix_alerts_state_opened", "alerts", ["state", "opened_at"])
    op.create_index(op.f("ix_alerts_toolbox_id"), "alerts", ["toolbox_id"])
    op.create_index(
        "uq_alerts_open_condition",
        "alerts",
        ["toolbox_id", "check"],
        unique=True,
        sqlite_where=_OPEN,
        postgresql_where=_OPEN,
    )
    op.create_table(
        "alert_notifications",
        sa.Column("id", _AUTO_ID, nullable=False),
        sa.Column("alert_id", sa.String(length=32), nullable=False),
        sa.Column("event", sa.String(length=16), nullable=False),
        sa.Column("target", sa.String(length=255), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        _alert_fk("alert_notifications"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_notifications")),
    )
    op.create_index(op.f("ix_alert_notifications_alert_id"), "alert_notifications", ["alert_id"])
    op.create_table(
        "recovery_attempts",
        sa.Column("id", _AUTO_ID, nullable=False),
        sa.Column("alert_id", sa.String(length=32), nullable=False),
        sa.Column("toolbox_id", sa.String(length=32), nullable=False),
        sa.Column("check", sa.String(length=128), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("run_id", sa.String(length=32), nullable=True),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        _alert_fk("recovery_attempts"),
        _toolbox_fk("recovery_attempts"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recovery_attempts")),
    )
    op.create_index(op.f("ix_recovery_attempts_alert_id"), "recovery_attempts", ["alert_id"])
    op.create_index(
        "ix_recovery_attempts_toolbox_started", "recovery_attempts", ["toolbox_id", "started_at"]
    )


def downgrade() -> None:
    op.drop_table("recovery_attempts")
    op.drop_table("alert_notifications")
    op.drop_table("alerts")
    op.drop_table("check_states")
    op.drop_table("metric_samples")
    op.drop_table("monitoring_settings")
