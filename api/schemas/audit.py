"""Audit log shapes: who did what to which toolbox, with which parameters (secrets redacted)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from api.services.audit_log import AuditRow


class AuditEntryOut(BaseModel):
    id: int
    at: datetime
    actor: str = Field(description="The user's name, `system` or `cli`")
    user_id: str | None
    action: str
    toolbox_id: str | None
    toolbox_name: str | None
    run_id: str | None
    parameters: dict[str, Any] = Field(description="As given, every secret-looking value redacted")
    outcome: str = Field(description="queued | running | successful | failed | rejected | ...")
    detail: str | None
    request_id: str | None

    @classmethod
    def of(cls, row: AuditRow) -> AuditEntryOut:
        entry = row.entry
        return cls(
            id=entry.id, at=entry.at, actor=entry.actor, user_id=entry.user_id,
            action=entry.action, toolbox_id=entry.toolbox_id, toolbox_name=row.toolbox_name,
            run_id=entry.run_id, parameters=row.parameters, outcome=entry.outcome,
            detail=entry.detail, request_id=entry.request_id,
        )  # fmt: skip
