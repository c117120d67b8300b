"""Notifications through Apprise without the sandbox: real deliveries over HTTP to a local
receiver on loopback (Apprise's `json://` scheme), routed by severity, one message per
alert and state change, a reminder when an alert stays open, a resolved message, URLs
never logged or shown in clear; and the test message from the API and the CLI."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from api.app import create_app
from api.context import Context
from api.db import session_scope
from api.models import Toolbox, User, utcnow
from api.monitoring import maintenance, reminders, reports
from api.monitoring.events import alert_event
from api.monitoring.models import Alert, AlertNotification
from api.monitoring.notify import NotifyConfigError, parse_entry
from api.monitoring.observe import Observation
from api.monitoring.sync import record_batch
from api.monitoring.webhooks import WebhookDispatcher
from api.services import users
from api.settings import Settings
from tests.api.server import live_server
from tests.monitoring.conftest import WebhookReceiver, add_toolbox

SECRET = "s3cr3t-pw"
CLI = Path(sys.executable).parent / "dtma-console"


def apprise_urls(receiver: WebhookReceiver) -> list[str]:
    """Three routes on the local receiver: every severity, critical only, warning only."""
    base = f"user:{SECRET}@{receiver.url.removeprefix('http://')}"
    return [
        f"json://{base}/all",
        f"critical=json://{base}/critical",
        f"warning = json://{base}/warning",
    ]


def titles(receiver: WebhookReceiver, path: str) -> list[str]:
    return [str(b.get("title")) for b in receiver.bodies(path)]


def look(toolbox_id: str, source: str, cpu: float = 10.0) -> Observation:
    system = {"cpu": {"percent": cpu}, "memory": {"percent": 10.0}, "disk": {"percent": 10.0}}
    return Observation(
        toolbox_id=toolbox_id, name="toolbox-9", observed_at=utcnow(), source=source,  # type: ignore[arg-type]
        status={"version": "1.0.0"} if source == "agent" else None,
        system=system if source != "none" else None, containers=[] if source != "none" else None,
        agent_error=None if source == "agent" else "connection refused",
        ssh_error=None, duration_ms=5,
    )  # fmt: skip


def test_routes_parse_severities_and_refuse_what_apprise_does_not_know() -> None:
    assert parse_entry("json://h/x", 1).severities == {"critical", "warning"}
    assert parse_entry("critical,warning=ntfy://h/topic", 1).severities == {"critical", "warning"}
    assert parse_entry("critical=mailto://u:pw@example.com", 1).label == (
        "mailto://u:****@example.com"
    )
    with pytest.raises(NotifyConfigError, match="unknown severity info"):
        parse_entry("info=json://h/x", 2)
    with pytest.raises(NotifyConfigError, match="entry 3: not a URL Apprise knows") as refused:
        parse_entry(f"nosuch://{SECRET}@h", 3)
    assert SECRET not in str(refused.value)
    # The environment: a JSON list, or entries separated by whitespace.
    env = {"DTMA_NOTIFY_URLS": "critical=json://a/x\n json://b/y"}
    os.environ.update(env)
    try:
        assert [u.get_secret_value() for u in Settings().notify_urls] == [
            "critical=json://a/x",
            "json://b/y",
        ]
    finally:
        del os.environ["DTMA_NOTIFY_URLS"]


def test_apprise_gets_one_message_per_state_change_a_reminder_and_the_resolution(
    sqlite_context: Context, webhook_receiver: WebhookReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    settings = Settings(
        database_url="sqlite://",
        notify_urls=apprise_urls(webhook_receiver),
        notify_repeat=600,
        webhook_backoff_seconds=0.05,
    )
    sessions = sqlite_context.sessions
    toolbox_id = add_toolbox(sessions, "toolbox-9")

    async def scenario() -> None:
        dispatcher = WebhookDispatcher(sessions, settings)

        async def cycle(observation: Observation) -> list[str]:
            events, _ = record_batch(sessions, settings, [observation])
            dispatcher.publish(events)
            await dispatcher.drain(20)
            return [e.event for e in events]

        # The agent is down (critical after 2 looks); looks after that change nothing.
        assert await cycle(look(toolbox_id, "ssh")) == []
        assert await cycle(look(toolbox_id, "ssh")) == ["opened"]
        for _ in range(3):
            assert await cycle(look(toolbox_id, "ssh")) == []
        with session_scope(sessions) as session:
            alert = session.scalars(select(Alert)).one()
            again = alert_event(alert, "toolbox-9", "opened")
        # The same event published again (another process, a replay) is not sent twice.
        dispatcher.publish([again])
        await dispatcher.drain(20)

        # Not due before DTMA_NOTIFY_REPEAT; due once after it.
        assert reminders.due(sessions, settings.notify_repeat, [toolbox_id]) == []
        later = utcnow() + timedelta(seconds=601)
        due = reminders.due(sessions, settings.notify_repeat, [toolbox_id], now=later)
        assert [e.event for e in due] == ["reminder"]
        assert reminders.due(sessions, settings.notify_repeat, [toolbox_id], now=later) == []
        dispatcher.publish(due)
        await dispatcher.drain(20)

        # A warning goes to the warning route and to the route for every severity.
        for _ in range(3):
            events = await cycle(look(toolbox_id, "ssh", cpu=99.0))
        assert events == ["opened"]
        # Back to normal: both resolve, each with its one message.
        assert sorted(await cycle(look(toolbox_id, "agent"))) == ["resolved", "resolved"]
        await dispatcher.aclose()

    asyncio.run(scenario())
    agent = "critical on toolbox-9 (agent)"
    cpu = "warning on toolbox-9 (cpu)"
    assert titles(webhook_receiver, "/critical") == [
        f"[ALERT] {agent}", f"[STILL OPEN] {agent}", f"[RESOLVED] {agent}",
    ]  # fmt: skip
    assert titles(webhook_receiver, "/warning") == [f"[ALERT] {cpu}", f"[RESOLVED] {cpu}"]
    assert sorted(titles(webhook_receiver, "/all")) == sorted(
        titles(webhook_receiver, "/critical") + titles(webhook_receiver, "/warning")
    )
    [reminder] = [b for b in webhook_receiver.bodies("/critical") if "STILL" in b["title"]]
    assert reminder["type"] == "failure" and "open for 10 min" in reminder["message"]
    resolved = webhook_receiver.bodies("/warning")[-1]
    assert resolved["type"] == "success" and resolved["message"].startswith("[RESOLVED]")

    with session_scope(sessions) as session:
        rows = list(session.scalars(select(AlertNotification)))
    assert len(rows) == 3 + 2 + 5  # critical, warning, all
    assert all(r.status == "delivered" and r.attempts == 1 for r in rows)
    assert all(r.target.startswith("json://user:****@127.0.0.1:") for r in rows)
    # The URLs' secrets are in no log line (Apprise and httpx log URLs when let).
    assert caplog.records and SECRET not in caplog.text


def test_acknowledged_alerts_and_toolboxes_in_maintenance_get_no_reminder(
    sqlite_context: Context,
) -> None:
    sessions = sqlite_context.sessions
    toolbox_id = add_toolbox(sessions, "toolbox-9")
    settings = Settings(database_url="sqlite://")
    for _ in range(2):
        record_batch(sessions, settings, [look(toolbox_id, "ssh")])
    later = utcnow() + timedelta(hours=5)
    with session_scope(sessions) as session:
        admin = User(name="ops", is_admin=True)
        session.add(admin)
        toolbox = session.get(Toolbox, toolbox_id)
        assert toolbox is not None
        maintenance.start(session, toolbox, admin, utcnow() + timedelta(days=1), "upgrade")
    assert reminders.due(sessions, 3600, now=later) == []  # in maintenance
    with session_scope(sessions) as session:
        toolbox = session.get(Toolbox, toolbox_id)
        admin = session.scalars(select(User).where(User.name == "ops")).one()
        assert toolbox is not None
        maintenance.end(session, toolbox, admin)
    assert [e.event for e in reminders.due(sessions, 3600, now=later)] == ["reminder"]
    with session_scope(sessions) as session:
        admin = session.scalars(select(User).where(User.name == "ops")).one()
        alert_id = session.scalars(select(Alert.id)).one()
        reports.acknowledge(session, admin, alert_id, "on it")
    assert reminders.due(sessions, 3600, now=later + timedelta(hours=2)) == []  # acknowledged


def test_notification_test_from_the_api_and_the_cli_masks_every_url(
    tmp_path: Path, webhook_receiver: WebhookReceiver
) -> None:
    urls = [*apprise_urls(webhook_receiver), "json://127.0.0.1:9/nobody-listens"]
    database = f"sqlite:///{tmp_path / 'console.db'}"
    settings = Settings(
        database_url=database, notify_urls=urls, monitor_interval=0, webhook_timeout=2,
        do_api_url="http://127.0.0.1:9/v2",
    )  # fmt: skip
    app = create_app(settings)
    before = len(webhook_receiver.bodies("/all"))
    with live_server(app) as url:
        with session_scope(app.state.context.sessions) as session:
            _, admin = users.create_token(session, "ops", admin=True)
            _, someone = users.create_token(session, "dev", admin=False)
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {admin}"}) as http:
            shown = http.get("/api/v1/notifications")
            assert shown.status_code == 200, shown.text
            assert SECRET not in shown.text and "nobody-listens" not in shown.text
            targets = shown.json()["targets"]
            assert [t["severities"] for t in targets] == [
                ["critical", "warning"], ["critical"], ["warning"], ["critical", "warning"],
            ]  # fmt: skip
            assert targets[0]["url"] == f"json://user:****@{webhook_receiver.url[7:]}/…"
            sent = http.post("/api/v1/notifications/test")
            assert sent.status_code == 200, sent.text
            assert (sent.json()["delivered"], sent.json()["failed"]) == (3, 1)
            assert SECRET not in sent.text
            refused = http.post(
                "/api/v1/notifications/test", headers={"Authorization": f"Bearer {someone}"}
            )
            assert refused.status_code == 403
    assert len(webhook_receiver.bodies("/all")) == before + 1
    assert webhook_receiver.bodies("/warning")[-1]["title"] == "[TEST] DTMA console"

    env = {**os.environ, "DTMA_DATABASE_URL": database, "DTMA_NOTIFY_URLS": " ".join(urls[:2])}
    done = subprocess.run(
        [str(CLI), "notify", "test"], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("delivered\t") == 2 and SECRET not in done.stdout + done.stderr
    assert len(webhook_receiver.bodies("/all")) == before + 2
    env["DTMA_NOTIFY_URLS"] = urls[-1]
    failed = subprocess.run(
        [str(CLI), "notify", "test"], capture_output=True, text=True, env=env, timeout=60
    )
    assert failed.returncode == 1 and failed.stdout.startswith("failed\tjson://127.0.0.1:9/…")
