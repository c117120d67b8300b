"""What the pages show, read from the database in one go per page (no query per row)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from api.models import Toolbox, ToolInstance, User
from api.monitoring import maintenance
from api.monitoring.models import Alert
from api.services import toolboxes

RUNNING_STATES = {"running", "restarting"}


@dataclass(frozen=True)
class ToolboxRow:
    id: str
    name: str
    region: str | None
    address: str | None
    status: str
    agent_version: str | None
    last_seen_at: datetime | None
    last_error: str | None
    tools_running: int
    tools_total: int
    open_alerts: int
    busy: bool
    maintenance_until: datetime | None = None
    maintenance_reason: str | None = None


def _tool_counts(db: Session, ids: list[str]) -> dict[str, Counter[str]]:
    counts: dict[str, Counter[str]] = {toolbox_id: Counter() for toolbox_id in ids}
    rows = db.execute(
        select(ToolInstance.toolbox_id, ToolInstance.state, func.count())
        .where(ToolInstance.toolbox_id.in_(ids), ToolInstance.removed_at.is_(None))
        .group_by(ToolInstance.toolbox_id, ToolInstance.state)
    )
    for toolbox_id, state, count in rows:
        counts[toolbox_id][state] += count
    return counts


def open_alert_counts(db: Session, ids: list[str]) -> dict[str, int]:
    rows = db.execute(
        select(Alert.toolbox_id, func.count())
        .where(Alert.toolbox_id.in_(ids), Alert.state == "open")
        .group_by(Alert.toolbox_id)
    )
    return {toolbox_id: count for toolbox_id, count in rows}


def toolbox_rows(db: Session, user: User) -> list[ToolboxRow]:
    found: list[Toolbox] = toolboxes.list_toolboxes(db, user, include_removed=False)
    ids = [t.id for t in found]
    tools = _tool_counts(db, ids)
    alerts = open_alert_counts(db, ids)
    windows = maintenance.active_by_toolbox(db, ids)
    return [
        ToolboxRow(
            id=t.id,
            name=t.name,
            region=t.region,
            address=t.address,
            status=t.status,
            agent_version=t.agent_version,
            last_seen_at=t.last_seen_at,
            last_error=t.last_error,
            tools_running=sum(n for s, n in tools[t.id].items() if s in RUNNING_STATES),
            tools_total=sum(tools[t.id].values()),
            open_alerts=alerts.get(t.id, 0),
            busy=t.active_run_id is not None,
            maintenance_until=windows[t.id].until if t.id in windows else None,
            maintenance_reason=windows[t.id].reason if t.id in windows else None,
        )
        for t in found
    ]
