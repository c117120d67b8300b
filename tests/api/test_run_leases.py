"""Run leases on both engines: the reaper writes off runs whose owner stopped beating and
frees their toolboxes, leaves live runs and runs waiting for a worker alone; start-up
recovery only touches runs of this host's dead processes; the events route bounds `after`."""

from __future__ import annotations

import socket
import subprocess
import sys
from datetime import timedelta

import httpx
import pytest
from sqlalchemy.orm import Session

from api.context import Context
from api.models import AuditEntry, Run, Toolbox, utcnow
from api.secret_box import SecretBox
from api.services import leases
from tests.api.test_errors import assert_error

LEASE = 30.0


@pytest.fixture
def toolboxes(db: Session, secrets: SecretBox) -> list[str]:
    made = [
        Toolbox(droplet_id=100 + i, name=f"toolbox-l{i}", address=f"127.0.24.{200 + i}")
        for i in range(5)
    ]
    for toolbox in made:
        token = "agent-token-for-tests-0123456789"
        secrets.seal_into(toolbox, Toolbox.agent_token_ciphertext, token)
    db.add_all(made)
    db.commit()
    return [t.id for t in made]


def _dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], check=True,
                          capture_output=True, text=True)  # fmt: skip
    return int(done.stdout)


def _run(
    db: Session, toolbox_id: str, status: str, owner: str | None, beat_age: float | None
) -> str:
    now = utcnow()
    run = Run(
        toolbox_id=toolbox_id,
        action="tool.restart",
        playbook="tool_restart.yml",
        status=status,
        owner=owner,
        heartbeat_at=None if beat_age is None else now - timedelta(seconds=beat_age),
        created_at=now,
    )
    db.add(run)
    db.flush()
    db.add(AuditEntry(actor="test", action="tool.restart", toolbox_id=toolbox_id, run_id=run.id,
                      outcome=status, parameters={}))  # fmt: skip
    toolbox = db.get(Toolbox, toolbox_id)
    assert toolbox is not None
    toolbox.active_run_id = run.id
    db.commit()
    return run.id


def _state(db: Session, run_id: str) -> tuple[str, str | None]:
    db.expire_all()
    run = db.get(Run, run_id)
    assert run is not None
    toolbox = db.get(Toolbox, run.toolbox_id)
    assert toolbox is not None
    return run.status, toolbox.active_run_id


def test_the_reaper_writes_off_only_runs_whose_lease_expired(
    context: Context, db: Session, toolboxes: list[str]
) -> None:
    elsewhere = "other-host:4242"
    stale = _run(db, toolboxes[0], "running", elsewhere, beat_age=LEASE + 5)
    fresh = _run(db, toolboxes[1], "running", elsewhere, beat_age=1)
    waiting = _run(db, toolboxes[2], "queued", None, beat_age=None)  # for a worker to claim

    assert leases.reap(context.sessions, LEASE) == [stale]
    assert _state(db, stale) == ("interrupted", None)
    run = db.get(Run, stale)
    assert run is not None and run.success is False
    assert run.error is not None and elsewhere in run.error and "not retried" in run.error
    entry = db.query(AuditEntry).filter(AuditEntry.run_id == stale).one()
    assert entry.outcome == "interrupted"
    assert _state(db, fresh) == ("running", fresh)
    assert _state(db, waiting) == ("queued", waiting)
    assert leases.reap(context.sessions, LEASE) == []


def test_start_up_recovery_touches_only_runs_of_this_hosts_dead_processes(
    context: Context, db: Session, toolboxes: list[str]
) -> None:
    host = socket.gethostname()
    dead_here = _run(db, toolboxes[0], "running", f"{host}:{_dead_pid()}", beat_age=1)
    live_here = _run(db, toolboxes[1], "running", leases.process_owner(), beat_age=1)
    other_host = _run(db, toolboxes[2], "running", "other-host:1", beat_age=1)
    waiting = _run(db, toolboxes[3], "queued", None, beat_age=None)
    before_leases = _run(db, toolboxes[4], "running", None, beat_age=None)

    recovered = leases.recover_own(context.sessions)

    assert sorted(recovered) == sorted([dead_here, before_leases])
    assert _state(db, dead_here) == ("interrupted", None)
    assert _state(db, before_leases) == ("interrupted", None)
    assert _state(db, live_here) == ("running", live_here)
    assert _state(db, other_host) == ("running", other_host)
    assert _state(db, waiting) == ("queued", waiting)


def test_heartbeat_renews_its_own_runs_and_reports_written_off_ones(
    context: Context, db: Session, toolboxes: list[str]
) -> None:
    me = leases.process_owner()
    mine = _run(db, toolboxes[0], "running", me, beat_age=LEASE - 1)
    lost = _run(db, toolboxes[1], "interrupted", me, beat_age=LEASE - 1)
    stopped: list[tuple[str, str]] = []
    beat = leases.Heartbeat(context.sessions, me, LEASE, lambda r, why: stopped.append((r, why)))
    beat.add(mine)
    beat.add(lost)
    beat.beat()
    db.expire_all()
    run = db.get(Run, mine)
    assert run is not None and run.heartbeat_at is not None
    assert utcnow() - run.heartbeat_at < timedelta(seconds=5)
    assert stopped == [(lost, "lost")]
    assert leases.reap(context.sessions, LEASE) == []


def test_events_after_is_bounded(
    client: httpx.Client, admin: dict[str, str], db: Session, toolboxes: list[str]
) -> None:
    headers = {"Authorization": admin["auth"]}
    run_id = _run(db, toolboxes[0], "successful", None, beat_age=None)
    response = client.get(
        f"/api/v1/runs/{run_id}/events", params={"after": 9223372036854775808}, headers=headers
    )
    assert response.status_code == 422, response.text
    assert "error" in response.json()
    too_far = client.get(
        f"/api/v1/runs/{run_id}/events",
        headers={**headers, "Last-Event-ID": "9223372036854775808"},
    )
    assert_error(too_far, 422, "invalid_input")
    fine = client.get(f"/api/v1/runs/{run_id}/events", params={"after": 2**31 - 1}, headers=headers)
    assert fine.status_code == 200
    assert "event: end" in fine.text
