"""Tool rollouts and what a rollout leaves behind, read from the droplets and the console's
own records: a tool deploy in batches (each container inspected on its droplet, the tool
instance rows written when the run closes, the run found by each toolbox's Runs filter,
each toolbox's audit entry with its host's state), a deploy of a private image (the
registry's stored login handed to the role, never shown), and an agent rollout whose
hosts the console reads back itself (a host it cannot read is not successful)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from api.models import Run, Toolbox, ToolInstance
from sandbox.fleet import SandboxInfo
from tests.dtma.conftest import health
from tests.rollouts.conftest import Console, wait_for_rollout
from tests.tools.helpers import inspect

pytestmark = pytest.mark.sandbox

ECHO = "dtma-tool-echo:1.0"
SECRET = "rollout-env-secret-4f1c"
REGISTRY_PASSWORD = "registry-password-9d2e"


def _start(console: Console, body: dict[str, Any]) -> dict[str, Any]:
    with console.http() as http:
        started = http.post("/api/v1/rollouts", json=body)
        assert started.status_code == 202, started.text
        return wait_for_rollout(http, started.json()["id"])


def _hosts(rollout: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {h["name"]: h for h in rollout["hosts"]}


def _audit_of(console: Console, toolbox_id: str, run_id: str) -> dict[str, Any]:
    with console.http() as http:
        entries = http.get("/api/v1/audit", params={"toolbox_id": toolbox_id}).json()
    mine = [e for e in entries if e["run_id"] == run_id]
    assert len(mine) == 1, entries
    return dict(mine[0])


def _everything_said_about(console: Console, rollout: dict[str, Any]) -> str:
    """The rollout, its run, its events and the audit log, as the API gives them."""
    with console.http() as http:
        run_id = rollout["run_id"]
        parts = [
            http.get(f"/api/v1/rollouts/{rollout['id']}").text,
            http.get(f"/api/v1/runs/{run_id}").text,
            http.get("/api/v1/audit").text,
        ]
        with http.stream("GET", f"/api/v1/runs/{run_id}/events") as events:
            for line in events.iter_lines():
                parts.append(line)
                if line.startswith("event: end"):
                    break
    return "\n".join(parts)


@pytest.fixture
def no_after_run_reads(console: Console) -> Iterator[None]:
    """The monitor's re-read after each run is held back, so that what the console records
    is what the run's close wrote."""
    hooks = console.app.state.context.runs.after_run
    held = list(hooks)
    hooks.clear()
    try:
        yield
    finally:
        hooks.extend(held)


def test_a_tool_deploy_rollout_in_batches_is_verified_on_every_droplet(
    console: Console, sandbox: SandboxInfo, no_after_run_reads: None
) -> None:
    names = ["toolbox-1", "toolbox-2", "toolbox-3"]
    ids = [console.toolboxes[n] for n in names]
    rollout = _start(console, {
        "action": "tool.deploy", "target": {"toolbox_ids": ids}, "batch_size": 2,
        "params": {"name": "rolled-echo", "image": ECHO, "env": {"TT_GREETING": SECRET},
                   "settle_seconds": 2},
    })  # fmt: skip
    assert rollout["status"] == "successful", rollout
    hosts = _hosts(rollout)
    assert {n: (h["batch"], h["state"]) for n, h in hosts.items()} == {
        "toolbox-1": (0, "successful"), "toolbox-2": (1, "successful"),
        "toolbox-3": (1, "successful"),
    }  # fmt: skip
    run_id = rollout["run_id"]
    sessions = console.app.state.context.sessions
    with sessions() as session:
        run = session.get(Run, run_id)
        assert run is not None and run.status == "successful" and run.finished_at is not None
        rows = {
            session.get(Toolbox, row.toolbox_id).name: row  # type: ignore[union-attr]
            for row in session.scalars(
                select(ToolInstance).where(ToolInstance.name == "rolled-echo")
            )
        }
        finished = run.finished_at
    for name in names:
        # From outside: the container on the droplet's own engine, running the image.
        seen = inspect(sandbox.droplet(name).container, "rolled-echo")
        assert seen is not None and seen["State"]["Status"] == "running", (name, seen)
        assert seen["Config"]["Image"] == ECHO
        # Recorded by the rollout's run's close (its end time; no other read ran).
        row = rows[name]
        assert (row.state, row.container_id, row.image) == ("running", seen["Id"], ECHO)
        assert row.observed_at == finished, (row.observed_at, finished)
        assert hosts[name]["message"].startswith("running"), hosts[name]
    # The Runs filter finds the rollout's run by each of its toolboxes, not by another.
    with console.http() as http:
        for name in names:
            found = http.get("/api/v1/runs", params={"toolbox_id": console.toolboxes[name]})
            assert run_id in [r["id"] for r in found.json()], (name, found.text)
        other = http.get("/api/v1/runs", params={"toolbox_id": console.toolboxes["toolbox-4"]})
        assert run_id not in [r["id"] for r in other.json()]
    # The owner of one of its toolboxes (not an admin, not the one who started it) sees it.
    _, bob = console.user("bob-rollouts")
    owned = console.toolboxes["toolbox-2"]
    with console.http() as http:
        assert http.patch(f"/api/v1/toolboxes/{owned}", json={"owner": "bob-rollouts"}).is_success
    try:
        with console.http(bob) as http:
            assert run_id in [r["id"] for r in http.get("/api/v1/runs").json()]
            assert http.get(f"/api/v1/runs/{run_id}").status_code == 200
    finally:
        with console.http() as http:
            assert http.patch(f"/api/v1/toolboxes/{owned}", json={"owner": None}).is_success
    for name in names:
        entry = _audit_of(console, console.toolboxes[name], run_id)
        assert entry["outcome"] == "successful" and entry["detail"].startswith(f"{name}: ")
    assert SECRET not in _everything_said_about(console, rollout)
    for name in names:  # leave the droplets as they were
        subprocess.run(
            ["docker", "exec", sandbox.droplet(name).container, "docker", "rm", "-f",
             "rolled-echo"],
            capture_output=True, timeout=60, check=True,
        )  # fmt: skip


def test_a_private_image_rollout_hands_the_registry_login_to_the_role(
    console: Console, sandbox: SandboxInfo
) -> None:
    """Nothing listens at the registry: the canary's pull fails at the role's login step
    (included only when credentials are given: the stored login reached it); the other
    host is not started; each toolbox's audit entry has its own host's state."""
    registry = "127.0.0.1:5999"
    with console.http() as http:
        login = {"username": "rollout-puller", "password": REGISTRY_PASSWORD}
        stored = http.put(f"/api/v1/registries/{registry}", json=login)
        assert stored.status_code in (200, 201), stored.text
    canary, second = console.toolboxes["toolbox-4"], console.toolboxes["toolbox-5"]
    try:
        rollout = _start(console, {
            "action": "tool.deploy", "target": {"toolbox_ids": [canary, second]},
            "params": {"name": "private-echo", "image": f"{registry}/team/echo:1.0"},
        })  # fmt: skip
    finally:
        with console.http() as http:
            assert http.delete(f"/api/v1/registries/{registry}").status_code in (200, 204)
    hosts = _hosts(rollout)
    assert rollout["status"] == "halted", rollout
    assert hosts["toolbox-4"]["state"] == "failed", hosts
    # The role's login step ran (it runs only with credentials) and met nothing listening;
    # the run's redaction masks the login's registry and user in the message.
    message = hosts["toolbox-4"]["message"]
    assert "could not log in to registry" in message and "connection refused" in message, message
    assert hosts["toolbox-5"]["state"] == "not_started", hosts
    assert rollout["params"]["registry_login"] == f"rollout-puller@{registry}"
    assert inspect(sandbox.droplet("toolbox-4").container, "private-echo") is None
    assert inspect(sandbox.droplet("toolbox-5").container, "private-echo") is None
    run_id = rollout["run_id"]
    assert _audit_of(console, canary, run_id)["outcome"] == "failed"
    assert _audit_of(console, second, run_id)["outcome"] == "not_started"
    assert REGISTRY_PASSWORD not in _everything_said_about(console, rollout)


@pytest.fixture
def agent_port_closed_to_the_console(sandbox: SandboxInfo) -> Iterator[str]:
    """toolbox-3's agent port rejects everything that does not come over the droplet's
    loopback: the role's own check (on 127.0.0.1) passes, the console's read cannot."""
    container = sandbox.droplet("toolbox-3").container
    rules = "\n".join([
        "table inet rollout_test {",
        "  chain input {",
        "    type filter hook input priority filter - 2; policy accept;",
        '    tcp dport 30000 iifname != "lo" reject with tcp reset',
        "  }",
        "}",
    ])  # fmt: skip
    loaded = subprocess.run(["docker", "exec", "-i", container, "nft", "-f", "-"], input=rules,
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert loaded.returncode == 0, loaded.stderr
    try:
        yield "toolbox-3"
    finally:
        subprocess.run(
            ["docker", "exec", container, "nft", "delete", "table", "inet", "rollout_test"],
            check=True, timeout=60,
        )  # fmt: skip


def test_an_agent_rollout_host_the_console_cannot_read_back_is_not_successful(
    console: Console, sandbox: SandboxInfo, agent_port_closed_to_the_console: str
) -> None:
    blocked = agent_port_closed_to_the_console
    names = ["toolbox-2", blocked]
    assert health(sandbox.droplet(blocked)) is None  # from outside, as the console sees it
    rollout = _start(console, {
        "action": "dtma.redeploy", "target": {"toolbox_ids": [console.toolboxes[n] for n in names]},
        "batch_size": 1,
    })  # fmt: skip
    hosts = _hosts(rollout)
    assert rollout["status"] == "failed", rollout
    assert hosts["toolbox-2"]["state"] == "successful", hosts
    assert "read back by the console" in hosts["toolbox-2"]["message"]
    assert hosts[blocked]["state"] == "failed", hosts
    assert (
        "verified on the droplet, but the console could not read it back"
        in (hosts[blocked]["message"])
    ), hosts[blocked]
    with console.http() as http:
        run = http.get(f"/api/v1/runs/{rollout['run_id']}").json()
    assert run["status"] == "failed" and blocked in run["error"], run
    checks = run["result"]["data"]["console_checks"]
    assert checks["toolbox-2"]["ok"] is True and checks[blocked]["ok"] is False, checks
    assert checks["toolbox-2"]["version"] == health(sandbox.droplet("toolbox-2"))["version"]  # type: ignore[index]
    assert _audit_of(console, console.toolboxes[blocked], rollout["run_id"])["outcome"] == "failed"
    assert (
        _audit_of(console, console.toolboxes["toolbox-2"], rollout["run_id"])["outcome"]
        == "successful"
    )
