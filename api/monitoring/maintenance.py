"""Maintenance windows: a toolbox silenced on purpose until a given time.

While a window lasts the monitor still looks at the toolbox and records what it finds
(status, checks, metric samples), but opens no alert, sends no reminder and starts no
automatic recovery. A window ends by itself at `until` (nothing has to run for that: a
window counts only while `until` is ahead) or earlier when someone ends it.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.errors import InvalidInput, NotFound
from api.models import Toolbox, User, utcnow
from api.monitoring.models import MaintenanceWindow
from api.services import audit

# The longest window one request may set: a forgotten window must not silence a toolbox
# for ever.
MAX_WINDOW = timedelta(days=7)


def active(
    session: Session, toolbox_id: str, now: datetime | None = None
) -> MaintenanceWindow | None:
    return active_by_toolbox(session, [toolbox_id], now).get(toolbox_id)


def active_by_toolbox(
    session: Session, toolbox_ids: Collection[str], now: datetime | None = None
) -> dict[str, MaintenanceWindow]:
    """The window in force on each of the toolboxes (those without one are absent)."""
    if not toolbox_ids:
        return {}
    moment = now or utcnow()
    rows = session.scalars(
        select(MaintenanceWindow)
        .where(
            MaintenanceWindow.toolbox_id.in_(list(toolbox_ids)),
            MaintenanceWindow.ended_at.is_(None),
            MaintenanceWindow.starts_at <= moment,
            MaintenanceWindow.until > moment,
        )
        .order_by(MaintenanceWindow.until)
    )
    return {row.toolbox_id: row for row in rows}


def start(
    session: Session, toolbox: Toolbox, user: User, until: datetime, reason: str
) -> MaintenanceWindow:
    """Put the toolbox in maintenance until `until` (replacing a window already in force);
    audited and committed (the API and the web console's form both call this)."""
    parameters = {"until": until.isoformat(), "reason": reason}
    with audit.audited(
        session, user=user, action="toolbox.maintenance.start", toolbox_id=toolbox.id,
        parameters=parameters,
    ):  # fmt: skip
        window = _start(session, toolbox, user, until, reason)
    session.commit()
    return window


def _start(
    session: Session, toolbox: Toolbox, user: User, until: datetime, reason: str
) -> MaintenanceWindow:
    now = utcnow()
    if until.tzinfo is None:
        raise InvalidInput("until", "until: give a time zone (e.g. 2026-12-01T12:00:00Z)")
    if until <= now:
        raise InvalidInput("until", "until: must be in the future")
    if until - now > MAX_WINDOW:
        raise InvalidInput("until", f"until: at most {MAX_WINDOW.days} days ahead")
    current = active(session, toolbox.id, now)
    if current is not None:
        current.ended_at, current.ended_by = now, user.name
    window = MaintenanceWindow(
        toolbox_id=toolbox.id,
        starts_at=now,
        until=until,
        reason=reason,
        created_by=user.name,
    )
    session.add(window)
    session.flush()
    return window


def end(session: Session, toolbox: Toolbox, user: User) -> MaintenanceWindow:
    """End the window in force now; audited and committed."""
    with audit.audited(session, user=user, action="toolbox.maintenance.end", toolbox_id=toolbox.id):
        window = _end(session, toolbox, user)
    session.commit()
    return window


def _end(session: Session, toolbox: Toolbox, user: User) -> MaintenanceWindow:
    now = utcnow()
    current = active(session, toolbox.id, now)
    if current is None:
        raise NotFound(
            f"toolbox '{toolbox.name}' is not in maintenance", code="maintenance_not_found"
        )
    current.ended_at, current.ended_by = now, user.name
    return current
