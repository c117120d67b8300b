"""The one module that writes runs: open (lock + row + audit), claim, events, close,
interrupt. Both executors use it: the local run manager in the console process and the
Celery worker in its own process, on the same shared database.

The per-toolbox lock is the `toolboxes.active_run_id` column, taken and released with
conditional UPDATEs, so it holds across threads, processes and both database engines.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

import runner
from api.errors import ToolboxBusy
from api.models import AuditEntry, Rollout, Run, Toolbox, ToolInstance, User, utcnow
from api.models import RunEvent as StoredEvent
from api.services import audit, rollouts_progress
from api.services.actions import Action

log = logging.getLogger("api.runs")

IN_FLIGHT = ("queued", "running")
Sessions = sessionmaker[Session]


def run_url(run_id: str) -> str:
    return f"/api/v1/runs/{run_id}"


def _take_lock(session: Session, toolbox_id: str, run_id: str) -> None:
    taken = session.execute(
        update(Toolbox)
        .where(Toolbox.id == toolbox_id, Toolbox.active_run_id.is_(None))
        .values(active_run_id=run_id)
    )
    if taken.rowcount == 1:  # type: ignore[attr-defined]
        return
    holder = session.scalar(select(Toolbox.active_run_id).where(Toolbox.id == toolbox_id))
    holder_status = session.scalar(select(Run.status).where(Run.id == holder))
    if holder_status not in IN_FLIGHT:
        # The holder ended without releasing (a crash between two writes): reclaim.
        retaken = session.execute(
            update(Toolbox)
            .where(Toolbox.id == toolbox_id, Toolbox.active_run_id == holder)
            .values(active_run_id=run_id)
        )
        if retaken.rowcount == 1:  # type: ignore[attr-defined]
            return
    raise ToolboxBusy(
        f"the toolbox is busy with run {holder}; wait for it to end or cancel it",
        run_id=holder,
        run_url=run_url(holder) if holder else None,
    )


def open_run(
    sessions: Sessions,
    run_id: str,
    *,
    toolbox_id: str,
    host: str,
    action: Action,
    user: User | None,
    owner: str | None,
    running: bool = False,
    extravars_sealed: str | None = None,
) -> None:
    """Lock the toolbox and store the run with its audit row, in one transaction: `queued`,
    or `running` when `owner` (this process) starts it at once. ToolboxBusy (audited as
    rejected) when another run holds the toolbox. `owner` is None while the run waits for
    a worker to claim it."""
    with sessions() as session:
        try:
            with session.begin():
                _take_lock(session, toolbox_id, run_id)
                now = utcnow()
                session.add(
                    Run(
                        id=run_id,
                        toolbox_id=toolbox_id,
                        user_id=user.id if user else None,
                        action=action.name,
                        playbook=action.playbook,
                        request={
                            "hosts": [host],
                            "parameters": action.parameters,
                            "tool_name": action.tool_name,
                        },
                        status="running" if running else "queued",
                        created_at=now,
                        started_at=now if running else None,
                        owner=owner,
                        heartbeat_at=now if owner else None,
                        extravars_sealed=extravars_sealed,
                    )
                )
                audit.record(
                    session,
                    user=user,
                    action=action.name,
                    outcome="running" if running else "queued",
                    toolbox_id=toolbox_id,
                    run_id=run_id,
                    parameters=action.parameters,
                )
        except ToolboxBusy as busy:
            with session.begin():
                audit.record(
                    session,
                    user=user,
                    action=action.name,
                    outcome="rejected",
                    toolbox_id=toolbox_id,
                    parameters=action.parameters,
                    detail=busy.message,
                )
            raise


def _release(session: Session, *run_ids: str) -> None:
    """Free every toolbox the runs hold (one, or each toolbox of a rollout's run), stamping
    when their run ended (a fresh read never reaches back past it)."""
    session.execute(
        update(Toolbox)
        .where(Toolbox.active_run_id.in_(run_ids))
        .values(active_run_id=None, run_ended_at=utcnow())
    )


def open_fleet_run(
    sessions: Sessions,
    run_id: str,
    *,
    members: dict[str, str],
    action: Action,
    user: User | None,
    owner: str | None,
    running: bool = False,
    extravars_sealed: str | None = None,
    rollout_id: str | None = None,
) -> dict[str, str]:
    """A run over several toolboxes (a rollout): lock each of `members` (toolbox id ->
    host) that is free and store the run over those, in one transaction; returns the
    toolboxes skipped as busy, with the reason. ToolboxBusy (nothing stored) when every
    one is busy. Audited once per locked toolbox, like single runs."""
    skipped: dict[str, str] = {}
    with sessions.begin() as session:
        for toolbox_id in members:
            try:  # a refused lock wrote nothing: no savepoint needed
                _take_lock(session, toolbox_id, run_id)
            except ToolboxBusy as busy:
                skipped[toolbox_id] = busy.message
        locked = [tid for tid in members if tid not in skipped]
        if not locked:
            raise ToolboxBusy("every targeted toolbox is busy with another run")
        now = utcnow()
        session.add(
            Run(
                id=run_id,
                toolbox_id=None,
                user_id=user.id if user else None,
                action=action.name,
                playbook=action.playbook,
                request={
                    "hosts": [members[tid] for tid in locked],
                    "toolbox_ids": locked,
                    "parameters": action.parameters,
                    "tool_name": action.tool_name,
                    "rollout_id": rollout_id,
                },
                status="running" if running else "queued",
                created_at=now,
                started_at=now if running else None,
                owner=owner,
                heartbeat_at=now if owner else None,
                extravars_sealed=extravars_sealed,
            )
        )
        for toolbox_id in locked:
            audit.record(
                session,
                user=user,
                action=action.name,
                outcome="running" if running else "queued",
                toolbox_id=toolbox_id,
                run_id=run_id,
                parameters={**action.parameters, "rollout_id": rollout_id},
            )
    return skipped


def _audit_entries(session: Session, run_id: str) -> list[AuditEntry]:
    return list(
        session.scalars(
            select(AuditEntry).where(
                AuditEntry.run_id == run_id, AuditEntry.action.not_like("run.%")
            )
        )
    )


def abandon(sessions: Sessions, run_id: str, toolbox_id: str, reason: str) -> None:
    """A run refused before it started: unlock, audit as rejected, forget the run."""
    with sessions.begin() as session:
        _release(session, run_id)
        for entry in _audit_entries(session, run_id):
            entry.outcome, entry.run_id, entry.detail = "rejected", None, reason
        run = session.get(Run, run_id)
        if run is not None:
            session.delete(run)


def claim(sessions: Sessions, run_id: str, owner: str, *, unowned: bool) -> bool:
    """`queued` -> `running` under `owner`, once: False when the run is no longer queued
    (canceled, reaped, or claimed by another worker). `unowned`: the run waits for a
    worker (celery); otherwise it must be this owner's own queued run."""
    now = utcnow()
    with sessions.begin() as session:
        query = update(Run).where(Run.id == run_id, Run.status == "queued")
        query = query.where(Run.owner.is_(None) if unowned else Run.owner == owner)
        claimed = session.execute(
            query.values(status="running", owner=owner, heartbeat_at=now, started_at=now)
        )
        if claimed.rowcount != 1:  # type: ignore[attr-defined]
            return False
        for entry in _audit_entries(session, run_id):
            entry.outcome = "running"
        return True


def cancel_queued(sessions: Sessions, run_id: str, result: runner.ConsoleResult) -> bool:
    """End a run that no worker has claimed yet, atomically against a claim: False when it
    is no longer waiting unowned (a worker holds it, or it ended)."""
    with sessions.begin() as session:
        taken = session.execute(
            update(Run)
            .where(Run.id == run_id, Run.status == "queued", Run.owner.is_(None))
            .values(status="canceled")
        )
        if taken.rowcount != 1:  # type: ignore[attr-defined]
            return False
        run = session.get(Run, run_id)
        assert run is not None
        run.success, run.message, run.error = False, result.message, result.error
        run.finished_at, run.result = result.finished_at, result.model_dump(mode="json")
        run.extravars_sealed = None
        for entry in _audit_entries(session, run_id):
            entry.outcome, entry.detail = "canceled", result.error
        _release(session, run_id)
        return True


def request_cancel(sessions: Sessions, run_id: str) -> bool:
    """Mark an in-flight run for cancel (its owner stops it when it sees the mark)."""
    with sessions.begin() as session:
        marked = session.execute(
            update(Run)
            .where(Run.id == run_id, Run.status.in_(IN_FLIGHT))
            .values(cancel_requested_at=utcnow())
        )
        return marked.rowcount == 1  # type: ignore[attr-defined]


def status_of(sessions: Sessions, run_id: str) -> str | None:
    with sessions() as session:
        return session.scalar(select(Run.status).where(Run.id == run_id))


def rollout_cancel_requested(sessions: Sessions, run_id: str) -> bool:
    """Whether the rollout this run executes was asked to stop (BatchGate reads it)."""
    with sessions() as session:
        asked = session.scalar(select(Rollout.cancel_requested_at).where(Rollout.run_id == run_id))
        return asked is not None


def queued_count(sessions: Sessions) -> int:
    with sessions() as session:
        count = session.scalar(select(func.count()).select_from(Run).where(Run.status == "queued"))
        return int(count or 0)


def store_event(sessions: Sessions, event: runner.RunEvent) -> None:
    """In the runner's worker thread, as each event happens (seq is gap-free per run)."""
    with sessions.begin() as session:
        session.add(
            StoredEvent(
                run_id=event.run_id,
                seq=event.seq,
                type=event.type,
                host=event.host,
                task=event.task,
                at=event.at,
                data=event.data,
            )
        )


def stored_events(
    sessions: Sessions, run_id: str, after: int
) -> tuple[list[dict[str, Any]], str | None]:
    """Events with seq > after, in order, and the run's status."""
    with sessions() as session:
        status = session.scalar(select(Run.status).where(Run.id == run_id))
        rows = session.scalars(
            select(StoredEvent)
            .where(StoredEvent.run_id == run_id, StoredEvent.seq > after)
            .order_by(StoredEvent.seq)
        )
        events = [
            {
                "seq": r.seq,
                "run_id": r.run_id,
                "type": r.type,
                "host": r.host,
                "task": r.task,
                "at": r.at.isoformat(),
                "data": r.data,
            }
            for r in rows
        ]
    return events, status


def close_run(sessions: Sessions, run_id: str, result: runner.ConsoleResult) -> bool:
    """Store the result, release the toolbox, settle the audit row. The status is written
    only while the run is still in flight: a run the reaper already wrote off stays
    `interrupted` (its result is kept). Returns whether this call ended the run."""
    with sessions.begin() as session:
        run = session.get(Run, run_id)
        if run is None:
            return False
        ended = run.status in IN_FLIGHT
        run.result = result.model_dump(mode="json")
        run.extravars_sealed = None
        if ended:
            run.status = result.status
            run.success = result.success
            run.message = result.message
            run.error = result.error
            run.finished_at = result.finished_at
            for entry in _audit_entries(session, run_id):
                entry.outcome = result.status
                entry.detail = result.error or result.message
            if run.toolbox_id is None:
                _settle_rollout_audit(session, run)
        _release(session, run_id)
        tool_name = (run.request or {}).get("tool_name")
        if ended and tool_name:
            for toolbox_id, published in _verified_tool_outcomes(run, result):
                _apply_tool_outcome(
                    session, toolbox_id, run.action, tool_name, published, result.finished_at
                )
        return ended


def _settle_rollout_audit(session: Session, run: Run) -> None:
    """A rollout's run: each toolbox's audit entry gets its host's state and message (as
    the rollout shows them), the rollout's own entry the rollout's status."""
    rollout = session.scalar(select(Rollout).where(Rollout.run_id == run.id))
    if rollout is None:  # not stored yet (the run ended at once): the run's outcome stands
        return
    hosts, state = rollouts_progress.hosts(session, rollout, run, ended=True)
    by_toolbox = {host.toolbox_id: host for host in hosts}
    for entry in _audit_entries(session, run.id):
        host = by_toolbox.get(entry.toolbox_id or "")
        if host is not None:
            entry.outcome, entry.detail = host.state, f"{host.name}: {host.message}"
        elif entry.action == "rollout.start":
            entry.outcome = rollouts_progress.status(state, hosts, ended=True)


def _verified_tool_outcomes(
    run: Run, result: runner.ConsoleResult
) -> list[tuple[str, dict[str, Any]]]:
    """(toolbox id, what the role published) for each toolbox whose tool action verified,
    or whose new container the role left stopped: the run's toolbox, or each host of a
    rollout's run that ran without a failure (a halted rollout's hosts verified in the
    batches before the halt count; hosts never reached published nothing)."""
    if run.toolbox_id is not None:
        published = result.data.get("tool_result")
        mine = published if isinstance(published, dict) else {}
        verified = result.success or _left_stopped(mine)
        return [(run.toolbox_id, mine)] if verified else []
    request = run.request or {}
    outcomes = []
    members = zip(request.get("hosts", []), request.get("toolbox_ids", []), strict=True)
    for host, toolbox_id in members:
        published = ((result.data.get("per_host") or {}).get(host) or {}).get("tool_result")
        counts = result.hosts.get(host)
        if not isinstance(published, dict) or counts is None:
            continue
        if (counts.failed == 0 and counts.unreachable == 0) or _left_stopped(published):
            outcomes.append((toolbox_id, published))
    return outcomes


def interrupt(session: Session, runs: list[Run], reason: str, message: str) -> list[str]:
    """Write off in-flight runs whose executor is gone: `interrupted` with the reason, their
    toolboxes unlocked. Nothing on the toolbox is touched."""
    now = utcnow()
    for run in runs:
        run.status, run.success, run.finished_at = "interrupted", False, now
        run.error, run.message = reason, message
        run.extravars_sealed = None
        for entry in _audit_entries(session, run.id):
            entry.outcome, entry.detail = "interrupted", reason
    ids = [run.id for run in runs]
    if ids:
        _release(session, *ids)
    return ids


def canceled_before_start(run_id: str, action: str, toolbox_id: str | None) -> runner.ConsoleResult:
    now = utcnow()
    return runner.ConsoleResult(
        run_id=run_id,
        action=action,
        toolbox_id=toolbox_id,
        status="canceled",
        success=False,
        message=f"{action} was canceled before it started",
        error="canceled while queued: nothing ran on the toolbox",
        started_at=now,
        finished_at=now,
        duration_ms=0,
    )


def refused(
    run_id: str, action: str, toolbox_id: str | None, error: runner.RequestError
) -> runner.ConsoleResult:
    now = utcnow()
    return runner.ConsoleResult(
        run_id=run_id,
        action=action,
        toolbox_id=toolbox_id,
        status="error",
        success=False,
        message=f"{action} could not start",
        error=f"{error.field}: {error.message}",
        started_at=now,
        finished_at=now,
        duration_ms=0,
    )


def result_of(sessions: Sessions, run_id: str) -> runner.ConsoleResult | None:
    """The stored ConsoleResult of an ended run (interrupted runs get one made up from
    what is stored), None while it is in flight."""
    with sessions() as session:
        run = session.get(Run, run_id)
        if run is None or run.status in IN_FLIGHT:
            return None
        if run.result is not None and run.status != "interrupted":
            return runner.ConsoleResult.model_validate(run.result)
        started: datetime = run.started_at or run.created_at
        finished: datetime = run.finished_at or utcnow()
        return runner.ConsoleResult(
            run_id=run.id,
            action=run.action,
            toolbox_id=run.toolbox_id,
            status="error",
            success=False,
            message=run.message or f"{run.action} was interrupted",
            error=run.error,
            started_at=started,
            finished_at=finished,
            duration_ms=int((finished - started).total_seconds() * 1000),
        )


def _left_stopped(published: dict[str, Any]) -> bool:
    """A deploy that did not verify and whose new container the role stopped on purpose (so
    that Docker stops restarting it): monitoring must not restart it either."""
    return published.get("left_stopped") is True


def _apply_tool_outcome(
    session: Session,
    toolbox_id: str,
    action: str,
    tool_name: str,
    published: dict[str, Any],
    finished_at: datetime,
) -> None:
    """Reflect a verified tool action (what the role published) in the tool instance's
    row at once."""
    instance = session.scalar(
        select(ToolInstance).where(
            ToolInstance.toolbox_id == toolbox_id, ToolInstance.name == tool_name
        )
    )
    if instance is None:
        instance = ToolInstance(toolbox_id=toolbox_id, name=tool_name)
        session.add(instance)
    after = published.get("state_after")
    kind = action.removeprefix("tool.")
    instance.observed_at = finished_at
    if kind == "remove":
        instance.state, instance.removed_at = "removed", finished_at
        return
    instance.removed_at = None
    instance.stopped_on_purpose = kind == "stop" or _left_stopped(published)
    instance.state = str(after) if after else ("exited" if kind == "stop" else "running")
    instance.image = published.get("image") or instance.image
    instance.container_id = published.get("container_id") or instance.container_id
