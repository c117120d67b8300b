"""Reading runs as a user may see them: their own toolboxes' runs and the runs they started
(admins see all), with the queue position of runs that wait. Used by the runs routes and
the web console's toolbox page."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from api.errors import NotFound
from api.models import AuditEntry, Run, Toolbox, User
from api.schemas.runs import RunOut
from api.services import history_filters as parse


@dataclass(frozen=True)
class RunFilters:
    """What the run history is narrowed to; every field optional (None: any)."""

    toolbox_id: str | None = None
    action: str | None = None
    status: str | None = None
    user: str | None = None  # the name of the user who started the run
    when: parse.TimeRange = field(default_factory=parse.TimeRange)

    @classmethod
    def parse(
        cls,
        *,
        toolbox: str | None = None,
        action: str | None = None,
        status: str | None = None,
        user: str | None = None,
        since: str | None = None,
        until: str | None = None,
    ) -> RunFilters:
        """From the text of a query string; InvalidInput names the field that is wrong."""
        return cls(
            toolbox_id=parse.toolbox_id(toolbox),
            action=parse.action(action),
            status=parse.run_status(status),
            user=parse.user_name(user),
            when=parse.TimeRange.parse(since, until),
        )


def of_toolboxes(toolbox_ids: Any) -> Any:
    """Runs of these toolboxes (a list or a select of ids): each one's own runs, and the
    rollouts' runs that held it. A rollout's run has no single toolbox (`toolbox_id` is
    NULL): every toolbox it locked has its audit entry with the run's id (run_store)."""
    held = select(AuditEntry.run_id).where(
        AuditEntry.toolbox_id.in_(toolbox_ids), AuditEntry.run_id.is_not(None)
    )
    return or_(Run.toolbox_id.in_(toolbox_ids), and_(Run.toolbox_id.is_(None), Run.id.in_(held)))


def _visible(query: Any, user: User) -> Any:
    if user.is_admin:
        return query
    owned = select(Toolbox.id).where(Toolbox.owner_id == user.id)
    return query.where(or_(of_toolboxes(owned), Run.user_id == user.id))


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
    filters: RunFilters | None = None,
    *,
    toolbox_id: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> list[RunOut]:
    """The runs the user may see that match `filters`, newest first."""
    filters = filters or RunFilters()
    query = _visible(select(Run), user)
    toolbox_id = toolbox_id or filters.toolbox_id
    if toolbox_id is not None:
        query = query.where(of_toolboxes([toolbox_id]))
    if filters.action is not None:
        query = query.where(Run.action == filters.action)
    if filters.status is not None:
        query = query.where(Run.status == filters.status)
    if filters.user is not None:
        query = query.where(Run.user_id.in_(select(User.id).where(User.name == filters.user)))
    if filters.when.since is not None:
        query = query.where(Run.created_at >= filters.when.since)
    if filters.when.until is not None:
        query = query.where(Run.created_at <= filters.when.until)
    query = query.order_by(Run.created_at.desc(), Run.id).limit(limit).offset(offset)
    return [out(session, run) for run in session.scalars(query)]


def actions_seen(session: Session, user: User) -> list[str]:
    """The actions of the runs the user may see (what the Runs page's filter offers)."""
    query = _visible(select(Run.action), user).distinct().order_by(Run.action)
    return list(session.scalars(query))
