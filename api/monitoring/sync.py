"""Status sync: look at toolboxes concurrently and write what was found, batch by batch.

Observations are written as they arrive, in one transaction per batch (a batch closes when
it is full, or when nothing else arrived for a moment), so a droplet that answers slowly
delays nobody but itself. Writing a batch also judges the checks and opens or resolves
alerts, in the same transaction.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, defer, selectinload, sessionmaker

from api.db import session_scope
from api.models import Toolbox, utcnow
from api.monitoring import checks, maintenance
from api.monitoring.evaluate import apply_verdicts
from api.monitoring.events import AlertEvent
from api.monitoring.limits import Limits
from api.monitoring.metrics import ALERT_EVENTS, SYNC_DURATION, SYNC_TOOLBOXES
from api.monitoring.models import Alert, CheckState, MonitoringSettings
from api.monitoring.observe import Observation, Observer, Target
from api.monitoring.store import STATUS_BY_SOURCE, record_observation
from api.secret_box import SecretBox
from api.services.credentials import CredentialSource
from api.services.probe import SshTarget
from api.services.toolboxes import agent_pin
from api.settings import Settings

log = logging.getLogger("api.monitoring.sync")

# A batch is written when no further observation arrived for this long.
BATCH_IDLE_SECONDS = 0.25


@dataclass(frozen=True)
class ToolboxSync:
    """How the sync of one toolbox went."""

    toolbox_id: str
    name: str
    status: str  # up | down | unreachable | error
    source: str  # agent | ssh | none
    error: str | None
    observed_at: datetime
    duration_ms: int


@dataclass
class SyncReport:
    started_at: datetime
    finished_at: datetime | None = None
    duration_ms: int = 0
    toolboxes: list[ToolboxSync] = field(default_factory=list)
    events: list[AlertEvent] = field(default_factory=list)

    def summary(self) -> str:
        counts: dict[str, int] = defaultdict(int)
        for result in self.toolboxes:
            counts[result.status] += 1
        states = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no toolboxes"
        return f"{len(self.toolboxes)} toolbox(es) in {self.duration_ms} ms: {states}"


def load_targets(
    sessions: sessionmaker[Session],
    credentials: CredentialSource,
    secrets: SecretBox,
    toolbox_ids: Sequence[str] | None = None,
) -> list[Target]:
    """Every toolbox still listed by DigitalOcean (or only the given ones)."""
    query = select(Toolbox).where(Toolbox.removed_at.is_(None)).order_by(Toolbox.name)
    if toolbox_ids is not None:
        query = query.where(Toolbox.id.in_(list(toolbox_ids)))
    with session_scope(sessions) as session:
        toolboxes = list(session.scalars(query))
        session.expunge_all()
    return [_target(toolbox, credentials, secrets) for toolbox in toolboxes]


def _target(toolbox: Toolbox, credentials: CredentialSource, secrets: SecretBox) -> Target:
    def ssh() -> SshTarget:
        found = credentials.for_toolbox(toolbox)
        return SshTarget(
            name=toolbox.name,
            address=toolbox.address or "",
            private_key=found.private_key,
            known_hosts=found.known_hosts,
        )

    return Target(
        toolbox_id=toolbox.id,
        name=toolbox.name,
        address=toolbox.address,
        agent_token=secrets.unseal_from(toolbox, Toolbox.agent_token_ciphertext),
        agent_pin=agent_pin(toolbox),
        ssh=ssh,
    )


async def sync(
    observer: Observer,
    sessions: sessionmaker[Session],
    settings: Settings,
    targets: Sequence[Target],
) -> SyncReport:
    """Observe every target and write the results; never raises for one toolbox's failure."""
    report = SyncReport(started_at=utcnow())
    started = time.perf_counter()
    arrived: asyncio.Queue[Observation] = asyncio.Queue()

    async def look(target: Target) -> None:
        try:
            observation = await observer.observe(target)
        except Exception as error:  # every target must arrive, whatever happened
            log.exception("observe_failed", extra={"toolbox": target.name})
            observation = Observation.failed(target, f"unexpected {type(error).__name__}")
        arrived.put_nowait(observation)

    looks = [asyncio.create_task(look(target)) for target in targets]
    remaining = len(looks)
    batch: list[Observation] = []
    try:
        while remaining:
            idle = False
            try:
                async with asyncio.timeout(BATCH_IDLE_SECONDS):
                    batch.append(await arrived.get())
            except TimeoutError:
                idle = True
            while not arrived.empty():
                batch.append(arrived.get_nowait())
            remaining = len(targets) - len(report.toolboxes) - len(batch)
            if batch and (idle or not remaining or len(batch) >= settings.sync_batch_size):
                await _write(sessions, settings, batch, report)
                batch = []
    finally:
        for task in looks:
            task.cancel()
    report.finished_at = utcnow()
    report.duration_ms = round((time.perf_counter() - started) * 1000)
    SYNC_DURATION.observe(report.duration_ms / 1000)
    for result in report.toolboxes:
        SYNC_TOOLBOXES.labels(result.status).inc()
    for event in report.events:
        ALERT_EVENTS.labels(event.event, event.payload["alert"]["severity"]).inc()
    log.info(
        "sync_finished",
        extra={
            "toolboxes": len(report.toolboxes),
            "duration_ms": report.duration_ms,
            "summary": report.summary(),
        },
    )
    return report


async def _write(
    sessions: sessionmaker[Session],
    settings: Settings,
    observations: list[Observation],
    report: SyncReport,
) -> None:
    events, failures = await asyncio.to_thread(record_batch, sessions, settings, observations)
    report.events += events
    for observation in observations:
        failure = failures.get(observation.toolbox_id)
        report.toolboxes.append(
            ToolboxSync(
                toolbox_id=observation.toolbox_id,
                name=observation.name,
                status="error" if failure else STATUS_BY_SOURCE[observation.source],
                source=observation.source,
                error=failure or observation.error,
                observed_at=observation.observed_at,
                duration_ms=observation.duration_ms,
            )
        )


def record_batch(
    sessions: sessionmaker[Session], settings: Settings, observations: list[Observation]
) -> tuple[list[AlertEvent], dict[str, str]]:
    """Write a batch in one transaction. Should that fail, each toolbox is written on its
    own, so that one bad toolbox is recorded with its reason and the others still land."""
    try:
        with session_scope(sessions) as session:
            return _record(session, settings, observations), {}
    except Exception:
        log.exception("sync_batch_failed", extra={"toolboxes": len(observations)})
    events: list[AlertEvent] = []
    failures: dict[str, str] = {}
    for observation in observations:
        try:
            with session_scope(sessions) as session:
                events += _record(session, settings, [observation])
        except Exception as error:
            reason = f"the sync could not be stored: {type(error).__name__}: {error}"
            failures[observation.toolbox_id] = reason
            log.exception("sync_store_failed", extra={"toolbox": observation.name})
            _record_failure(sessions, observation.toolbox_id, reason)
    return events, failures


def _record_failure(sessions: sessionmaker[Session], toolbox_id: str, reason: str) -> None:
    try:
        with session_scope(sessions) as session:
            toolbox = session.get(Toolbox, toolbox_id)
            if toolbox is not None:
                toolbox.last_error = reason[:2000]
    except Exception:
        log.exception("sync_failure_not_recorded", extra={"toolbox_id": toolbox_id})


def _record(
    session: Session, settings: Settings, observations: list[Observation]
) -> list[AlertEvent]:
    ids = [o.toolbox_id for o in observations]
    toolboxes = {
        t.id: t
        for t in session.scalars(
            select(Toolbox)
            .where(Toolbox.id.in_(ids))
            .options(selectinload(Toolbox.tool_instances), defer(Toolbox.last_state))
        )
    }
    states: dict[str, dict[str, CheckState]] = defaultdict(dict)
    for state in session.scalars(select(CheckState).where(CheckState.toolbox_id.in_(ids))):
        states[state.toolbox_id][state.check] = state
    open_alerts: dict[str, dict[str, Alert]] = defaultdict(dict)
    for alert in session.scalars(
        select(Alert).where(Alert.toolbox_id.in_(ids), Alert.state == "open")
    ):
        open_alerts[alert.toolbox_id][alert.check] = alert
    overrides = {
        m.toolbox_id: m
        for m in session.scalars(
            select(MonitoringSettings).where(MonitoringSettings.toolbox_id.in_(ids))
        )
    }
    silenced = maintenance.active_by_toolbox(session, ids)
    events: list[AlertEvent] = []
    for observation in observations:
        toolbox = toolboxes.get(observation.toolbox_id)
        if toolbox is None or toolbox.removed_at is not None:
            continue  # deleted or gone from DigitalOcean while it was being looked at
        record_observation(session, toolbox, observation)
        limits = Limits.effective(settings, overrides.get(toolbox.id))
        own_states = states[toolbox.id]
        memories = {check: state.memory for check, state in own_states.items()}
        verdicts = checks.evaluate(observation, toolbox.tool_instances, limits, memories)
        events += apply_verdicts(
            session,
            toolbox,
            verdicts,
            own_states,
            open_alerts[toolbox.id],
            observation.observed_at,
            silenced=toolbox.id in silenced,
        )
    return events
