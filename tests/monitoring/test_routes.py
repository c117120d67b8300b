"""The monitoring routes over real HTTP (no sandbox): ownership, filters, validation, audit."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from api.app import create_app
from api.db import session_scope
from api.models import AuditEntry, User, utcnow
from api.monitoring.models import Alert, CheckState
from api.services import users
from api.settings import Settings
from tests.api.server import live_server
from tests.monitoring.conftest import Console, add_toolbox


@pytest.fixture
def local_console(tmp_path: Path) -> Iterator[Console]:
    app = create_app(
        Settings(database_url=f"sqlite:///{tmp_path / 'console.db'}", monitor_interval=0)
    )
    with live_server(app) as url:
        with session_scope(app.state.context.sessions) as session:
            _, token = users.create_token(session, "root", admin=True)
        yield Console(url, app, {"Authorization": f"Bearer {token}"})


@pytest.fixture
def owned(local_console: Console) -> dict[str, str]:
    """alice owns toolbox-a (one failing check, one open alert), bob owns toolbox-b."""
    alice = local_console.token("alice")
    bob = local_console.token("bob")
    sessions = local_console.context.sessions
    with session_scope(sessions) as session:
        ids = {u.name: u.id for u in session.scalars(select(User))}
    toolbox_a = add_toolbox(sessions, "toolbox-a", owner_id=ids["alice"])
    toolbox_b = add_toolbox(sessions, "toolbox-b", owner_id=ids["bob"])
    now = utcnow()
    with session_scope(sessions) as session:
        session.add_all([
            CheckState(toolbox_id=toolbox_a, check="cpu", state="failing", consecutive_failures=3,
                       value=97.0, threshold=90.0, message="cpu at 97.0%", memory={}, since=now),
            CheckState(toolbox_id=toolbox_a, check="agent", state="ok", consecutive_failures=0,
                       message="the DTMA agent answers", memory={}, since=now),
            Alert(toolbox_id=toolbox_a, check="cpu", severity="warning", state="open",
                  message="cpu at 97.0%", value=97.0, threshold=90.0, recovery="none",
                  recovery_attempts=0, opened_at=now),
            Alert(toolbox_id=toolbox_b, check="agent", severity="critical", state="resolved",
                  message="resolved", recovery="succeeded", recovery_attempts=1,
                  opened_at=now, resolved_at=now),
        ])  # fmt: skip
    return {
        "a": toolbox_a, "b": toolbox_b,
        "alice": alice["Authorization"], "bob": bob["Authorization"],
    }  # fmt: skip


def test_health_lists_every_check_with_value_threshold_and_a_verdict(
    local_console: Console, owned: dict[str, str]
) -> None:
    health = httpx.get(
        f"{local_console.url}/api/v1/toolboxes/{owned['a']}/health",
        headers={"Authorization": owned["alice"]},
    )
    assert health.status_code == 200, health.text
    body = health.json()
    assert body["verdict"] == "degraded"
    assert [(c["check"], c["state"]) for c in body["checks"]] == [
        ("agent", "ok"),
        ("cpu", "failing"),
    ]
    cpu = body["checks"][1]
    assert (cpu["value"], cpu["threshold"], cpu["severity"]) == (97.0, 90.0, "warning")
    assert [a["check"] for a in body["open_alerts"]] == ["cpu"]


def test_someone_elses_toolbox_and_its_alerts_are_not_found(
    local_console: Console, owned: dict[str, str]
) -> None:
    with httpx.Client(base_url=local_console.url, headers={"Authorization": owned["bob"]}) as bob:
        assert bob.get(f"/api/v1/toolboxes/{owned['a']}/health").status_code == 404
        assert bob.get(f"/api/v1/toolboxes/{owned['a']}/monitoring").status_code == 404
        patched = bob.patch(
            f"/api/v1/toolboxes/{owned['a']}/monitoring", json={"recovery_enabled": False}
        )
        assert patched.status_code == 404
        assert [a["toolbox_id"] for a in bob.get("/api/v1/alerts").json()] == [owned["b"]]
        alice_alert = httpx.get(
            f"{local_console.url}/api/v1/alerts", headers={"Authorization": owned["alice"]}
        ).json()[0]
        assert bob.get(f"/api/v1/alerts/{alice_alert['id']}").status_code == 404
    assert httpx.get(f"{local_console.url}/api/v1/alerts").status_code == 401


def test_alerts_filter_by_state_and_toolbox(local_console: Console, owned: dict[str, str]) -> None:
    with local_console.http() as admin:
        assert len(admin.get("/api/v1/alerts").json()) == 2
        open_ = admin.get("/api/v1/alerts", params={"state": "open"}).json()
        assert [(a["toolbox_id"], a["check"]) for a in open_] == [(owned["a"], "cpu")]
        resolved = admin.get(
            "/api/v1/alerts", params={"state": "resolved", "toolbox_id": owned["b"]}
        ).json()
        assert [a["recovery"] for a in resolved] == ["succeeded"]
        bad = admin.get("/api/v1/alerts", params={"state": "maybe"})
        assert bad.status_code == 422 and bad.json()["error"]["field"] == "state"


def test_owner_changes_thresholds_and_recovery_and_null_restores_the_default(
    local_console: Console, owned: dict[str, str]
) -> None:
    url = f"{local_console.url}/api/v1/toolboxes/{owned['a']}/monitoring"
    alice = {"Authorization": owned["alice"]}
    before = httpx.get(url, headers=alice).json()
    assert (
        before["effective"]["cpu_threshold"] == 90.0
        and before["overrides"]["cpu_threshold"] is None
    )
    changed = httpx.patch(url, headers=alice, json={"cpu_threshold": 75, "recovery_enabled": False})
    assert changed.status_code == 200, changed.text
    body = changed.json()
    assert (
        body["effective"]["cpu_threshold"] == 75.0
        and body["effective"]["recovery_enabled"] is False
    )
    assert body["effective"]["memory_threshold"] == 90.0  # untouched
    restored = httpx.patch(url, headers=alice, json={"cpu_threshold": None}).json()
    assert restored["effective"]["cpu_threshold"] == 90.0
    assert restored["effective"]["recovery_enabled"] is False  # not sent, not changed
    with session_scope(local_console.context.sessions) as session:
        entries = list(
            session.scalars(
                select(AuditEntry).where(AuditEntry.action == "toolbox.monitoring.update")
            )
        )
    assert [e.parameters for e in entries] == [
        {"cpu_threshold": 75.0, "recovery_enabled": False},
        {"cpu_threshold": None},
    ]
    assert all(e.actor == "alice" and e.outcome == "successful" for e in entries)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"cpu_threshold": 150}, "cpu_threshold"),
        ({"disk_threshold": 0}, "disk_threshold"),
        ({"agent_down_checks": 0}, "agent_down_checks"),
        ({"recovery_enabled": "{{ lookup('pipe','id') }}"}, "recovery_enabled"),
        ({"thresholds": 1}, "thresholds"),
    ],
)
def test_bad_settings_are_refused_naming_the_field_and_nothing_changes(
    local_console: Console, owned: dict[str, str], body: dict[str, object], field: str
) -> None:
    url = f"/api/v1/toolboxes/{owned['a']}/monitoring"
    with local_console.http() as admin:
        refused = admin.patch(url, json=body)
        assert refused.status_code == 422, refused.text
        assert refused.json()["error"]["field"] == field
        assert admin.get(url).json()["overrides"] == dict.fromkeys(
            admin.get(url).json()["overrides"]
        )
