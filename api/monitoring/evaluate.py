"""Turn verdicts into check states and alerts.

A check fails once its verdict was failing `trip_after` times in a row; then exactly one
alert is open for it, until a verdict says the condition is fine again. Every opened and
resolved alert becomes an `AlertEvent` for the webhooks. A toolbox in maintenance
(`silenced`) has its checks judged and recorded as always, but no alert opens for it; a
condition still failing when the window ends opens its alert at the next look. The caller
owns the transaction.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy.orm import Session

from api.models import Toolbox, new_id
from api.monitoring.checks import Verdict, recovery_action, tool_of
from api.monitoring.events import AlertEvent, alert_event
from api.monitoring.models import Alert, CheckState


def apply_verdicts(
    session: Session,
    toolbox: Toolbox,
    verdicts: Iterable[Verdict],
    states: dict[str, CheckState],
    open_alerts: dict[str, Alert],
    now: datetime,
    *,
    silenced: bool = False,
) -> list[AlertEvent]:
    """Update `states` and `open_alerts` (both keyed by check) in place."""
    events: list[AlertEvent] = []
    judged = set()
    for verdict in verdicts:
        judged.add(verdict.check)
        state = states.get(verdict.check)
        if state is None:
            state = CheckState(
                toolbox_id=toolbox.id,
                check=verdict.check,
                state="unknown",
                consecutive_failures=0,
                memory={},
                since=now,
            )
            session.add(state)
            states[verdict.check] = state
        _update(state, verdict, now)
        alert = open_alerts.get(verdict.check)
        if state.state == "failing" and alert is None and silenced:
            continue  # in maintenance: observed and recorded, not alerted
        if state.state == "failing" and alert is None:
            alert = _open(toolbox, verdict, now)
            session.add(alert)
            open_alerts[verdict.check] = alert
            events.append(alert_event(alert, toolbox.name, "opened"))
        elif state.state == "failing" and alert is not None:
            _set(alert, message=verdict.message, value=verdict.value, threshold=verdict.threshold)
        elif state.state == "ok" and alert is not None:
            resolve(alert, f"resolved: {verdict.message}", now)
            del open_alerts[verdict.check]
            events.append(alert_event(alert, toolbox.name, "resolved"))
    events += _forget_vanished_tools(session, toolbox, states, open_alerts, judged, now)
    return events


def _update(state: CheckState, verdict: Verdict, now: datetime) -> None:
    if verdict.failing is None:
        new_state, failures = "unknown", state.consecutive_failures
    elif verdict.failing:
        failures = state.consecutive_failures + 1
        new_state = "failing" if failures >= verdict.trip_after else "pending"
    else:
        new_state, failures = "ok", 0
    if new_state != state.state:
        state.since = now
    _set(
        state,
        state=new_state,
        consecutive_failures=failures,
        value=verdict.value,
        threshold=verdict.threshold,
        message=verdict.message,
    )
    if verdict.memory and verdict.memory != state.memory:
        state.memory = verdict.memory


def _set(row: object, **values: object) -> None:
    """Assign only what changed, so that an unchanged row costs no UPDATE."""
    for column, value in values.items():
        if getattr(row, column) != value:
            setattr(row, column, value)


def _open(toolbox: Toolbox, verdict: Verdict, now: datetime) -> Alert:
    return Alert(
        id=new_id(),
        toolbox_id=toolbox.id,
        check=verdict.check,
        severity=verdict.severity,
        state="open",
        message=verdict.message,
        value=verdict.value,
        threshold=verdict.threshold,
        recovery="waiting" if recovery_action(verdict.check) else "none",
        recovery_attempts=0,
        opened_at=now,
        updated_at=now,
        notified_at=now,
    )


def resolve(alert: Alert, message: str, now: datetime) -> None:
    alert.state = "resolved"
    alert.message = message
    alert.resolved_at = now
    if alert.recovery in ("waiting", "running"):
        alert.recovery = "succeeded" if alert.recovery_attempts else "none"


def _forget_vanished_tools(
    session: Session,
    toolbox: Toolbox,
    states: dict[str, CheckState],
    open_alerts: dict[str, Alert],
    judged: set[str],
    now: datetime,
) -> list[AlertEvent]:
    """Checks of a tool instance that is no longer on the toolbox end with it."""
    present = {i.name for i in toolbox.tool_instances if i.removed_at is None}
    events = []
    for check in list(states):
        tool = tool_of(check)
        if tool is None or check in judged or tool in present:
            continue
        session.delete(states.pop(check))
        alert = open_alerts.pop(check, None)
        if alert is not None:
            resolve(alert, f"resolved: tool instance {tool} is no longer on the toolbox", now)
            events.append(alert_event(alert, toolbox.name, "resolved"))
    return events
