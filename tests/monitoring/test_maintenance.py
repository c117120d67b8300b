"""Maintenance windows on the sandbox: the routes (bounds, audit, ending), and a stopped
agent during a window is observed and recorded but neither alerted nor repaired; once the
window has ended by itself the next cycle alerts and repairs it."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from api.db import session_scope
from api.models import AuditEntry
from sandbox.fleet import SandboxInfo
from tests.monitoring.conftest import Console, docker_on, when
from tests.monitoring.test_recovery import alerts, check_of, cycle, unit_state

pytestmark = pytest.mark.sandbox


def iso(delta: timedelta) -> str:
    return (datetime.now(UTC) + delta).isoformat()


def test_maintenance_routes_check_the_window_audit_it_and_end_it(
    console: Console, toolboxes: dict[str, dict[str, Any]]
) -> None:
    toolbox_id = toolboxes["toolbox-1"]["id"]
    path = f"/api/v1/toolboxes/{toolbox_id}/maintenance"
    with console.http() as http:
        for body, field in (
            ({"until": iso(-timedelta(minutes=1)), "reason": "x"}, "until"),
            ({"until": iso(timedelta(days=8)), "reason": "x"}, "until"),
            ({"until": "2030-01-01T10:00:00", "reason": "x"}, "until"),
            ({"until": iso(timedelta(hours=1)), "reason": ""}, "reason"),
            ({"until": "tomorrow", "reason": "x"}, "until"),
        ):
            refused = http.post(path, json=body)
            assert refused.status_code == 422, (body, refused.text)
            assert refused.json()["error"]["field"] == field, refused.text
        assert http.get(path).json()["active"] is None

        until = iso(timedelta(hours=1))
        started = http.post(path, json={"until": until, "reason": "kernel upgrade"})
        assert started.status_code == 200, started.text
        window = started.json()
        assert window["reason"] == "kernel upgrade" and window["created_by"] == "monitor-admin"
        assert when(window["until"]) == when(until)
        assert http.get(path).json()["active"]["reason"] == "kernel upgrade"
        # Someone else's toolbox is not found; an owner may set their own.
        stranger = console.token("stranger")
        hidden = http.post(path, json={"until": until, "reason": "x"}, headers=stranger)
        assert hidden.status_code == 404

        ended = http.delete(path)
        assert ended.status_code == 200 and ended.json()["ended_by"] == "monitor-admin"
        assert http.get(path).json()["active"] is None
        again = http.delete(path)
        assert again.status_code == 404
        assert again.json()["error"]["code"] == "maintenance_not_found"
    with session_scope(console.context.sessions) as session:
        audited = [
            (e.action, e.outcome)
            for e in session.scalars(
                select(AuditEntry)
                .where(AuditEntry.toolbox_id == toolbox_id, AuditEntry.action.like("%maint%"))
                .order_by(AuditEntry.id)
            )
        ]
    assert audited[-3:] == [
        ("toolbox.maintenance.start", "successful"),
        ("toolbox.maintenance.end", "successful"),
        ("toolbox.maintenance.end", "rejected"),
    ]
    assert ("toolbox.maintenance.start", "rejected") in audited


def test_a_window_silences_a_stopped_agent_and_recovery_resumes_after_it(
    console: Console, sandbox: SandboxInfo, toolboxes: dict[str, dict[str, Any]]
) -> None:
    droplet = sandbox.droplet("toolbox-3")
    toolbox_id = toolboxes[droplet.name]["id"]
    path = f"/api/v1/toolboxes/{toolbox_id}/maintenance"
    with console.http() as http:
        earlier = {
            a["id"] for a in http.get("/api/v1/alerts", params={"toolbox_id": toolbox_id}).json()
        }
        started = http.post(path, json={"until": iso(timedelta(minutes=10)), "reason": "agent"})
        assert started.status_code == 200, started.text
        docker_on(droplet.container, "systemctl", "stop", "dtma")
        try:
            for _ in range(3):  # agent_down_checks is 2: it would have alerted by now
                assert cycle(console, toolbox_id) == []
            # Observed and recorded as always: the check fails, the toolbox is down.
            agent = check_of(http, toolbox_id, "agent")
            assert agent["state"] == "failing" and agent["consecutive_failures"] >= 3
            health = http.get(f"/api/v1/toolboxes/{toolbox_id}/health").json()
            assert health["status"] == "down"
            assert [a for a in health["open_alerts"] if a["id"] not in earlier] == []
            assert [a for a in alerts(http, toolbox_id, "agent") if a["id"] not in earlier] == []
            assert unit_state(droplet.container) == "inactive"  # and nobody repaired it

            # A shorter window replaces it, and ends by itself (nothing ends it).
            short = http.post(path, json={"until": iso(timedelta(seconds=2)), "reason": "agent"})
            assert short.status_code == 200, short.text
            time.sleep(2.5)
            assert http.get(path).json()["active"] is None
            repairs = cycle(console, toolbox_id)
            assert len(repairs) == 1
            run = http.get(f"/api/v1/runs/{repairs[0]}").json()
            assert (run["action"], run["status"]) == ("dtma.restart", "successful"), run
            assert unit_state(droplet.container) == "active"
            [alert] = [a for a in alerts(http, toolbox_id, "agent") if a["id"] not in earlier]
            assert alert["state"] == "resolved" and alert["recovery"] == "succeeded"
        finally:
            http.delete(path)  # no window may outlive the test (404 when it ended already)
            if unit_state(droplet.container) != "active":
                docker_on(droplet.container, "systemctl", "start", "dtma")
