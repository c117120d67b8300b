"""Automatic recovery: repair what can safely be repaired, as normal audited runs.

Agent down -> `dtma_restart.yml`; tool exited and nobody stopped it -> `tool_restart.yml`.
At most N attempts per condition within a window, each later than the last by an
exponentially growing backoff; then the alert says recovery gave up and no more attempts
are made for it. Recovery can be switched off per toolbox, and none runs on a toolbox in
maintenance. A tool stopped through the console never gets here: its check is fine
(`stopped_on_purpose`).

A repair succeeded only when its run did: the run's ConsoleResult is verified (for a tool, the
role's restart fails unless the tool keeps running through its settle window), so a tool that
crashes again right after the restart is a failed attempt, and the limit ends in give-up.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from api.context import Context
from api.db import session_scope
from api.errors import ApiError, ToolboxBusy
from api.models import Run, Toolbox, utcnow
from api.monitoring import maintenance
from api.monitoring.checks import AGENT, TOOL_EXITED, recovery_action, tool_of
from api.monitoring.events import AlertEvent, alert_event
from api.monitoring.limits import Limits
from api.monitoring.metrics import ALERT_EVENTS, RECOVERY_RUNS
from api.monitoring.models import Alert, MonitoringSettings, RecoveryAttempt
from api.services import actions
from api.services.actions import Action
from api.services.runs import IN_FLIGHT, Target

log = logging.getLogger("api.monitoring.recovery")


@dataclass(frozen=True)
class Plan:
    """A repair decided in the database, to be started as a run."""

    alert_id: str
    attempt_id: int
    target: Target
    action: Action


class Recovery:
    def __init__(self, context: Context, publish: Callable[[list[AlertEvent]], None]) -> None:
        self._context = context
        self._publish = publish
        self._running: dict[str, asyncio.Task[None]] = {}  # by alert id

    async def consider(self, toolbox_ids: Collection[str] | None = None) -> list[str]:
        """Start the repairs that are due; returns the ids of the runs started."""
        busy = set(self._running)
        plans, events = await asyncio.to_thread(self._plan, toolbox_ids, busy)
        for event in events:
            ALERT_EVENTS.labels(event.event, event.payload["alert"]["severity"]).inc()
        self._publish(events)
        started = []
        for plan in plans:
            run_id = await self._launch(plan)
            if run_id is not None:
                started.append(run_id)
        return started

    async def wait(self, timeout: float | None = None) -> None:
        """Until every repair started so far has ended (tests, shutdown)."""
        if self._running:
            await asyncio.wait(set(self._running.values()), timeout=timeout)

    def settle_orphans(self) -> None:
        """At start-up: attempts a previous process left unfinished take their run's end
        (or `interrupted` when the run never got stored)."""
        with session_scope(self._context.sessions) as session:
            for attempt in session.scalars(
                select(RecoveryAttempt).where(RecoveryAttempt.status.in_(("starting", "running")))
            ):
                run = session.get(Run, attempt.run_id) if attempt.run_id else None
                if run is not None and run.status in IN_FLIGHT:
                    continue
                attempt.status = run.status if run is not None else "interrupted"
                attempt.finished_at = (run.finished_at if run else None) or utcnow()
                alert = session.get(Alert, attempt.alert_id)
                if alert is not None and alert.state == "open" and alert.recovery == "running":
                    verified = run is not None and bool(run.success)
                    alert.recovery = "succeeded" if verified else "failed"

    # -- deciding, in one transaction ---------------------------------------------------------
    def _plan(
        self, toolbox_ids: Collection[str] | None, busy: set[str]
    ) -> tuple[list[Plan], list[AlertEvent]]:
        plans: list[Plan] = []
        events: list[AlertEvent] = []
        now = utcnow()
        with session_scope(self._context.sessions) as session:
            query = select(Alert).where(
                Alert.state == "open",
                or_(Alert.check == AGENT, Alert.check.startswith(TOOL_EXITED)),
            )
            if toolbox_ids is not None:
                query = query.where(Alert.toolbox_id.in_(list(toolbox_ids)))
            found = list(session.scalars(query.order_by(Alert.opened_at)))
            silenced = maintenance.active_by_toolbox(session, {a.toolbox_id for a in found}, now)
            for alert in found:
                if alert.id in busy or alert.recovery == "gave_up":
                    continue
                toolbox = session.get(Toolbox, alert.toolbox_id)
                if toolbox is None or toolbox.removed_at is not None:
                    continue
                if toolbox.id in silenced:
                    alert.recovery = "waiting"  # no repair during a maintenance window
                    continue
                limits = Limits.effective(
                    self._context.settings, session.get(MonitoringSettings, toolbox.id)
                )
                decision, why = self._decide(session, alert, toolbox, limits, now)
                if decision == "gave_up":
                    events.append(alert_event(alert, toolbox.name, "gave_up", why))
                elif decision == "start":
                    plans.append(self._prepare(session, alert, toolbox, now))
        return plans, events

    def _decide(
        self, session: Session, alert: Alert, toolbox: Toolbox, limits: Limits, now: datetime
    ) -> tuple[str, str]:
        """What to do about the alert now: (off | gave_up | waiting | start, why)."""
        if not limits.recovery_enabled:
            alert.recovery = "off"
            return "off", "recovery is switched off for the toolbox"
        window_start = now - timedelta(seconds=limits.recovery_window_seconds)
        attempts = list(
            session.scalars(
                select(RecoveryAttempt).where(
                    RecoveryAttempt.toolbox_id == toolbox.id,
                    RecoveryAttempt.check == alert.check,
                    RecoveryAttempt.started_at >= window_start,
                )
            )
        )
        if len(attempts) >= limits.recovery_max_attempts:
            alert.recovery = "gave_up"
            log.warning("recovery_gave_up", extra={"alert_id": alert.id, "check": alert.check})
            minutes = limits.recovery_window_seconds / 60
            return "gave_up", f"gave up after {len(attempts)} attempt(s) in {minutes:g} min"
        if attempts:
            last = max(a.finished_at or a.started_at for a in attempts)
            backoff = limits.recovery_backoff_seconds * 2 ** (len(attempts) - 1)
            if now < last + timedelta(seconds=backoff):
                alert.recovery = "waiting"
                return "waiting", f"backing off {backoff:g} s after attempt {len(attempts)}"
        if toolbox.status not in (("down",) if alert.check == AGENT else ("up", "down", "refused")):
            # Every repair goes over SSH: the droplet must answer (and, for the agent, the
            # agent must still be down). Until then, no attempt is spent.
            alert.recovery = "waiting"
            return "waiting", f"the toolbox is {toolbox.status}"
        if toolbox.active_run_id is not None:
            alert.recovery = "waiting"  # an operator's run goes first; try next cycle
            return "waiting", f"the toolbox is busy with run {toolbox.active_run_id}"
        return "start", ""

    def _prepare(self, session: Session, alert: Alert, toolbox: Toolbox, now: datetime) -> Plan:
        action_name = recovery_action(alert.check)
        if action_name == "dtma.restart":
            token = self._context.secrets.unseal_from(toolbox, Toolbox.agent_token_ciphertext)
            action = actions.dtma_action("restart", self._context.settings, token)
        else:
            action = actions.tool_action("restart", str(tool_of(alert.check)))
        attempt = RecoveryAttempt(
            alert_id=alert.id,
            toolbox_id=toolbox.id,
            check=alert.check,
            action=action.name,
            status="starting",
            started_at=now,
        )
        session.add(attempt)
        alert.recovery = "running"
        alert.recovery_attempts += 1
        session.flush()
        target = Target(toolbox.id, toolbox.name, self._context.credentials.for_toolbox(toolbox))
        return Plan(alert.id, attempt.id, target, action)

    # -- running -----------------------------------------------------------------------------
    async def _launch(self, plan: Plan) -> str | None:
        try:
            run_id = await self._context.runs.start(plan.target, plan.action, None)
        except ToolboxBusy as busy:
            # Someone else's run took the toolbox meanwhile: not an attempt.
            await asyncio.to_thread(self._withdraw, plan, busy.message)
            return None
        except ApiError as error:
            await asyncio.to_thread(self._finish, plan, None, "error", False, error.message)
            return None
        await asyncio.to_thread(self._started, plan, run_id)
        task = asyncio.create_task(self._follow(plan, run_id), name=f"recovery-{run_id}")
        self._running[plan.alert_id] = task
        task.add_done_callback(lambda _: self._running.pop(plan.alert_id, None))
        log.info(
            "recovery_started",
            extra={"alert_id": plan.alert_id, "run_id": run_id, "action": plan.action.name},
        )
        return run_id

    async def _follow(self, plan: Plan, run_id: str) -> None:
        try:
            result = await self._context.runs.wait(run_id)
            status, verified = result.status, result.success
            detail = result.error or result.message
        except Exception as error:  # the run's own record says more; keep the attempt honest
            status, verified, detail = "error", False, f"{type(error).__name__}: {error}"
        await asyncio.to_thread(self._finish, plan, run_id, status, verified, detail)

    def _started(self, plan: Plan, run_id: str) -> None:
        with session_scope(self._context.sessions) as session:
            attempt = session.get(RecoveryAttempt, plan.attempt_id)
            if attempt is not None:
                attempt.run_id, attempt.status = run_id, "running"

    def _withdraw(self, plan: Plan, reason: str) -> None:
        with session_scope(self._context.sessions) as session:
            attempt = session.get(RecoveryAttempt, plan.attempt_id)
            if attempt is not None:
                session.delete(attempt)
            alert = session.get(Alert, plan.alert_id)
            if alert is not None and alert.state == "open":
                alert.recovery = "waiting"
                alert.recovery_attempts = max(0, alert.recovery_attempts - 1)
        log.info("recovery_postponed", extra={"alert_id": plan.alert_id, "reason": reason})

    def _finish(
        self, plan: Plan, run_id: str | None, status: str, verified: bool, detail: str | None
    ) -> None:
        """Record the attempt's end; the repair succeeded only when its verified run did."""
        RECOVERY_RUNS.labels(plan.action.name, status).inc()
        with session_scope(self._context.sessions) as session:
            attempt = session.get(RecoveryAttempt, plan.attempt_id)
            if attempt is not None:
                attempt.run_id = run_id
                attempt.status = status
                attempt.detail = (detail or "")[:4000] or None
                attempt.finished_at = utcnow()
            alert = session.get(Alert, plan.alert_id)
            if alert is not None and alert.state == "open" and alert.recovery == "running":
                alert.recovery = "succeeded" if verified and status == "successful" else "failed"
        log.info(
            "recovery_finished",
            extra={"alert_id": plan.alert_id, "run_id": run_id, "status": status},
        )
