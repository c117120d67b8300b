"""Runs: persisted before they start, one at a time per toolbox, executed by runner/ in a
worker thread, their events stored as they happen, their result stored when they end.

The per-toolbox lock is the `toolboxes.active_run_id` column, taken and released with
conditional UPDATEs, so it holds across threads, processes and both database engines.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

import runner
from api.context import Context
from api.errors import Conflict, InvalidInput, NotFound, ToolboxBusy
from api.metrics import RUN_DURATION, RUNS
from api.models import AuditEntry, Run, Toolbox, ToolInstance, User, new_id, utcnow
from api.models import RunEvent as StoredEvent
from api.services import audit, toolboxes
from api.services.actions import Action
from api.services.credentials import SshCredentials

log = logging.getLogger("api.runs")

IN_FLIGHT = ("queued", "running")
# How long past its own timeout a run may go without a result before it is written off.
WATCHDOG_GRACE_SECONDS = 120
INTERRUPTED_MESSAGE = (
    "the console stopped while this run was in flight; what it did on the toolbox is "
    "unknown (look at the toolbox's state before acting again)"
)

# Called after every run with (toolbox id, result); monitoring re-reads the toolbox.
AfterRunHook = Callable[[str, runner.ConsoleResult], Awaitable[None]]


def run_url(run_id: str) -> str:
    return f"/api/v1/runs/{run_id}"


@dataclass
class _Live:
    run_id: str
    toolbox_id: str
    action: Action
    handle: runner.RunHandle
    audit_id: int
    task: asyncio.Task[runner.ConsoleResult] | None = None


@dataclass(frozen=True)
class Target:
    """What a run needs to know about its toolbox, read before it starts."""

    toolbox_id: str
    host: str
    credentials: SshCredentials


class RunManager:
    def __init__(self, context: Context) -> None:
        self._context = context
        self._live: dict[str, _Live] = {}
        self.after_run: list[AfterRunHook] = []

    # -- start -----------------------------------------------------------------------------
    async def start(self, target: Target, action: Action, user: User | None) -> str:
        """Store the run, take the toolbox's lock, start it; returns the run id at once.

        ToolboxBusy when another run holds the toolbox; InvalidInput when the runner refuses
        the request (then nothing was started and the run is not kept)."""
        run_id = new_id()
        audit_id = await run_in_threadpool(self._open, run_id, target, action, user)
        settings = self._context.settings
        request = runner.RunRequest(
            playbook=action.playbook,
            hosts=[target.host],
            extravars=action.extravars,
            inventory=settings.inventory,
            ssh_private_key=target.credentials.private_key,
            known_hosts=target.credentials.known_hosts,
            timeout=settings.run_timeout,
            action=action.name,
            toolbox_id=target.toolbox_id,
            run_id=run_id,
            env=self._ansible_env(),
        )
        try:
            handle = runner.start_run(request, on_event=lambda event: self._store_event(event))
        except runner.RequestError as error:
            await run_in_threadpool(self._abandon, run_id, target.toolbox_id, audit_id, error)
            raise InvalidInput(error.field, error.message) from error
        live = _Live(run_id, target.toolbox_id, action, handle, audit_id)
        self._live[run_id] = live
        live.task = asyncio.create_task(self._finish(live), name=f"finish-{run_id}")
        return run_id

    def _ansible_env(self) -> dict[str, str]:
        return toolboxes.run_env(self._context)

    def _take_lock(self, session: Session, toolbox_id: str, run_id: str) -> None:
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

    def _open(self, run_id: str, target: Target, action: Action, user: User | None) -> int:
        with self._context.sessions() as session:
            try:
                with session.begin():
                    self._take_lock(session, target.toolbox_id, run_id)
                    now = utcnow()
                    session.add(
                        Run(
                            id=run_id,
                            toolbox_id=target.toolbox_id,
                            user_id=user.id if user else None,
                            action=action.name,
                            playbook=action.playbook,
                            request={"hosts": [target.host], "parameters": action.parameters},
                            status="running",
                            created_at=now,
                            started_at=now,
                        )
                    )
                    entry = audit.record(
                        session,
                        user=user,
                        action=action.name,
                        outcome="running",
                        toolbox_id=target.toolbox_id,
                        run_id=run_id,
                        parameters=action.parameters,
                    )
                    session.flush()
                    return entry.id
            except ToolboxBusy as busy:
                with session.begin():
                    audit.record(
                        session,
                        user=user,
                        action=action.name,
                        outcome="rejected",
                        toolbox_id=target.toolbox_id,
                        parameters=action.parameters,
                        detail=busy.message,
                    )
                raise

    def _abandon(
        self, run_id: str, toolbox_id: str, audit_id: int, error: runner.RequestError
    ) -> None:
        with self._context.sessions.begin() as session:
            session.execute(
                update(Toolbox)
                .where(Toolbox.id == toolbox_id, Toolbox.active_run_id == run_id)
                .values(active_run_id=None)
            )
            entry = session.get(AuditEntry, audit_id)
            if entry is not None:
                entry.outcome, entry.run_id = "rejected", None
                entry.detail = f"{error.field}: {error.message}"
            run = session.get(Run, run_id)
            if run is not None:
                session.delete(run)

    # -- while it runs -----------------------------------------------------------------------
    def _store_event(self, event: runner.RunEvent) -> None:
        """In the runner's worker thread, as each event happens."""
        with self._context.sessions.begin() as session:
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

    # -- end ---------------------------------------------------------------------------------
    async def _finish(self, live: _Live) -> runner.ConsoleResult:
        try:
            result = await self._outcome(live)
            if live.action.verify_agent:
                result = await self._confirm_agent(live, result)
            await run_in_threadpool(self._close, live, result)
            RUNS.labels(live.action.name, result.status).inc()
            RUN_DURATION.labels(live.action.name, result.status).observe(result.duration_ms / 1000)
        finally:
            self._live.pop(live.run_id, None)
        for hook in self.after_run:
            try:
                await hook(live.toolbox_id, result)
            except Exception:
                log.exception("after_run_hook_failed", extra={"run_id": live.run_id})
        return result

    async def _confirm_agent(
        self, live: _Live, result: runner.ConsoleResult
    ) -> runner.ConsoleResult:
        """The console's own read of the agent the run changed (see toolboxes.confirm_agent)."""
        try:
            return await toolboxes.confirm_agent(self._context, live.toolbox_id, result)
        except Exception as error:  # the run must still end and free its toolbox
            log.exception("agent_confirm_failed", extra={"run_id": live.run_id})
            reason = f"the console could not read the agent after the run: {error}"
            return result.model_copy(update={"status": "error", "success": False, "error": reason})

    async def _outcome(self, live: _Live) -> runner.ConsoleResult:
        """The runner's result; if it never reports one (its worker died), an `error`
        result saying so once the run's own timeout is well past."""
        started = utcnow()
        deadline = self._context.settings.run_timeout + WATCHDOG_GRACE_SECONDS
        try:
            return await asyncio.wait_for(asyncio.shield(live.handle.wait()), deadline)
        except TimeoutError:
            live.handle.cancel()
            finished = utcnow()
            log.error("run_watchdog_fired", extra={"run_id": live.run_id})
            return runner.ConsoleResult(
                run_id=live.run_id,
                action=live.action.name,
                toolbox_id=live.toolbox_id,
                status="error",
                success=False,
                message=f"{live.action.name} did not report an end",
                error=f"the runner reported no result {deadline} s after the start; the run "
                "was canceled and its outcome on the toolbox is unknown",
                started_at=started,
                finished_at=finished,
                duration_ms=int((finished - started).total_seconds() * 1000),
            )

    def _close(self, live: _Live, result: runner.ConsoleResult) -> None:
        with self._context.sessions.begin() as session:
            run = session.get(Run, live.run_id)
            if run is not None:
                run.status = result.status
                run.success = result.success
                run.message = result.message
                run.error = result.error
                run.result = result.model_dump(mode="json")
                run.finished_at = result.finished_at
            session.execute(
                update(Toolbox)
                .where(Toolbox.id == live.toolbox_id, Toolbox.active_run_id == live.run_id)
                .values(active_run_id=None)
            )
            entry = session.get(AuditEntry, live.audit_id)
            if entry is not None:
                entry.outcome = result.status
                entry.detail = result.error or result.message
            if live.action.tool_name and (result.success or _left_stopped(result)):
                _apply_tool_outcome(session, live.toolbox_id, live.action, result)

    # -- queries and control -----------------------------------------------------------------
    def is_live(self, run_id: str) -> bool:
        return run_id in self._live

    async def wait(self, run_id: str) -> runner.ConsoleResult:
        live = self._live.get(run_id)
        if live is None or live.task is None:
            raise NotFound(f"run '{run_id}' is not running in this process", code="run_not_live")
        # A client that disconnects must not cancel the run.
        return await asyncio.shield(live.task)

    def cancel(self, run_id: str) -> None:
        live = self._live.get(run_id)
        if live is None:
            raise Conflict(f"run '{run_id}' is not running", code="run_not_running")
        live.handle.cancel()

    async def events(self, run_id: str, after: int) -> AsyncIterator[dict[str, Any]]:
        """Events with seq > `after`: live from the runner while the run is in this process,
        otherwise from the database (polled while another process still runs it)."""
        while True:
            live = self._live.get(run_id)
            if live is not None:
                async for event in live.handle.events(after=after):
                    yield event.model_dump(mode="json")
                return
            stored, status = await run_in_threadpool(self._stored_events, run_id, after)
            for row in stored:
                yield row
                after = row["seq"]
            if status not in IN_FLIGHT:
                return
            await asyncio.sleep(0.5)

    def _stored_events(self, run_id: str, after: int) -> tuple[list[dict[str, Any]], str | None]:
        with self._context.sessions() as session:
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

    # -- lifecycle ---------------------------------------------------------------------------
    def recover_interrupted(self) -> list[str]:
        """At start-up: runs a previous process left in flight become `interrupted`, their
        leftover ansible processes are stopped and their toolboxes unlocked."""
        from runner.processes import stop_run_processes

        with self._context.sessions.begin() as session:
            runs = list(session.scalars(select(Run).where(Run.status.in_(IN_FLIGHT))))
            now = utcnow()
            for run in runs:
                survivors = stop_run_processes(run.id)
                run.status, run.success, run.finished_at = "interrupted", False, now
                run.error = INTERRUPTED_MESSAGE
                if survivors:
                    run.error += f"; processes that could not be stopped: {survivors}"
                run.message = "run interrupted by a restart of the console"
                for entry in session.scalars(select(AuditEntry).where(AuditEntry.run_id == run.id)):
                    entry.outcome, entry.detail = "interrupted", run.error
            ids = [run.id for run in runs]
            if ids:
                session.execute(
                    update(Toolbox).where(Toolbox.active_run_id.in_(ids)).values(active_run_id=None)
                )
        for run_id in ids:
            log.warning("run_interrupted", extra={"run_id": run_id})
        return ids

    async def shutdown(self, grace: float = 30.0) -> None:
        """Cancel what still runs and wait (bounded) until each result is stored."""
        tasks = [live.task for live in self._live.values() if live.task is not None]
        for live in list(self._live.values()):
            live.handle.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=grace)


def _left_stopped(result: runner.ConsoleResult) -> bool:
    """A deploy that did not verify and whose new container the role stopped on purpose (so
    that Docker stops restarting it): monitoring must not restart it either."""
    published = result.data.get("tool_result")
    return isinstance(published, dict) and published.get("left_stopped") is True


def _apply_tool_outcome(
    session: Session, toolbox_id: str, action: Action, result: runner.ConsoleResult
) -> None:
    """Reflect a verified tool action in the tool instance's row at once."""
    instance = session.scalar(
        select(ToolInstance).where(
            ToolInstance.toolbox_id == toolbox_id, ToolInstance.name == action.tool_name
        )
    )
    if instance is None:
        instance = ToolInstance(toolbox_id=toolbox_id, name=action.tool_name)
        session.add(instance)
    published = result.data.get("tool_result")
    after = published.get("state_after") if isinstance(published, dict) else None
    kind = action.name.removeprefix("tool.")
    instance.observed_at = result.finished_at
    if kind == "remove":
        instance.state, instance.removed_at = "removed", result.finished_at
        return
    instance.removed_at = None
    instance.stopped_on_purpose = kind == "stop" or _left_stopped(result)
    instance.state = str(after) if after else ("exited" if kind == "stop" else "running")
    if isinstance(published, dict):
        instance.image = published.get("image") or instance.image
        instance.container_id = published.get("container_id") or instance.container_id
