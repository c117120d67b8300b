"""The read path on the sandbox (agent, then SSH, then the stale cache), refusals that
change nothing on the droplets, ownership, and secrets kept out of every answer and log."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from sandbox.fleet import SandboxInfo
from tests.api.console import Console, docker_exec, wait_until

pytestmark = pytest.mark.sandbox


def tb(toolboxes: dict[str, dict[str, Any]], name: str) -> str:
    return str(toolboxes[name]["id"])


def running_containers(container: str) -> str:
    return docker_exec(
        container, "docker", "ps", "-a", "--format", "{{.Names}} {{.State}} {{.Status}}"
    )


def test_agent_stopped_answers_from_ssh_and_restart_brings_it_back(
    console: Console, sandbox: SandboxInfo, toolboxes: dict[str, dict[str, Any]]
) -> None:
    container = sandbox.droplet("toolbox-3").container
    toolbox = tb(toolboxes, "toolbox-3")
    docker_exec(container, "systemctl", "stop", "dtma")
    with console.http() as http:
        status = http.get(f"/api/v1/toolboxes/{toolbox}/dtma/status").json()
        assert status["source"] == "ssh" and status["stale"] is False
        assert "did not answer" in status["errors"]["agent"]
        assert status["data"]["agent_service"]["active"] is False
        assert status["data"]["docker"]["state"] == "running"
        system = http.get(f"/api/v1/toolboxes/{toolbox}/dtma/system").json()
        assert system["source"] == "ssh"
        assert system["data"]["cpu"]["count"] == int(docker_exec(container, "nproc"))
        detail = http.get(f"/api/v1/toolboxes/{toolbox}").json()
        assert detail["status"] == "down" and "agent" in detail["last_error"]

        restarted = http.post(f"/api/v1/toolboxes/{toolbox}/dtma/restart")
        assert restarted.status_code == 200, restarted.text
        assert docker_exec(container, "systemctl", "is-active", "dtma") == "active"
        assert http.get(f"/api/v1/toolboxes/{toolbox}/dtma/status").json()["source"] == "agent"


def test_droplet_stopped_answers_from_the_cache_marked_stale(
    console: Console, sandbox: SandboxInfo, toolboxes: dict[str, dict[str, Any]]
) -> None:
    droplet = sandbox.droplet("toolbox-3")
    toolbox = tb(toolboxes, "toolbox-3")
    with console.http() as http:
        fresh = http.get(f"/api/v1/toolboxes/{toolbox}/dtma/status").json()
        assert fresh["source"] == "agent"
        subprocess.run(["docker", "stop", droplet.container], check=True, capture_output=True)
        try:
            cached = http.get(f"/api/v1/toolboxes/{toolbox}/dtma/status").json()
            assert (cached["source"], cached["stale"], cached["cached_from"]) == (
                "cache",
                True,
                "agent",
            )
            assert cached["observed_at"] == fresh["observed_at"]
            assert cached["data"] == fresh["data"]
            assert set(cached["errors"]) == {"agent", "ssh"}
            assert http.get(f"/api/v1/toolboxes/{toolbox}").json()["status"] == "unreachable"
            compat = http.post(
                "/functions/v1/toolbox-dtma-console",
                json={"toolboxId": toolbox, "action": "status"},
            )
            assert compat.status_code == 500  # the frontend's failure status: not live
            assert (compat.json()["success"], compat.json()["stale"]) == (False, True)
            assert compat.json()["data"]["data"] == fresh["data"]
        finally:
            subprocess.run(["docker", "start", droplet.container], check=True, capture_output=True)
        wait_until(
            lambda: (
                http.get(f"/api/v1/toolboxes/{toolbox}/dtma/status").json()["source"] == "agent"
            ),
            120,
            "the agent to answer again after the droplet restarted",
        )


def test_compat_reads_of_a_paused_droplet_fail_with_the_stale_data(
    console: Console, sandbox: SandboxInfo, toolboxes: dict[str, dict[str, Any]]
) -> None:
    """A frozen droplet (its agent and sshd hang rather than refuse) never reads as a
    success: 500, `success: false`, what did not answer and since when, the cached data."""
    droplet = sandbox.droplet("toolbox-3")
    toolbox = tb(toolboxes, "toolbox-3")

    def compat(action: str) -> Any:
        return http.post(
            "/functions/v1/toolbox-dtma-console", json={"toolboxId": toolbox, "action": action}
        )

    with console.http() as http:
        live = compat("status")
        assert live.status_code == 200 and live.json()["success"] is True
        observed_at = live.json()["data"]["observed_at"]
        subprocess.run(["docker", "pause", droplet.container], check=True, capture_output=True)
        try:
            frozen = compat("status")
            assert frozen.status_code == 500, frozen.text
            body = frozen.json()
            assert (body["success"], body["stale"], body["code"]) == (
                False,
                True,
                "toolbox_unreachable",
            )
            assert "message" not in body and "timestamp" in body
            assert body["data"]["stale"] is True and body["data"]["source"] == "cache"
            assert body["data"]["observed_at"] == observed_at
            assert body["data"]["data"] == live.json()["data"]["data"]
            assert "agent: " in body["error"] and "ssh: " in body["error"]
            assert f"no live answer since {observed_at}" in body["error"]
        finally:
            subprocess.run(
                ["docker", "unpause", droplet.container], check=True, capture_output=True
            )
        assert compat("status").json()["success"] is True


def test_refused_inputs_change_nothing_on_the_droplet(
    console: Console, sandbox: SandboxInfo, toolboxes: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    container = sandbox.droplet("toolbox-1").container
    toolbox = tb(toolboxes, "toolbox-1")
    marker = "/tmp/pwned-by-console-test"
    before = running_containers(container)
    with console.http() as http:
        runs_before = len(http.get("/api/v1/runs", params={"limit": 500}).json())
        refused = [
            http.post(
                f"/api/v1/toolboxes/{toolbox}/tools",
                json={"name": "evil", "image": f"{{{{ lookup('pipe','touch {marker}') }}}}"},
            ),
            http.post(
                f"/api/v1/toolboxes/{toolbox}/tools",
                json={
                    "name": "evil",
                    "image": "dtma-tool-echo:1.0",
                    "env": {"X": f"{{{{ lookup('pipe','touch {marker}') }}}}"},
                },
            ),
            http.post(
                f"/api/v1/toolboxes/{toolbox}/tools",
                json={"name": "../../etc", "image": "dtma-tool-echo:1.0"},
            ),
            http.post(f"/api/v1/toolboxes/{toolbox}/tools/UPPER/stop"),
            http.post(
                f"/api/v1/toolboxes/{toolbox}/tools",
                content=b"[" * 3_000_000,
                headers={"Content-Type": "application/json"},
            ),
            http.post(
                "/functions/v1/toolbox-tools",
                json={"toolboxId": toolbox, "action": "rm -rf", "instanceId": "echo"},
            ),
        ]
        assert [r.status_code for r in refused] == [422, 422, 422, 422, 413, 400]
        assert len(http.get("/api/v1/runs", params={"limit": 500}).json()) == runs_before
    assert running_containers(container) == before
    assert subprocess.run(["docker", "exec", container, "test", "-e", marker]).returncode == 1
    assert not Path(marker).exists()


def test_another_users_toolbox_is_404_and_nothing_runs(
    console: Console, sandbox: SandboxInfo, toolboxes: dict[str, dict[str, Any]]
) -> None:
    created = console.cli("token", "create", "--user", "mallory")
    assert created.returncode == 0, created.stderr
    mallory = created.stdout.strip().splitlines()[-1]
    container = sandbox.droplet("toolbox-1").container
    pid = docker_exec(container, "systemctl", "show", "-p", "MainPID", "--value", "dtma")
    toolbox = tb(toolboxes, "toolbox-1")
    with console.http(mallory) as http:
        assert http.get("/api/v1/toolboxes").json() == []
        for response in (
            http.get(f"/api/v1/toolboxes/{toolbox}/dtma/status"),
            http.post(f"/api/v1/toolboxes/{toolbox}/dtma/restart"),
            http.post(
                "/functions/v1/toolbox-dtma-console",
                json={"toolboxId": toolbox, "action": "restart"},
            ),
        ):
            assert response.status_code == 404, response.text
        assert http.post("/api/v1/toolboxes/sync").status_code == 403
        assert http.get("/api/v1/runs").json() == []
    assert docker_exec(container, "systemctl", "show", "-p", "MainPID", "--value", "dtma") == pid


def test_no_secret_in_any_answer_log_or_stored_row(console: Console, sandbox: SandboxInfo) -> None:
    """Runs before this one deployed a tool with a secret environment value and installed
    agents with their tokens; none of it may show up anywhere readable."""
    secrets = {
        "tool env value": "s3cr3t-value-that-must-not-leak",
        "operator key": sandbox.operator_key.read_text().strip().splitlines()[2],
    }
    for droplet in sandbox.droplets:
        env = docker_exec(droplet.container, "cat", "/etc/dtma/dtma.env")
        for line in env.splitlines():
            if line.startswith("DTMA_AGENT_TOKEN="):
                secrets[f"agent token of {droplet.name}"] = line.split("=", 1)[1].strip("'\"")
    assert len(secrets) == 2 + len(sandbox.droplets)
    database = Path(console.env["DTMA_DATABASE_URL"].removeprefix("sqlite:///"))
    stored = b"".join(p.read_bytes() for p in database.parent.glob(database.name + "*"))
    places = {
        "answers": "\n".join(console.seen_bodies),
        "console log": console.log_path.read_text(),
        "database": stored.decode("latin-1"),
    }
    assert len(console.seen_bodies) > 20
    for what, secret in secrets.items():
        for where, text in places.items():
            assert secret not in text, f"{what} found in {where}"


def test_metrics_count_requests_and_runs(console: Console) -> None:
    with console.http() as http:
        metrics = http.get("/metrics").text
    assert 'dtma_http_requests_total{method="GET",route="/healthz",status="200"}' in metrics
    assert 'dtma_runs_total{action="dtma.restart",status="successful"}' in metrics
    assert "dtma_run_duration_seconds_bucket" in metrics
