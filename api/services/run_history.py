"""Reading runs as a user may see them: their own toolboxes' runs and the runs they started
(admins see all), with the queue position of runs that wait. Used by the runs routes and
the web console's toolbox page."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from api.errors import NotFound
from api.models import Run, Toolbox, User
from api.schemas.runs import RunOut


def _visible(query: Any, user: User) -> Any:
    if user.is_admin:
        return query
    owned = select(Toolbox.id).where(Toolbox.owner_id == user.id)
    return query.where(or_(Run.toolbox_id.in_(owned), Run.user_id == user.id))


def get(session: Session, user: User, run_id: str) -> Run:
    run = session.scalar(_visible(select(Run).where(Run.id == run_id), user))
    if run is None:
        raise NotFound(f"run '{run_id}' not found", code="run_not_found")
    return run


def queue_position(session: Session, run: Run) -> int | None:
    """How many queued runs are ahead of this one (0: next), None when it is not queued."""
    if run.status != "queued":
        return None
    ahead = session.scalar(
        select(func.count())
        .select_from(Run)
        .where(Run.status == "queued", Run.created_at < run.created_at)
    )
    return int(ahead or 0)


def out(session: Session, run: Run) -> RunOut:
    shown = RunOut.model_validate(run)
    shown.queue_position = queue_position(session, run)
    return shown


def list_runs(
    session: Session,
    user: User,
    *,
    toolbox_id: str | None = None,
    status: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> list[RunOut]:
    """Newest first."""
    query = _visible(select(Run), user)
    if toolbox_id is not None:
        query = query.where(Run.toolbox_id == toolbox_id)
    if status is not None:
        query = query.where(Run.status == status)
    query = query.order_by(Run.created_at.desc(), Run.id).limit(limit).offset(offset)
    return [out(session, run) for run in session.scalars(query)]
