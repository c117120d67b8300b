"""/api/v1/audit: the audit log, as the caller may see it."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import SessionDep, UserDep
from api.schemas.audit import AuditEntryOut
from api.services import audit_log
from api.services.history_filters import TIME_EXAMPLE

router = APIRouter(prefix="/api/v1/audit", tags=["audit"])

TIME_HELP = f"ISO 8601 time, UTC unless it has a zone: {TIME_EXAMPLE}"


@router.get("", response_model=list[AuditEntryOut])
def list_audit(
    user: UserDep,
    session: SessionDep,
    user_name: Annotated[str | None, Query(alias="user", max_length=128)] = None,
    action: Annotated[str | None, Query(max_length=128, examples=["tool.deploy"])] = None,
    toolbox_id: Annotated[str | None, Query(max_length=64)] = None,
    since: Annotated[str | None, Query(max_length=64, description=TIME_HELP)] = None,
    until: Annotated[str | None, Query(max_length=64, description=TIME_HELP)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> list[AuditEntryOut]:
    """Newest first. Admins see every entry; others the entries about the toolboxes they
    own and their own actions."""
    filters = audit_log.AuditFilters.parse(
        user=user_name, action=action, toolbox=toolbox_id, since=since, until=until
    )
    rows = audit_log.list_entries(session, user, filters, limit=limit, offset=offset)
    return [AuditEntryOut.of(row) for row in rows]
