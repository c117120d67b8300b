"""Monitoring tables: metric samples (toolboxes and tool instances), check states, alerts,
their notifications, recovery attempts, per-toolbox monitoring settings and maintenance
windows. Storage only; API shapes are in schemas.py."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from api.models import Base, UTCDateTime, new_id, utcnow

_AUTO_ID = BigInteger().with_variant(Integer, "sqlite")


class MonitoringSettings(Base):
    """Per-toolbox overrides of the service-wide monitoring defaults (NULL: the default)."""

    __tablename__ = "monitoring_settings"

    toolbox_id: Mapped[str] = mapped_column(
        ForeignKey("toolboxes.id", ondelete="CASCADE"), primary_key=True
    )
    cpu_threshold: Mapped[float | None] = mapped_column(Float)
    memory_threshold: Mapped[float | None] = mapped_column(Float)
    disk_threshold: Mapped[float | None] = mapped_column(Float)
    # Consecutive failed checks before an alert opens.
    agent_down_checks: Mapped[int | None] = mapped_column(Integer)
    threshold_checks: Mapped[int | None] = mapped_column(Integer)
    recovery_enabled: Mapped[bool | None] = mapped_column(Boolean)
    recovery_max_attempts: Mapped[int | None] = mapped_column(Integer)
    recovery_window_seconds: Mapped[int | None] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


_VALUES = ("cpu_percent", "memory_percent", "disk_percent", "load_1m")


class MetricSample(Base):
    """One reading of a toolbox's system metrics as a sync found them (`step_seconds` 0), or
    the average of those readings over a `step_seconds` bucket starting at `at` (the
    downsampled history). A look the toolbox did not answer is a reading of nulls."""

    __tablename__ = "metric_samples"
    # Covering the values too: a toolbox's history is read from the index alone, without
    # a table lookup per row (its rows are scattered among every other toolbox's).
    __table_args__ = (
        Index("ix_metric_samples_toolbox_step_at", "toolbox_id", "step_seconds", "at", *_VALUES),
    )

    id: Mapped[int] = mapped_column(_AUTO_ID, primary_key=True)
    toolbox_id: Mapped[str] = mapped_column(ForeignKey("toolboxes.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    # 0: a raw reading; else the length of the bucket this row averages.
    step_seconds: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    # agent | ssh | none (did not answer) | average
    source: Mapped[str] = mapped_column(String(16))
    cpu_percent: Mapped[float | None] = mapped_column(Float)
    memory_percent: Mapped[float | None] = mapped_column(Float)
    disk_percent: Mapped[float | None] = mapped_column(Float)
    load_1m: Mapped[float | None] = mapped_column(Float)


class ToolMetricSample(Base):
    """One reading of a tool instance's CPU and memory (from the agent's container stats),
    taken with its toolbox's reading, or the average over a bucket like MetricSample."""

    __tablename__ = "tool_metric_samples"
    __table_args__ = (
        Index(
            "ix_tool_metric_samples_toolbox_step_at",
            "toolbox_id",
            "step_seconds",
            "at",
            "tool",
            "cpu_percent",
            "memory_bytes",
        ),
    )

    id: Mapped[int] = mapped_column(_AUTO_ID, primary_key=True)
    toolbox_id: Mapped[str] = mapped_column(ForeignKey("toolboxes.id", ondelete="CASCADE"))
    tool: Mapped[str] = mapped_column(String(128))
    at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    step_seconds: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    # Share of one CPU, as `docker stats` shows it (100 = one full CPU).
    cpu_percent: Mapped[float | None] = mapped_column(Float)
    memory_bytes: Mapped[float | None] = mapped_column(Float)


class CheckState(Base):
    """The running state of one check on one toolbox (e.g. `cpu`, `tool_exited:web`)."""

    __tablename__ = "check_states"
    __table_args__ = (UniqueConstraint("toolbox_id", "check"),)

    id: Mapped[int] = mapped_column(_AUTO_ID, primary_key=True)
    toolbox_id: Mapped[str] = mapped_column(ForeignKey("toolboxes.id", ondelete="CASCADE"))
    check: Mapped[str] = mapped_column(String(128))
    # ok | pending (failing, not yet N times) | failing | unknown (nothing to judge)
    state: Mapped[str] = mapped_column(String(16), default="unknown")
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    value: Mapped[float | None] = mapped_column(Float)
    threshold: Mapped[float | None] = mapped_column(Float)
    message: Mapped[str | None] = mapped_column(Text)
    # What the check remembers between cycles (e.g. restart counts seen).
    memory: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # When the check entered its current state.
    since: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Alert(Base):
    """A condition that went wrong on a toolbox: opened once, resolved when it clears."""

    __tablename__ = "alerts"
    __table_args__ = (
        # At most one open alert per condition, whatever races between cycles.
        Index(
            "uq_alerts_open_condition",
            "toolbox_id",
            "check",
            unique=True,
            sqlite_where=text("state = 'open'"),
            postgresql_where=text("state = 'open'"),
        ),
        Index("ix_alerts_state_opened", "state", "opened_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    toolbox_id: Mapped[str] = mapped_column(
        ForeignKey("toolboxes.id", ondelete="CASCADE"), index=True
    )
    check: Mapped[str] = mapped_column(String(128))
    # critical | warning
    severity: Mapped[str] = mapped_column(String(16))
    # open | resolved
    state: Mapped[str] = mapped_column(String(16), default="open")
    message: Mapped[str] = mapped_column(Text)
    value: Mapped[float | None] = mapped_column(Float)
    threshold: Mapped[float | None] = mapped_column(Float)
    # none (no automatic repair for this check) | off (switched off) | waiting | running
    # | succeeded | failed | gave_up
    recovery: Mapped[str] = mapped_column(String(16), default="none")
    recovery_attempts: Mapped[int] = mapped_column(Integer, default=0)
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Someone said "seen, on it": who (user name), when, and what they wrote.
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    acknowledged_by: Mapped[str | None] = mapped_column(String(128))
    ack_comment: Mapped[str | None] = mapped_column(Text)
    # When the last message about this open alert went out (opened or a reminder): the
    # next reminder is due DTMA_NOTIFY_REPEAT after it.
    notified_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class MaintenanceWindow(Base):
    """A time a toolbox is in maintenance on purpose: observed and recorded as always, but
    no alert opens and no automatic recovery runs. It ends by itself at `until`, or earlier
    when someone ends it (`ended_at`)."""

    __tablename__ = "maintenance_windows"
    __table_args__ = (Index("ix_maintenance_windows_toolbox_until", "toolbox_id", "until"),)

    id: Mapped[int] = mapped_column(_AUTO_ID, primary_key=True)
    toolbox_id: Mapped[str] = mapped_column(ForeignKey("toolboxes.id", ondelete="CASCADE"))
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    until: Mapped[datetime] = mapped_column(UTCDateTime())
    reason: Mapped[str] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(128))
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    ended_by: Mapped[str | None] = mapped_column(String(128))


class RecoveryAttempt(Base):
    """One automatic repair: a normal run started by the monitor for an open alert."""

    __tablename__ = "recovery_attempts"
    __table_args__ = (Index("ix_recovery_attempts_toolbox_started", "toolbox_id", "started_at"),)

    id: Mapped[int] = mapped_column(_AUTO_ID, primary_key=True)
    alert_id: Mapped[str] = mapped_column(ForeignKey("alerts.id", ondelete="CASCADE"), index=True)
    toolbox_id: Mapped[str] = mapped_column(ForeignKey("toolboxes.id", ondelete="CASCADE"))
    check: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(64))
    run_id: Mapped[str | None] = mapped_column(String(32))
    # running | successful | failed | ... (the run's status) | error (could not start)
    status: Mapped[str] = mapped_column(String(32), default="running")
    detail: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class AlertNotification(Base):
    """One delivery of an alert event to one target (a JSON webhook or an Apprise URL),
    with how it went."""

    __tablename__ = "alert_notifications"

    id: Mapped[int] = mapped_column(_AUTO_ID, primary_key=True)
    alert_id: Mapped[str] = mapped_column(ForeignKey("alerts.id", ondelete="CASCADE"), index=True)
    # opened | resolved | gave_up | reminder
    event: Mapped[str] = mapped_column(String(16))
    # The webhook without its path or query, or the Apprise URL with its secrets masked.
    target: Mapped[str] = mapped_column(String(255))
    # pending | delivered | failed
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
