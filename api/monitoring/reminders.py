"""Reminders: an alert still open and unacknowledged DTMA_NOTIFY_REPEAT after its last
message is sent again (event `reminder`), once per period. None goes out for a toolbox in
maintenance; acknowledging an alert stops its reminders."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from api.db import session_scope
from api.models import Toolbox, utcnow
from api.monitoring import maintenance
from api.monitoring.events import AlertEvent, alert_event
from api.monitoring.models import Alert


def due(
    sessions: sessionmaker[Session],
    repeat_seconds: float,
    toolbox_ids: Collection[str] | None = None,
    now: datetime | None = None,
) -> list[AlertEvent]:
    """The reminders due now, each alert marked as notified in the same transaction."""
    if repeat_seconds <= 0:
        return []
    moment = now or utcnow()
    cutoff = moment - timedelta(seconds=repeat_seconds)
    query = (
        select(Alert, Toolbox.name)
        .join(Toolbox, Toolbox.id == Alert.toolbox_id)
        .where(
            Alert.state == "open",
            Alert.acknowledged_at.is_(None),
            func.coalesce(Alert.notified_at, Alert.opened_at) <= cutoff,
            Toolbox.removed_at.is_(None),
        )
        .order_by(Alert.opened_at)
    )
    if toolbox_ids is not None:
        query = query.where(Alert.toolbox_id.in_(list(toolbox_ids)))
    events = []
    with session_scope(sessions) as session:
        rows = list(session.execute(query))
        silenced = maintenance.active_by_toolbox(session, {a.toolbox_id for a, _ in rows}, moment)
        for alert, name in rows:
            if alert.toolbox_id in silenced:
                continue
            alert.notified_at = moment
            minutes = int((moment - alert.opened_at).total_seconds() // 60)
            events.append(alert_event(alert, name, "reminder", f"open for {minutes} min"))
    return events
