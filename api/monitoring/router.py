"""Routes: a toolbox's health, its monitoring settings and maintenance windows, alerts
(with acknowledging), and notification targets. The monitor itself is one of the
Context's long-lived parts (api/context.py)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query, Request

from api.context import Context
from api.deps import AdminDep, ContextDep, SessionDep, ToolboxDep, UserDep
from api.models import utcnow
from api.monitoring import history, maintenance, reports
from api.monitoring.schemas import (
    AcknowledgeIn,
    AlertDetail,
    AlertOut,
    MaintenanceIn,
    MaintenanceOut,
    MaintenanceState,
    MetricsOut,
    MonitoringSettingsOut,
    MonitoringSettingsPatch,
    NotificationSettings,
    NotificationTarget,
    NotificationTestOut,
    ToolboxHealth,
)
from api.monitoring.service import Monitor
from api.services import audit


def get_monitor(request: Request) -> Monitor:
    context: Context = request.app.state.context
    return context.monitor


MonitorDep = Annotated[Monitor, Depends(get_monitor)]

router = APIRouter(tags=["monitoring"])


@router.get("/api/v1/toolboxes/{toolbox_id}/health", response_model=ToolboxHealth)
def toolbox_health(toolbox: ToolboxDep, session: SessionDep) -> ToolboxHealth:
    """Every check of the toolbox with its state, value and threshold, its open alerts, and
    an overall verdict, as of the last monitoring look."""
    return reports.toolbox_health(session, toolbox)


RangeQuery = Annotated[
    history.Range, Query(alias="range", description="How far back: 1h, 6h, 24h or 7d")
]


@router.get("/api/v1/toolboxes/{toolbox_id}/metrics", response_model=MetricsOut)
def toolbox_metrics(
    toolbox: ToolboxDep, session: SessionDep, context: ContextDep, range_: RangeQuery = "24h"
) -> MetricsOut:
    """CPU, memory, disk and load of the toolbox, and CPU and memory of each tool
    instance, over the range: [unix time, value] points, null where it did not answer."""
    return history.read(session, context.settings, toolbox.id, range_, utcnow())


@router.get("/api/v1/toolboxes/{toolbox_id}/monitoring", response_model=MonitoringSettingsOut)
def get_monitoring_settings(
    toolbox: ToolboxDep, session: SessionDep, context: ContextDep
) -> MonitoringSettingsOut:
    """Thresholds, alerting and recovery limits for the toolbox: its own and the effective."""
    return reports.monitoring_settings(session, context.settings, toolbox)


@router.patch("/api/v1/toolboxes/{toolbox_id}/monitoring", response_model=MonitoringSettingsOut)
def update_monitoring_settings(
    body: MonitoringSettingsPatch,
    toolbox: ToolboxDep,
    user: UserDep,
    session: SessionDep,
    context: ContextDep,
) -> MonitoringSettingsOut:
    """Change thresholds or switch recovery on/off for the toolbox; null restores a default."""
    changes = body.model_dump(exclude_unset=True)
    with audit.audited(
        session,
        user=user,
        action="toolbox.monitoring.update",
        toolbox_id=toolbox.id,
        parameters=changes,
    ):
        reports.update_monitoring_settings(session, toolbox, body)
    session.commit()
    return reports.monitoring_settings(session, context.settings, toolbox)


@router.get("/api/v1/alerts", response_model=list[AlertOut])
def list_alerts(
    user: UserDep,
    session: SessionDep,
    state: Annotated[Literal["open", "resolved"] | None, Query()] = None,
    toolbox_id: Annotated[str | None, Query(max_length=64)] = None,
    severity: Annotated[Literal["critical", "warning"] | None, Query()] = None,
    check: Annotated[str | None, Query(max_length=128)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[AlertOut]:
    """Alerts on the caller's toolboxes (every toolbox for an admin), newest first."""
    return reports.list_alerts(
        session, user, state=state, toolbox_id=toolbox_id, limit=limit,
        severity=severity, check=check,
    )  # fmt: skip


AlertIdPath = Annotated[str, Path(max_length=64)]


@router.post("/api/v1/alerts/{alert_id}/acknowledge", response_model=AlertOut)
def acknowledge_alert(
    alert_id: AlertIdPath, body: AcknowledgeIn, user: UserDep, session: SessionDep
) -> AlertOut:
    """Say an open alert is seen and being handled: who, when and a comment are kept with
    it, and no reminder is sent for it any more (audited)."""
    alert = reports.acknowledge(session, user, alert_id, body.comment)
    return AlertOut.model_validate(alert)


@router.get("/api/v1/alerts/{alert_id}", response_model=AlertDetail)
def get_alert(alert_id: AlertIdPath, user: UserDep, session: SessionDep) -> AlertDetail:
    """One alert with its recovery attempts (each a run) and notification deliveries."""
    return reports.alert_detail(session, user, alert_id)


# -- maintenance windows ---------------------------------------------------------------------
@router.get("/api/v1/toolboxes/{toolbox_id}/maintenance", response_model=MaintenanceState)
def get_maintenance(toolbox: ToolboxDep, session: SessionDep) -> MaintenanceState:
    """The maintenance window in force on the toolbox, if any."""
    window = maintenance.active(session, toolbox.id)
    return MaintenanceState(
        toolbox_id=toolbox.id,
        active=MaintenanceOut.model_validate(window) if window is not None else None,
    )


@router.post("/api/v1/toolboxes/{toolbox_id}/maintenance", response_model=MaintenanceOut)
def start_maintenance(
    body: MaintenanceIn, toolbox: ToolboxDep, user: UserDep, session: SessionDep
) -> MaintenanceOut:
    """Put the toolbox in maintenance until `until` (at most 7 days ahead; replaces a window
    in force): it is still observed and recorded, but no alert opens and no automatic
    recovery runs. The window ends by itself (audited)."""
    window = maintenance.start(session, toolbox, user, body.until, body.reason)
    return MaintenanceOut.model_validate(window)


@router.delete("/api/v1/toolboxes/{toolbox_id}/maintenance", response_model=MaintenanceOut)
def end_maintenance(toolbox: ToolboxDep, user: UserDep, session: SessionDep) -> MaintenanceOut:
    """End the toolbox's maintenance window now (audited); 404 when none is in force."""
    return MaintenanceOut.model_validate(maintenance.end(session, toolbox, user))


# -- notifications -----------------------------------------------------------------------------
@router.get("/api/v1/notifications", response_model=NotificationSettings)
def notification_settings(
    _admin: AdminDep, monitor: MonitorDep, context: ContextDep
) -> NotificationSettings:
    """Where alert events go (admin): every webhook and Apprise URL, masked, with the
    severities routed to it."""
    targets = [
        NotificationTarget(
            service=getattr(t, "service", "webhook"),
            url=t.label,
            severities=sorted(getattr(t, "severities", ("critical", "warning"))),
        )
        for t in monitor.webhooks.targets
    ]
    return NotificationSettings(targets=targets, repeat_seconds=context.settings.notify_repeat)


@router.post("/api/v1/notifications/test", response_model=NotificationTestOut)
async def notification_test(admin: AdminDep, monitor: MonitorDep) -> NotificationTestOut:
    """Send a test message to every notification target now (admin); says which took it."""
    results = await monitor.webhooks.send_test(admin.name)
    return NotificationTestOut(
        delivered=sum(r.error is None for r in results),
        failed=sum(r.error is not None for r in results),
        targets=[
            {"target": r.target, "status": "failed" if r.error else "delivered", "error": r.error}
            for r in results
        ],
    )
