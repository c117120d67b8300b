"""Checks, check states and alerts without the sandbox: consecutive failures, one alert per
condition on both database engines, resolution, the restart-loop memory, and the webhooks
(retries with backoff, failures recorded, never blocking) against a local receiver."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from api import migrate
from api.context import Context
from api.db import make_engine, make_session_factory, session_scope
from api.models import Toolbox, ToolInstance, utcnow
from api.monitoring import checks
from api.monitoring.evaluate import apply_verdicts
from api.monitoring.events import alert_event
from api.monitoring.limits import Limits
from api.monitoring.looks import Observation
from api.monitoring.models import Alert, AlertNotification, CheckState
from api.monitoring.webhooks import WebhookDispatcher
from api.settings import Settings
from tests.monitoring.conftest import WebhookReceiver, add_toolbox

LIMITS = Limits.effective(Settings(), None)


def observation(source: str = "agent", **answers: Any) -> Observation:
    return Observation(
        toolbox_id="t", name="toolbox-9", observed_at=utcnow(), source=source,  # type: ignore[arg-type]
        status=answers.get("status", {"version": "1.0.0"} if source == "agent" else None),
        system=answers.get("system"), containers=answers.get("containers"),
        agent_error=None if source == "agent" else "connection refused",
        ssh_error="timed out" if source == "none" else None, duration_ms=5,
    )  # fmt: skip


def judge(context: Context, toolbox_id: str, obs: Observation) -> list[str]:
    """One cycle's evaluation for one toolbox; returns the alert events."""
    with session_scope(context.sessions) as session:
        toolbox = session.get(Toolbox, toolbox_id)
        assert toolbox is not None
        states = {
            s.check: s
            for s in session.scalars(select(CheckState).where(CheckState.toolbox_id == toolbox_id))
        }
        open_alerts = {
            a.check: a
            for a in session.scalars(
                select(Alert).where(Alert.toolbox_id == toolbox_id, Alert.state == "open")
            )
        }
        memories = {c: s.memory for c, s in states.items()}
        verdicts = checks.evaluate(obs, toolbox.tool_instances, LIMITS, memories)
        events = apply_verdicts(session, toolbox, verdicts, states, open_alerts, obs.observed_at)
        return [f"{e.event}:{e.payload['alert']['check']}" for e in events]


def test_agent_down_alerts_after_n_consecutive_failures_once_and_resolves(
    sqlite_context: Context,
) -> None:
    toolbox_id = add_toolbox(sqlite_context.sessions, "toolbox-9")
    assert LIMITS.agent_down_checks == 2
    assert judge(sqlite_context, toolbox_id, observation()) == []
    assert judge(sqlite_context, toolbox_id, observation("ssh")) == []  # 1 of 2: pending
    assert judge(sqlite_context, toolbox_id, observation("ssh")) == ["opened:agent"]
    assert judge(sqlite_context, toolbox_id, observation("ssh")) == []  # deduplicated
    # Unreachable: nothing can be said about the agent; the open alert stays open.
    assert judge(sqlite_context, toolbox_id, observation("none")) == []
    assert judge(sqlite_context, toolbox_id, observation("none")) == ["opened:droplet_reachable"]
    assert sorted(judge(sqlite_context, toolbox_id, observation())) == [
        "resolved:agent",
        "resolved:droplet_reachable",
    ]
    with session_scope(sqlite_context.sessions) as session:
        alerts = list(session.scalars(select(Alert).order_by(Alert.opened_at)))
        assert [(a.check, a.state) for a in alerts] == [
            ("agent", "resolved"),
            ("droplet_reachable", "resolved"),
        ]
        assert alerts[0].resolved_at is not None and alerts[0].recovery == "none"


def test_threshold_check_reports_value_and_threshold_and_needs_n_readings(
    sqlite_context: Context,
) -> None:
    toolbox_id = add_toolbox(sqlite_context.sessions, "toolbox-9")
    hot = {"cpu": {"percent": 97.5}, "memory": {"percent": 10.0}, "disk": {"percent": 10.0}}
    for _ in range(LIMITS.threshold_checks - 1):
        assert judge(sqlite_context, toolbox_id, observation(system=hot)) == []
    assert judge(sqlite_context, toolbox_id, observation(system=hot)) == ["opened:cpu"]
    with session_scope(sqlite_context.sessions) as session:
        alert = session.scalars(select(Alert)).one()
        assert (alert.value, alert.threshold, alert.severity) == (97.5, 90.0, "warning")
        assert "above the 90% threshold" in alert.message


def test_exited_tool_alerts_unless_it_was_stopped_through_the_console(
    sqlite_context: Context,
) -> None:
    toolbox_id = add_toolbox(sqlite_context.sessions, "toolbox-9")
    with session_scope(sqlite_context.sessions) as session:
        session.add_all([
            ToolInstance(toolbox_id=toolbox_id, name="crashed", state="exited"),
            ToolInstance(toolbox_id=toolbox_id, name="parked", state="exited",
                         stopped_on_purpose=True),
        ])  # fmt: skip
    # Only the checks are judged here (the rows are not reconciled with the observation).
    events = judge(sqlite_context, toolbox_id, observation(containers=[]))
    assert events == ["opened:tool_exited:crashed"]
    with session_scope(sqlite_context.sessions) as session:
        alert = session.scalars(select(Alert)).one()
        assert alert.recovery == "waiting"  # tool exits are repaired automatically
        parked = session.scalars(
            select(CheckState).where(CheckState.check == "tool_exited:parked")
        ).one()
        assert parked.state == "ok" and "stopped through the console" in (parked.message or "")


@pytest.mark.parametrize("restart_counts", [[0, 1, 2, 3], [5, 6, 7, 8]])
def test_restart_loop_trips_when_docker_restarts_a_tool_n_times_in_the_window(
    restart_counts: list[int],
) -> None:
    memory: dict[str, Any] = {}
    instance = ToolInstance(name="loopy", state="running", restart_count=0)
    now = utcnow()
    verdicts = []
    for step, count in enumerate(restart_counts):
        instance.restart_count = count
        verdict = checks._restart_loop(instance, LIMITS, memory, now + timedelta(seconds=step))
        memory = verdict.memory
        verdicts.append(verdict.failing)
    assert verdicts == [False, False, False, True]
    # Long after, with no new restart: the window holds no climb any more.
    later = now + timedelta(seconds=LIMITS.recovery_window_seconds + 60)
    assert checks._restart_loop(instance, LIMITS, memory, later).failing is False
    # A recreated container starts counting again.
    instance.restart_count = 0
    assert checks._restart_loop(instance, LIMITS, memory, later).failing is False


def test_only_one_open_alert_per_condition_on_both_engines(engine_url: str) -> None:
    engine = make_engine(Settings(database_url=engine_url))
    migrate.upgrade(engine)
    sessions = make_session_factory(engine)
    toolbox_id = add_toolbox(sessions, "toolbox-9")

    def alert(state: str) -> Alert:
        return Alert(toolbox_id=toolbox_id, check="agent", severity="critical", state=state,
                     message="down", recovery="none", recovery_attempts=0)  # fmt: skip

    with session_scope(sessions) as session:
        session.add_all([alert("resolved"), alert("resolved"), alert("open")])
    with pytest.raises(IntegrityError), session_scope(sessions) as session:
        session.add(alert("open"))
    engine.dispose()


# -- webhooks --------------------------------------------------------------------------------
def open_alert(context: Context) -> Alert:
    toolbox_id = add_toolbox(context.sessions, "toolbox-9")
    with session_scope(context.sessions) as session:
        alert = Alert(
            toolbox_id=toolbox_id, check="agent", severity="critical", state="open",
            message="the DTMA agent on toolbox-9 does not answer", recovery="none",
            recovery_attempts=0, opened_at=utcnow(),
        )  # fmt: skip
        session.add(alert)
    return alert


def test_webhooks_retry_with_backoff_record_every_delivery_and_never_block(
    sqlite_context: Context, webhook_receiver: WebhookReceiver
) -> None:
    alert = open_alert(sqlite_context)
    paths = ["/ok", "/flaky", "/down", "/slow"]
    settings = Settings(
        database_url="sqlite://",
        alert_webhooks=[f"{webhook_receiver.url}{p}?secret=s3cr3t" for p in paths],
        webhook_attempts=4,
        webhook_backoff_seconds=0.1,
        webhook_timeout=0.5,
    )
    opened = alert_event(alert, "toolbox-9", "opened")
    alert.state = "resolved"
    resolved = alert_event(alert, "toolbox-9", "resolved")

    async def scenario() -> tuple[float, float]:
        dispatcher = WebhookDispatcher(sqlite_context.sessions, settings)
        started = time.perf_counter()
        dispatcher.publish([opened, resolved])
        publish_took = time.perf_counter() - started
        await dispatcher.drain(30)
        drained_after = time.perf_counter() - started
        await dispatcher.aclose()
        return publish_took, drained_after

    publish_took, drained_after = asyncio.run(scenario())
    assert publish_took < 0.05  # publishing waits for no webhook
    # The slow webhook (30 s) was given up on after its attempts, not waited for.
    assert drained_after < 10
    assert webhook_receiver.events_for(alert.id, "/ok") == ["opened", "resolved"]
    # 500 twice per event, then delivered; "resolved" only after "opened" got through.
    assert webhook_receiver.events_for(alert.id, "/flaky") == ["opened"] * 3 + ["resolved"] * 3
    assert webhook_receiver.events_for(alert.id, "/down") == ["opened"] * 4 + ["resolved"] * 4
    body = webhook_receiver.bodies("/ok")[-2]
    assert body["text"] == (
        "[ALERT] critical on toolbox-9 (agent): the DTMA agent on toolbox-9 does not answer"
    )
    with session_scope(sqlite_context.sessions) as session:
        rows = sorted(
            (n.event, n.status, n.attempts, n.last_error or "", n.target)
            for n in session.scalars(select(AlertNotification))
        )
    # The path and its secret are never stored; targets that look alike are numbered
    # (the label is what says a target already got an event).
    base = webhook_receiver.url
    ok, flaky, down, slow = base, f"{base} #2", f"{base} #3", f"{base} #4"
    refused, hung = f"{down} answered 500", f"{slow} did not answer: ReadTimeout"
    assert rows == sorted(
        (event, status, attempts, error, target)
        for event in ("opened", "resolved")
        for status, attempts, error, target in (
            ("delivered", 1, "", ok), ("delivered", 3, "", flaky), ("failed", 4, refused, down),
            ("failed", 4, hung, slow),
        )
    )  # fmt: skip


def test_agent_refusing_the_token_alerts_on_the_token_not_on_the_agent(
    sqlite_context: Context,
) -> None:
    toolbox_id = add_toolbox(sqlite_context.sessions, "toolbox-9")
    refused = Observation(
        toolbox_id=toolbox_id, name="toolbox-9", observed_at=utcnow(), source="ssh",
        status=None, system=None, containers=None,
        agent_error="agent answered 401 on /status: the bearer token is not valid",
        ssh_error=None, duration_ms=5, agent_refused=True,
    )  # fmt: skip
    assert judge(sqlite_context, toolbox_id, refused) == ["opened:agent_token"]
    assert judge(sqlite_context, toolbox_id, refused) == []  # restarting would not help
    with session_scope(sqlite_context.sessions) as session:
        alert = session.scalars(select(Alert)).one()
        assert alert.recovery == "none"
        assert f"/api/v1/toolboxes/{toolbox_id}/dtma/install" in alert.message
    assert judge(sqlite_context, toolbox_id, observation()) == ["resolved:agent_token"]
