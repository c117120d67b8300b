"""Alert events (opened, resolved, recovery gave up, reminder) and the message each one
sends: a title and body for Apprise, the JSON body (with Slack's `text`) for webhooks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from api.monitoring.models import Alert

_HEADLINES = {
    "opened": "ALERT",
    "resolved": "RESOLVED",
    "gave_up": "RECOVERY GAVE UP",
    "reminder": "STILL OPEN",
}


@dataclass(frozen=True)
class AlertEvent:
    alert_id: str
    event: str  # opened | resolved | gave_up | reminder
    # The webhook body, taken when the event happened (Slack-compatible `text`).
    payload: dict[str, Any]

    @property
    def title(self) -> str:
        """`[ALERT] critical on toolbox-2 (agent)`: the text up to the message."""
        return str(self.payload["text"]).split(": ", 1)[0]

    @property
    def body(self) -> str:
        return str(self.payload["text"])


def notify_type(event: AlertEvent) -> str:
    """Apprise's notify type (the colour or icon many services show)."""
    if event.event == "resolved":
        return "success"
    return "failure" if event.payload["alert"]["severity"] == "critical" else "warning"


def test_message(sender: str) -> tuple[str, str, dict[str, Any]]:
    """Title, body and JSON body of `notify test`."""
    text = f"[TEST] DTMA console notification test sent by {sender}"
    return "[TEST] DTMA console", text, {"text": text, "event": "test", "alert": None}


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
