"""The monitoring limits that apply to one toolbox: its own overrides, else the defaults."""

from __future__ import annotations

from dataclasses import dataclass, fields

from api.monitoring.models import MonitoringSettings
from api.settings import Settings

# Per-toolbox overridable knobs (MonitoringSettings columns) and their Settings defaults.
OVERRIDABLE = {
    "cpu_threshold": "monitor_cpu_threshold",
    "memory_threshold": "monitor_memory_threshold",
    "disk_threshold": "monitor_disk_threshold",
    "agent_down_checks": "monitor_agent_down_checks",
    "threshold_checks": "monitor_threshold_checks",
    "recovery_enabled": "recovery_enabled",
    "recovery_max_attempts": "recovery_max_attempts",
    "recovery_window_seconds": "recovery_window_seconds",
}


@dataclass(frozen=True)
class Limits:
    cpu_threshold: float
    memory_threshold: float
    disk_threshold: float
    agent_down_checks: int
    threshold_checks: int
    recovery_enabled: bool
    recovery_max_attempts: int
    recovery_window_seconds: int
    restart_loop_restarts: int
    recovery_backoff_seconds: float

    @classmethod
    def effective(cls, settings: Settings, overrides: MonitoringSettings | None) -> Limits:
        values: dict[str, object] = {
            "restart_loop_restarts": settings.monitor_restart_loop_restarts,
            "recovery_backoff_seconds": settings.recovery_backoff_seconds,
        }
        for column, default in OVERRIDABLE.items():
            own = getattr(overrides, column) if overrides is not None else None
            values[column] = own if own is not None else getattr(settings, default)
        return cls(**values)  # type: ignore[arg-type]

    def as_dict(self) -> dict[str, object]:
        return {f.name: getattr(self, f.name) for f in fields(self)}
