"""The audit log: who did what to which toolbox, with redacted parameters, and the outcome."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy.orm import Session

from api.errors import ApiError
from api.log import request_id_var
from api.models import AuditEntry, User

REDACTED = "<redacted>"
_SECRET_KEY = re.compile(r"(env|token|secret|password|passwd|private|key|credential)", re.I)


def redact(value: Any, *, key: str = "") -> Any:
    """A copy of `value` where anything under a secret-looking key is replaced."""
    if key and _SECRET_KEY.search(key):
        return REDACTED
    if isinstance(value, dict):
        return {k: redact(v, key=str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    return value


def record(
    session: Session,
    *,
    user: User | None,
    action: str,
    outcome: str,
    toolbox_id: str | None = None,
    run_id: str | None = None,
    parameters: dict[str, Any] | None = None,
    detail: str | None = None,
    actor: str | None = None,
) -> AuditEntry:
    entry = AuditEntry(
        user_id=user.id if user else None,
        actor=actor or (user.name if user else "system"),
        action=action,
        toolbox_id=toolbox_id,
        run_id=run_id,
        parameters=redact(parameters or {}),
        outcome=outcome,
        detail=detail,
        request_id=request_id_var.get(),
    )
    session.add(entry)
    return entry


@contextmanager
def audited(
    session: Session,
    *,
    user: User | None,
    action: str,
    toolbox_id: str | None = None,
    parameters: dict[str, Any] | None = None,
    actor: str | None = None,
) -> Iterator[AuditEntry]:
    """Record `action` as successful when the block ends, or as failed (with the reason,
    committed on its own) when it raises an ApiError. The caller commits on success."""
    try:
        yield record(
            session,
            user=user,
            action=action,
            outcome="successful",
            toolbox_id=toolbox_id,
            parameters=parameters,
            actor=actor,
        )
    except ApiError as error:
        session.rollback()
        record(
            session,
            user=user,
            action=action,
            outcome="rejected" if error.status < 500 else "failed",
            toolbox_id=toolbox_id,
            parameters=parameters,
            detail=error.message,
            actor=actor,
        )
        session.commit()
        raise
