"""Alert events (opened, resolved, recovery gave up) and the message each one sends."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from api.monitoring.models import Alert

_HEADLINES = {"opened": "ALERT", "resolved": "RESOLVED", "gave_up": "RECOVERY GAVE UP"}


@dataclass(frozen=True)
class AlertEvent:
    alert_id: str
    event: str  # opened | resolved | gave_up
    # The webhook body, taken when the event happened (Slack-compatible `text`).
    payload: dict[str, Any]


def alert_event(alert: Alert, toolbox_name: str, event: str, note: str = "") -> AlertEvent:
    headline = _HEADLINES[event]
    text = f"[{headline}] {alert.severity} on {toolbox_name} ({alert.check}): {alert.message}"
    if note:
        text += f" ({note})"
    payload = {
        "text": text,
        "event": event,
        "alert": {
            "id": alert.id,
            "toolbox_id": alert.toolbox_id,
            "toolbox": toolbox_name,
            "check": alert.check,
            "severity": alert.severity,
            "state": alert.state,
            "message": alert.message,
            "value": alert.value,
            "threshold": alert.threshold,
            "recovery": alert.recovery,
            "recovery_attempts": alert.recovery_attempts,
            "opened_at": alert.opened_at.isoformat(),
            "resolved_at": alert.resolved_at.isoformat() if alert.resolved_at else None,
        },
    }
    return AlertEvent(alert.id, event, payload)
