"""Detection, alerts and automatic recovery on the sandbox, each cycle driven by the test:
a stopped agent and a crashed tool are repaired without a human (each repair a normal run),
a tool in a crash loop is given up on after the limit, and a tool an operator stopped
through the console is left alone."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from sandbox.fleet import SandboxInfo
from tests.monitoring.conftest import (
    Console,
    WebhookReceiver,
    deploy_tool,
    docker_on,
    managed_containers,
    remove_tool,
)

pytestmark = pytest.mark.sandbox


def cycle(console: Console, toolbox_id: str) -> list[str]:
    """One monitoring cycle on the toolbox, returning once its repairs and their follow-up
    syncs ended; the ids of the repair runs it started."""
    return console.call(console.monitor.run_cycle([toolbox_id], wait=True)).recovery_runs


def alerts(http: httpx.Client, toolbox_id: str, check: str) -> list[dict[str, Any]]:
    listed = http.get("/api/v1/alerts", params={"toolbox_id": toolbox_id}).json()
    return [a for a in listed if a["check"] == check]


def check_of(http: httpx.Client, toolbox_id: str, check: str) -> dict[str, Any]:
    health = http.get(f"/api/v1/toolboxes/{toolbox_id}/health").json()
    return next(c for c in health["checks"] if c["check"] == check)


def wait_until(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.2)


def unit_state(container: str) -> str:
    return docker_on(container, "systemctl", "is-active", "dtma", check=False).strip()


@pytest.fixture
def settings_of(console: Console) -> Iterator[Any]:
    """PATCH a toolbox's monitoring settings; every override is reset afterwards."""
    touched: set[str] = set()

    def apply(toolbox_id: str, **values: Any) -> dict[str, Any]:
        touched.add(toolbox_id)
        with console.http() as http:
            answer = http.patch(f"/api/v1/toolboxes/{toolbox_id}/monitoring", json=values)
        assert answer.status_code == 200, answer.text
        return dict(answer.json())

    yield apply
    reset = dict.fromkeys(
        ("cpu_threshold", "memory_threshold", "disk_threshold", "agent_down_checks",
         "threshold_checks", "recovery_enabled", "recovery_max_attempts",
         "recovery_window_seconds"),
    )  # fmt: skip
    for toolbox_id in touched:
        apply(toolbox_id, **reset)


def test_agent_stopped_by_hand_is_alerted_restarted_by_a_run_and_resolved(
    console: Console,
    sandbox: SandboxInfo,
    toolboxes: dict[str, dict[str, Any]],
    webhook_receiver: WebhookReceiver,
) -> None:
    droplet = sandbox.droplet("toolbox-2")
    toolbox_id = toolboxes[droplet.name]["id"]
    docker_on(droplet.container, "systemctl", "stop", "dtma")
    assert unit_state(droplet.container) == "inactive"
    with console.http() as http:
        # agent_down_checks defaults to 2: the first failed look is only pending.
        assert cycle(console, toolbox_id) == []
        pending = check_of(http, toolbox_id, "agent")
        assert pending["state"] == "pending" and pending["consecutive_failures"] == 1
        assert alerts(http, toolbox_id, "agent") == []
        health = http.get(f"/api/v1/toolboxes/{toolbox_id}/health").json()
        assert health["status"] == "down" and health["verdict"] == "degraded"

        recovery_runs = cycle(console, toolbox_id)
        assert len(recovery_runs) == 1
        run = http.get(f"/api/v1/runs/{recovery_runs[0]}").json()
        assert run["action"] == "dtma.restart" and run["playbook"] == "dtma_restart.yml"
        assert run["status"] == "successful", run
        assert run["toolbox_id"] == toolbox_id
        listed = http.get("/api/v1/runs", params={"toolbox_id": toolbox_id}).json()
        assert recovery_runs[0] in [r["id"] for r in listed]

        assert unit_state(droplet.container) == "active"
        [alert] = alerts(http, toolbox_id, "agent")
        assert alert["state"] == "resolved", alert
        assert alert["recovery"] == "succeeded" and alert["recovery_attempts"] == 1
        detail = http.get(f"/api/v1/alerts/{alert['id']}").json()
        assert [a["run_id"] for a in detail["recovery_history"]] == recovery_runs
        assert [n["event"] for n in detail["notifications"]] == ["opened", "resolved"]
        assert all(n["status"] == "delivered" for n in detail["notifications"])
        assert http.get(f"/api/v1/toolboxes/{toolbox_id}").json()["status"] == "up"
    assert webhook_receiver.events_for(alert["id"]) == ["opened", "resolved"]
    # This alert's own bodies: on a loaded machine another check (cpu) may alert meanwhile.
    opened = next(b for b in webhook_receiver.bodies() if b["alert"]["id"] == alert["id"])
    assert opened["text"].startswith("[ALERT] critical on toolbox-2 (agent)")


def test_crashing_tool_is_restarted_up_to_the_limit_then_recovery_gives_up(
    console: Console,
    sandbox: SandboxInfo,
    toolboxes: dict[str, dict[str, Any]],
    webhook_receiver: WebhookReceiver,
    settings_of: Any,
) -> None:
    droplet = sandbox.droplet("toolbox-1")
    toolbox_id = toolboxes[droplet.name]["id"]
    settings_of(toolbox_id, recovery_max_attempts=2)
    tool, check = "crashy-limit", "tool_exited:crashy-limit"

    def crashed() -> bool:
        return managed_containers(droplet.container).get(tool) == "exited"

    # A tool instance that works for 1 s, then exits with status 3; no restart policy, so
    # only the console's recovery brings it back. Started on the droplet directly (the
    # console finds it at its next look, like any tool instance).
    docker_on(droplet.container, "docker", "rm", "-f", tool, check=False)  # an earlier run's
    docker_on(
        droplet.container, "docker", "run", "-d", "--name", tool, "--label", "dtma.managed=true",
        "--label", f"dtma.instance={tool}", "-e", "CRASHY_LINES=1", "dtma-tool-crashy:1.0",
    )  # fmt: skip
    with console.http() as http:
        try:
            for attempt in (1, 2):
                wait_until(crashed, 60, f"the crashy tool to exit before attempt {attempt}")
                started = cycle(console, toolbox_id)
                assert len(started) == 1, f"attempt {attempt}: {started}"
                run = http.get(f"/api/v1/runs/{started[0]}").json()
                assert (run["action"], run["playbook"]) == ("tool.restart", "tool_restart.yml")
                assert run["request"]["parameters"] == {"name": tool}
                # The restart ran, but the tool did not keep running through the settle
                # window: not a repair.
                assert run["status"] == "failed" and run["success"] is False, run
                assert "did not verify" in run["error"], run
                [attempted] = [a for a in alerts(http, toolbox_id, check) if a["state"] == "open"]
                assert attempted["recovery"] == "failed", attempted
            wait_until(crashed, 60, "the crashy tool to exit a third time")
            assert cycle(console, toolbox_id) == []  # the limit is reached: no third attempt
            [alert] = [a for a in alerts(http, toolbox_id, check) if a["state"] == "open"]
            assert alert["recovery"] == "gave_up", alert
            assert cycle(console, toolbox_id) == []  # and it stays given up
            logs = docker_on(droplet.container, "docker", "logs", tool)
            assert logs.count("crashy tool: starting") == 3  # its own start, then two repairs
            assert crashed()
            assert sum(a["recovery_attempts"] for a in alerts(http, toolbox_id, check)) == 2
            console.call(console.monitor.drain(30))
            [gave_up] = [
                b for b in webhook_receiver.bodies()
                if b["event"] == "gave_up" and b["alert"]["id"] == alert["id"]
            ]  # fmt: skip
            assert gave_up["text"].startswith("[RECOVERY GAVE UP] critical on toolbox-1 (")
            assert "gave up after 2 attempt(s) in 15 min" in gave_up["text"]
        finally:
            docker_on(droplet.container, "docker", "rm", "-f", tool)
        cycle(console, toolbox_id)
        assert all(a["state"] == "resolved" for a in alerts(http, toolbox_id, check))


def test_tool_stopped_through_the_console_stays_stopped(
    console: Console, sandbox: SandboxInfo, toolboxes: dict[str, dict[str, Any]]
) -> None:
    droplet = sandbox.droplet("toolbox-3")
    toolbox_id = toolboxes[droplet.name]["id"]
    tool = "quiet"
    with console.http() as http:
        deploy_tool(http, toolbox_id, tool, "dtma-tool-echo:1.0")
        try:
            stopped = http.post(f"/api/v1/toolboxes/{toolbox_id}/tools/{tool}/stop")
            assert stopped.status_code == 200, stopped.text
            for _ in range(2):
                assert cycle(console, toolbox_id) == []
            assert managed_containers(droplet.container)[tool] == "exited"
            state = check_of(http, toolbox_id, f"tool_exited:{tool}")
            assert state["state"] == "ok" and "stopped through the console" in state["message"]
            assert alerts(http, toolbox_id, f"tool_exited:{tool}") == []
        finally:
            remove_tool(http, toolbox_id, tool)


def test_a_first_deploy_that_did_not_verify_is_left_stopped_and_not_restarted(
    console: Console, sandbox: SandboxInfo, toolboxes: dict[str, dict[str, Any]]
) -> None:
    droplet = sandbox.droplet("toolbox-3")
    toolbox_id = toolboxes[droplet.name]["id"]
    tool = "never-up"
    with console.http() as http:
        try:
            deployed = http.post(
                f"/api/v1/toolboxes/{toolbox_id}/tools",
                json={"name": tool, "image": "dtma-tool-crashy:1.0", "env": {"CRASHY_LINES": "0"}},
            )
            assert deployed.status_code != 200, deployed.text
            body = deployed.json()
            assert body["success"] is False, body
            assert "did not verify" in body["error"] and "restart count" in body["error"], body
            assert body["data"]["tool_result"]["left_stopped"] is True, body
            assert managed_containers(droplet.container)[tool] == "exited"
            assert cycle(console, toolbox_id) == []  # no repair of what the deploy stopped
            assert managed_containers(droplet.container)[tool] == "exited"
            assert alerts(http, toolbox_id, f"tool_exited:{tool}") == []
        finally:
            remove_tool(http, toolbox_id, tool)


def test_tool_exited_behind_the_back_is_restarted_unless_recovery_is_off(
    console: Console,
    sandbox: SandboxInfo,
    toolboxes: dict[str, dict[str, Any]],
    settings_of: Any,
) -> None:
    droplet = sandbox.droplet("toolbox-3")
    toolbox_id = toolboxes[droplet.name]["id"]
    tool, check = "stopped-by-hand", "tool_exited:stopped-by-hand"
    with console.http() as http:
        deploy_tool(http, toolbox_id, tool, "dtma-tool-echo:1.0")
        try:
            settings_of(toolbox_id, recovery_enabled=False)
            docker_on(droplet.container, "docker", "stop", tool)
            assert cycle(console, toolbox_id) == []
            [alert] = alerts(http, toolbox_id, check)
            assert alert["state"] == "open" and alert["recovery"] == "off"
            assert managed_containers(droplet.container)[tool] == "exited"

            settings_of(toolbox_id, recovery_enabled=None)  # back to the default: on
            started = cycle(console, toolbox_id)
            assert len(started) == 1
            assert managed_containers(droplet.container)[tool] == "running"
            [alert] = alerts(http, toolbox_id, check)
            assert alert["state"] == "resolved" and alert["recovery"] == "succeeded"
        finally:
            remove_tool(http, toolbox_id, tool)


def test_a_threshold_low_enough_to_trip_on_real_metrics_opens_an_alert_that_resolves(
    console: Console,
    toolboxes: dict[str, dict[str, Any]],
    webhook_receiver: WebhookReceiver,
    settings_of: Any,
) -> None:
    toolbox_id = toolboxes["toolbox-2"]["id"]
    # Any droplet uses more than 0.5 % of its memory.
    settings_of(toolbox_id, memory_threshold=0.5, threshold_checks=1)
    with console.http() as http:
        assert cycle(console, toolbox_id) == []  # a warning: nothing to repair
        memory = check_of(http, toolbox_id, "memory")
        assert memory["state"] == "failing" and memory["threshold"] == 0.5
        assert memory["value"] > 0.5
        health = http.get(f"/api/v1/toolboxes/{toolbox_id}/health").json()
        assert health["verdict"] == "degraded"
        [alert] = [a for a in alerts(http, toolbox_id, "memory") if a["state"] == "open"]
        assert alert["severity"] == "warning" and alert["recovery"] == "none"
        assert alert["value"] == memory["value"]

        settings_of(toolbox_id, memory_threshold=None, threshold_checks=None)
        cycle(console, toolbox_id)
        assert check_of(http, toolbox_id, "memory")["state"] == "ok"
        resolved = http.get(f"/api/v1/alerts/{alert['id']}").json()
        assert resolved["state"] == "resolved" and resolved["resolved_at"]
    assert webhook_receiver.events_for(alert["id"]) == ["opened", "resolved"]


def test_a_tool_docker_keeps_restarting_is_reported_as_a_restart_loop_not_repaired(
    console: Console, sandbox: SandboxInfo, toolboxes: dict[str, dict[str, Any]]
) -> None:
    droplet = sandbox.droplet("toolbox-3")
    toolbox_id = toolboxes[droplet.name]["id"]
    tool, check = "loopy", "tool_restart_loop:loopy"

    def restarts() -> int:
        counted = docker_on(droplet.container, "docker", "inspect", "-f", "{{.RestartCount}}", tool)
        return int(counted.strip())

    docker_on(droplet.container, "docker", "rm", "-f", tool, check=False)
    docker_on(
        droplet.container, "docker", "run", "-d", "--name", tool, "--restart", "unless-stopped",
        "-e", "CRASHY_LINES=0", "--label", "dtma.managed=true", "--label", f"dtma.instance={tool}",
        "dtma-tool-crashy:1.0",
    )  # fmt: skip
    with console.http() as http:
        try:
            assert cycle(console, toolbox_id) == []
            seen = restarts()
            wait_until(lambda: restarts() >= seen + 3, 60, "Docker to restart the tool 3 times")
            assert cycle(console, toolbox_id) == []  # reported, not repaired
            state = check_of(http, toolbox_id, check)
            assert state["state"] == "failing" and state["value"] >= 3, state
            [alert] = [a for a in alerts(http, toolbox_id, check) if a["state"] == "open"]
            assert alert["severity"] == "warning" and alert["recovery"] == "none"
        finally:
            docker_on(droplet.container, "docker", "rm", "-f", tool)
        cycle(console, toolbox_id)
        assert all(a["state"] == "resolved" for a in alerts(http, toolbox_id, check))
