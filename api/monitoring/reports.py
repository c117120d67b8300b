"""What the monitoring routes answer: a toolbox's health, alerts, monitoring settings; and
the one change people make to an alert, acknowledging it."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.errors import Conflict, NotFound
from api.models import Toolbox, User, utcnow
from api.monitoring.checks import severity_of
from api.monitoring.limits import OVERRIDABLE, Limits
from api.monitoring.models import (
    Alert,
    AlertNotification,
    CheckState,
    MonitoringSettings,
    RecoveryAttempt,
)
from api.monitoring.schemas import (
    AlertDetail,
    AlertOut,
    CheckOut,
    MonitoringLimits,
    MonitoringSettingsOut,
    MonitoringSettingsPatch,
    NotificationOut,
    RecoveryAttemptOut,
    ToolboxHealth,
    VerdictName,
)
from api.services import audit
from api.settings import Settings

# Checks in the order a human reads them; per-tool checks follow by tool name.
_ORDER = {"droplet_reachable": 0, "agent": 1, "agent_token": 2, "cpu": 3, "memory": 4, "disk": 5}


def toolbox_health(session: Session, toolbox: Toolbox) -> ToolboxHealth:
    states = sorted(
        session.scalars(select(CheckState).where(CheckState.toolbox_id == toolbox.id)),
        key=lambda s: (_ORDER.get(s.check, 9), s.check),
    )
    checks = [
        CheckOut.model_validate(
            {
                "check": s.check,
                "state": s.state,
                "severity": severity_of(s.check),
                "value": s.value,
                "threshold": s.threshold,
                "consecutive_failures": s.consecutive_failures,
                "message": s.message,
                "since": s.since,
            }
        )
        for s in states
    ]
    alerts = session.scalars(
        select(Alert)
        .where(Alert.toolbox_id == toolbox.id, Alert.state == "open")
        .order_by(Alert.opened_at)
    )
    return ToolboxHealth(
        toolbox_id=toolbox.id,
        name=toolbox.name,
        verdict=_verdict(checks),
        status=toolbox.status,
        observed_at=toolbox.last_seen_at,
        last_error=toolbox.last_error,
        checks=checks,
        open_alerts=[AlertOut.model_validate(a) for a in alerts],
    )


def _verdict(checks: list[CheckOut]) -> VerdictName:
    if not checks:
        return "unknown"
    if any(c.state == "failing" and c.severity == "critical" for c in checks):
        return "critical"
    if any(c.state in ("failing", "pending") for c in checks):
        return "degraded"
    if all(c.state == "unknown" for c in checks):
        return "unknown"
    return "healthy"


def list_alerts(
    session: Session,
    user: User,
    *,
    state: str | None,
    toolbox_id: str | None,
    limit: int,
    severity: str | None = None,
    check: str | None = None,
) -> list[AlertOut]:
    return [
        AlertOut.model_validate(a)
        for a in visible_alerts(
            session,
            user,
            state=state,
            toolbox_id=toolbox_id,
            limit=limit,
            severity=severity,
            check=check,
        )
    ]


def visible_alerts(
    session: Session,
    user: User,
    *,
    state: str | None,
    toolbox_id: str | None,
    limit: int,
    severity: str | None = None,
    check: str | None = None,
) -> list[Alert]:
    """Alerts on the user's toolboxes (all for an admin), newest first, filtered."""
    query = select(Alert).join(Toolbox, Toolbox.id == Alert.toolbox_id)
    if not user.is_admin:
        query = query.where(Toolbox.owner_id == user.id)
    if state is not None:
        query = query.where(Alert.state == state)
    if toolbox_id is not None:
        query = query.where(Alert.toolbox_id == toolbox_id)
    if severity is not None:
        query = query.where(Alert.severity == severity)
    if check is not None:
        query = query.where(Alert.check == check)
    query = query.order_by(Alert.opened_at.desc(), Alert.id).limit(limit)
    return list(session.scalars(query))


def _visible_alert(session: Session, user: User, alert_id: str) -> Alert:
    alert = session.get(Alert, alert_id)
    toolbox = session.get(Toolbox, alert.toolbox_id) if alert is not None else None
    if alert is None or toolbox is None or not (user.is_admin or toolbox.owner_id == user.id):
        raise NotFound(f"alert '{alert_id}' not found", code="alert_not_found")
    return alert


def acknowledge(session: Session, user: User, alert_id: str, comment: str) -> Alert:
    """Mark an open alert as seen by `user` (stops its reminders); audited and committed
    (the API and the web console's button both call this)."""
    with audit.audited(
        session, user=user, action="alert.acknowledge", parameters={"alert_id": alert_id}
    ) as entry:
        alert = _acknowledge(session, user, alert_id, comment)
        entry.toolbox_id = alert.toolbox_id
    session.commit()
    return alert


def _acknowledge(session: Session, user: User, alert_id: str, comment: str) -> Alert:
    alert = _visible_alert(session, user, alert_id)
    if alert.state != "open":
        raise Conflict("the alert is already resolved", code="alert_resolved")
    if alert.acknowledged_at is not None:
        raise Conflict(
            f"the alert was acknowledged by {alert.acknowledged_by} at "
            f"{alert.acknowledged_at:%Y-%m-%d %H:%M:%S} UTC",
            code="alert_acknowledged",
        )
    alert.acknowledged_at = utcnow()
    alert.acknowledged_by = user.name
    alert.ack_comment = comment.strip() or None
    return alert


def alert_detail(session: Session, user: User, alert_id: str) -> AlertDetail:
    alert = _visible_alert(session, user, alert_id)
    attempts = session.scalars(
        select(RecoveryAttempt)
        .where(RecoveryAttempt.alert_id == alert.id)
        .order_by(RecoveryAttempt.started_at)
    )
    notifications = session.scalars(
        select(AlertNotification)
        .where(AlertNotification.alert_id == alert.id)
        .order_by(AlertNotification.created_at, AlertNotification.id)
    )
    return AlertDetail(
        **AlertOut.model_validate(alert).model_dump(),
        recovery_history=[RecoveryAttemptOut.model_validate(a) for a in attempts],
        notifications=[NotificationOut.model_validate(n) for n in notifications],
    )


def monitoring_settings(
    session: Session, settings: Settings, toolbox: Toolbox
) -> MonitoringSettingsOut:
    own = session.get(MonitoringSettings, toolbox.id)
    limits = Limits.effective(settings, own)
    return MonitoringSettingsOut(
        toolbox_id=toolbox.id,
        effective=MonitoringLimits.model_validate(
            {k: v for k, v in limits.as_dict().items() if k in OVERRIDABLE}
        ),
        overrides=MonitoringSettingsPatch.model_validate(
            {column: getattr(own, column) if own else None for column in OVERRIDABLE}
        ),
    )


def update_monitoring_settings(
    session: Session, toolbox: Toolbox, patch: MonitoringSettingsPatch
) -> None:
    """Apply the fields the caller sent (null resets one to the default). Caller commits."""
    own = session.get(MonitoringSettings, toolbox.id)
    if own is None:
        own = MonitoringSettings(toolbox_id=toolbox.id)
        session.add(own)
    for column in patch.model_fields_set:
        setattr(own, column, getattr(patch, column))
