"""Prometheus metrics of monitoring (served at /metrics with the service's own)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

SYNC_DURATION = Histogram(
    "dtma_sync_duration_seconds",
    "Wall time of one status sync (all the toolboxes it looked at).",
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120),
)
SYNC_TOOLBOXES = Counter(
    "dtma_sync_toolboxes_total", "Toolboxes looked at by the status sync, by outcome.", ["status"]
)
ALERT_EVENTS = Counter(
    "dtma_alert_events_total", "Alerts opened, resolved and given up on.", ["event", "severity"]
)
RECOVERY_RUNS = Counter(
    "dtma_recovery_runs_total",
    "Automatic repairs, by action and how the run ended.",
    ["action", "status"],
)
