"""Routes: a toolbox's health, its monitoring settings, and alerts. Including this router
also brings the monitor's lifespan: the Monitor (app.state.monitor), hooked after every run,
and the periodic cycle when DTMA_MONITOR_INTERVAL is above 0."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request

from api.context import Context
from api.deps import ContextDep, SessionDep, ToolboxDep, UserDep
from api.monitoring import reports
from api.monitoring.leader import Leadership
from api.monitoring.scheduler import Scheduler
from api.monitoring.schemas import (
    AlertDetail,
    AlertOut,
    MonitoringSettingsOut,
    MonitoringSettingsPatch,
    ToolboxHealth,
)
from api.monitoring.service import Monitor
from api.services import audit


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    context: Context = app.state.context
    settings = context.settings
    async with Monitor(context) as monitor:
        app.state.monitor = monitor
        scheduler = Scheduler(
            monitor,
            settings.monitor_interval,
            settings.monitor_jitter,
            Leadership(context.engine),
        )
        app.state.monitor_scheduler = scheduler
        scheduler.start()
        try:
            yield
        finally:
            await scheduler.stop()


def get_monitor(request: Request) -> Monitor:
    monitor: Monitor = request.app.state.monitor
    return monitor


MonitorDep = Annotated[Monitor, Depends(get_monitor)]

router = APIRouter(tags=["monitoring"], lifespan=lifespan)


@router.get("/api/v1/toolboxes/{toolbox_id}/health", response_model=ToolboxHealth)
def toolbox_health(toolbox: ToolboxDep, session: SessionDep) -> ToolboxHealth:
    """Every check of the toolbox with its state, value and threshold, its open alerts, and
    an overall verdict, as of the last monitoring look."""
    return reports.toolbox_health(session, toolbox)


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
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[AlertOut]:
    """Alerts on the caller's toolboxes (every toolbox for an admin), newest first."""
    return reports.list_alerts(session, user, state=state, toolbox_id=toolbox_id, limit=limit)


@router.get("/api/v1/alerts/{alert_id}", response_model=AlertDetail)
def get_alert(
    alert_id: Annotated[str, Path(max_length=64)], user: UserDep, session: SessionDep
) -> AlertDetail:
    """One alert with its recovery attempts (each a run) and webhook deliveries."""
    return reports.alert_detail(session, user, alert_id)
