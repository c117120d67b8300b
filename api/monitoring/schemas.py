"""API shapes of monitoring: toolbox health, alerts, per-toolbox monitoring settings,
maintenance windows and notification targets."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

CheckStateName = Literal["ok", "pending", "failing", "unknown"]
VerdictName = Literal["healthy", "degraded", "critical", "unknown"]


class CheckOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    check: str = Field(description="e.g. agent, droplet_reachable, cpu, tool_exited:<tool>")
    state: CheckStateName = Field(
        description="ok; pending (failing, fewer times in a row than needed to alert); "
        "failing; unknown (nothing to judge at the last look)"
    )
    severity: str
    value: float | None
    threshold: float | None
    consecutive_failures: int
    message: str | None
    since: datetime = Field(description="When the check entered this state")


class AlertOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    toolbox_id: str
    check: str
    severity: str
    state: Literal["open", "resolved"]
    message: str
    value: float | None
    threshold: float | None
    recovery: str = Field(
        description="none (no automatic repair for this check) | off (switched off for the "
        "toolbox) | waiting | running | succeeded | failed | gave_up"
    )
    recovery_attempts: int
    opened_at: datetime
    updated_at: datetime
    resolved_at: datetime | None
    acknowledged_at: datetime | None = None
    acknowledged_by: str | None = Field(default=None, description="Who acknowledged it")
    ack_comment: str | None = None


class AcknowledgeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    comment: str = Field(default="", max_length=1000, description="What is being done")


class MaintenanceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    until: datetime = Field(description="When the window ends by itself (ISO 8601 with zone)")
    reason: str = Field(min_length=1, max_length=500)


class MaintenanceOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    toolbox_id: str
    starts_at: datetime
    until: datetime
    reason: str
    created_by: str
    ended_at: datetime | None = Field(description="Set when someone ended it before `until`")
    ended_by: str | None


class MaintenanceState(BaseModel):
    toolbox_id: str
    active: MaintenanceOut | None = Field(description="The window in force now, if any")


class NotificationTarget(BaseModel):
    service: str = Field(description="Apprise service (json, ntfy, slack, ...) or webhook")
    url: str = Field(description="The URL with its secrets masked")
    severities: list[str] = Field(description="Alert severities routed to it")


class NotificationSettings(BaseModel):
    targets: list[NotificationTarget]
    repeat_seconds: float = Field(description="Reminder interval for open alerts; 0: none")


class NotificationTestOut(BaseModel):
    delivered: int
    failed: int
    targets: list[dict[str, str | None]] = Field(
        description="Each target (masked) with `status` delivered | failed and `error`"
    )


class RecoveryAttemptOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    action: str
    run_id: str | None = Field(description="The run, listed in /api/v1/runs like any other")
    status: str
    detail: str | None
    started_at: datetime
    finished_at: datetime | None


class NotificationOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    event: str
    target: str = Field(description="The webhook's scheme and host (its path is secret)")
    status: str
    attempts: int
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None


class AlertDetail(AlertOut):
    recovery_history: list[RecoveryAttemptOut]
    notifications: list[NotificationOut]


class ToolboxHealth(BaseModel):
    toolbox_id: str
    name: str
    verdict: VerdictName = Field(
        description="critical: a critical check fails; degraded: a warning check fails or a "
        "check is pending; healthy: every check passes; unknown: never looked at yet"
    )
    status: str = Field(
        description="Agent state at the last look: up | down | refused | unreachable"
    )
    observed_at: datetime | None = Field(description="When the toolbox last answered")
    last_error: str | None
    checks: list[CheckOut]
    open_alerts: list[AlertOut]


class MonitoringLimits(BaseModel):
    cpu_threshold: float = Field(gt=0, le=100, description="Percent")
    memory_threshold: float = Field(gt=0, le=100, description="Percent")
    disk_threshold: float = Field(gt=0, le=100, description="Percent")
    agent_down_checks: int = Field(ge=1, le=100, description="Failed checks in a row to alert")
    threshold_checks: int = Field(ge=1, le=100, description="Checks above a threshold to alert")
    recovery_enabled: bool
    recovery_max_attempts: int = Field(ge=0, le=100)
    recovery_window_seconds: int = Field(ge=1, le=7 * 86_400)


class MonitoringSettingsPatch(BaseModel):
    """Fields to change; a field set to null goes back to the service-wide default."""

    model_config = ConfigDict(extra="forbid")

    cpu_threshold: float | None = Field(default=None, gt=0, le=100)
    memory_threshold: float | None = Field(default=None, gt=0, le=100)
    disk_threshold: float | None = Field(default=None, gt=0, le=100)
    agent_down_checks: int | None = Field(default=None, ge=1, le=100)
    threshold_checks: int | None = Field(default=None, ge=1, le=100)
    recovery_enabled: bool | None = None
    recovery_max_attempts: int | None = Field(default=None, ge=0, le=100)
    recovery_window_seconds: int | None = Field(default=None, ge=1, le=7 * 86_400)


class MonitoringSettingsOut(BaseModel):
    toolbox_id: str
    effective: MonitoringLimits = Field(description="What applies to this toolbox now")
    overrides: MonitoringSettingsPatch = Field(
        description="This toolbox's own values (null: the default applies)"
    )


# [unix time, value | null]. A list rather than a tuple: a tuple becomes `prefixItems`,
# which schema-driven clients and fuzzers (schemathesis) read as an invalid schema.
MetricPoint = Annotated[list[float | None], Field(min_length=2, max_length=2)]


class MetricsOut(BaseModel):
    """A toolbox's metrics history: [unix time, value] pairs, null where the toolbox did
    not answer (or nothing looked at it); every series shares the same times."""

    toolbox_id: str
    range: Literal["1h", "6h", "24h", "7d"]
    step_seconds: int = Field(
        description="Length of the bucket each point averages; for 1h, each point is one "
        "sample and this is the monitoring interval"
    )
    series: dict[str, list[MetricPoint]] = Field(
        description="cpu_percent, memory_percent, disk_percent, load_1m"
    )
    tools: dict[str, dict[str, list[MetricPoint]]] = Field(
        description="Per tool instance: cpu_percent (100 = one CPU, as docker stats) and "
        "memory_bytes"
    )
