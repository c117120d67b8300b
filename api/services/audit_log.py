"""Reading the audit log as a user may see it: admins every entry; others the entries about
the toolboxes they own and what they did themselves. Used by GET /api/v1/audit and the web
console's Audit page. (api/services/audit.py is the one writer.)"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from api.models import AuditEntry, Toolbox, User
from api.services import audit
from api.services import history_filters as parse


@dataclass(frozen=True)
class AuditFilters:
    user: str | None = None  # the actor's name
    action: str | None = None
    toolbox_id: str | None = None
    when: parse.TimeRange = field(default_factory=parse.TimeRange)

    @classmethod
    def parse(
        cls,
        *,
        user: str | None = None,
        action: str | None = None,
        toolbox: str | None = None,
        since: str | None = None,
        until: str | None = None,
    ) -> AuditFilters:
        """From the text of a query string; InvalidInput names the field that is wrong."""
        return cls(
            user=parse.user_name(user),
            action=parse.action(action),
            toolbox_id=parse.toolbox_id(toolbox),
            when=parse.TimeRange.parse(since, until),
        )


@dataclass(frozen=True)
class AuditRow:
    """An entry as it may be shown: parameters redacted again on the way out, so that an
    entry written before a secret-looking key was known never shows its value."""

    entry: AuditEntry
    parameters: dict[str, Any]
    toolbox_name: str | None


def _visible(query: Any, user: User) -> Any:
    if user.is_admin:
        return query
    owned = select(Toolbox.id).where(Toolbox.owner_id == user.id)
    return query.where(or_(AuditEntry.toolbox_id.in_(owned), AuditEntry.user_id == user.id))


def list_entries(
    session: Session, user: User, filters: AuditFilters, *, limit: int = 50, offset: int = 0
) -> list[AuditRow]:
    """Newest first."""
    query = _visible(select(AuditEntry), user)
    if filters.user is not None:
        query = query.where(AuditEntry.actor == filters.user)
    if filters.action is not None:
        query = query.where(AuditEntry.action == filters.action)
    if filters.toolbox_id is not None:
        query = query.where(AuditEntry.toolbox_id == filters.toolbox_id)
    if filters.when.since is not None:
        query = query.where(AuditEntry.at >= filters.when.since)
    if filters.when.until is not None:
        query = query.where(AuditEntry.at <= filters.when.until)
    query = query.order_by(AuditEntry.at.desc(), AuditEntry.id.desc()).limit(limit).offset(offset)
    entries = list(session.scalars(query))
    ids = {e.toolbox_id for e in entries if e.toolbox_id}
    found = session.execute(select(Toolbox.id, Toolbox.name).where(Toolbox.id.in_(ids)))
    names = {toolbox_id: name for toolbox_id, name in found}
    return [
        AuditRow(e, audit.redact(e.parameters or {}), names.get(e.toolbox_id or ""))
        for e in entries
    ]


def actions_seen(session: Session, user: User) -> list[str]:
    """The actions of the entries the user may see (what the Audit page's filter offers)."""
    query = _visible(select(AuditEntry.action), user).distinct().order_by(AuditEntry.action)
    return list(session.scalars(query))
