"""Actions end to end over HTTP on the sandbox fleet, each checked on the droplet itself
(`docker exec`): the agent's restart and redeploy, the tool lifecycle, both compatibility
endpoints, the toolbox lock, events over SSE, cancel, and a console killed mid-run."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from sandbox.fleet import SandboxInfo
from tests.api.conftest import wait_for_run
from tests.api.console import Console, agent_pid, agent_tls, docker_exec, inspect_tool, wait_until

pytestmark = pytest.mark.sandbox

ECHO = {
    "name": "echo",
    "image": "dtma-tool-echo:1.0",
    "ports": [{"host_port": 18080, "container_port": 8080}],
    "env": {"ECHO_SECRET": "s3cr3t-value-that-must-not-leak"},
}


def tb(toolboxes: dict[str, dict[str, Any]], name: str) -> str:
    return str(toolboxes[name]["id"])


def test_sync_imported_exactly_the_tagged_droplets(
    console: Console, sandbox: SandboxInfo, toolboxes: dict[str, dict[str, Any]]
) -> None:
    expected = {(d.name, d.address, d.id) for d in sandbox.droplets}
    assert {(t["name"], t["address"], t["droplet_id"]) for t in toolboxes.values()} == expected


def test_status_and_system_come_from_the_agent_installed_by_the_console(
    console: Console, sandbox: SandboxInfo, toolboxes: dict[str, dict[str, Any]]
) -> None:
    droplet = sandbox.droplet("toolbox-1")
    health = httpx.get(
        f"https://{droplet.address}:30000/health", timeout=5, verify=agent_tls(droplet.container)
    ).json()
    with console.http() as http:
        status = http.get(f"/api/v1/toolboxes/{tb(toolboxes, 'toolbox-1')}/dtma/status").json()
        system = http.get(f"/api/v1/toolboxes/{tb(toolboxes, 'toolbox-1')}/dtma/system").json()
        detail = http.get(f"/api/v1/toolboxes/{tb(toolboxes, 'toolbox-1')}").json()
    assert (status["source"], status["stale"], status["errors"]) == ("agent", False, {})
    assert status["data"]["version"] == health["version"]
    assert status["data"]["started_at"] == health["started_at"]
    assert system["source"] == "agent"
    assert system["data"]["cpu"]["count"] == int(docker_exec(droplet.container, "nproc"))
    assert system["data"]["hostname"] == docker_exec(droplet.container, "hostname")
    assert (detail["status"], detail["agent_version"]) == ("up", health["version"])


def test_dtma_restart_runs_a_new_agent_process(
    console: Console, sandbox: SandboxInfo, toolboxes: dict[str, dict[str, Any]]
) -> None:
    container = sandbox.droplet("toolbox-1").container
    before = agent_pid(container)
    with console.http() as http:
        response = http.post(f"/api/v1/toolboxes/{tb(toolboxes, 'toolbox-1')}/dtma/restart")
    result = response.json()
    assert response.status_code == 200, result
    assert (result["status"], result["success"], result["action"]) == (
        "successful",
        True,
        "dtma.restart",
    )
    after = agent_pid(container)
    assert after not in (0, before)
    published = result["data"]["per_host"]["toolbox-1"]["dtma_result"]
    assert (published["pid_before"], published["pid_after"]) == (before, after)


def test_tool_lifecycle_through_api_v1_matches_the_droplet(
    console: Console, sandbox: SandboxInfo, toolboxes: dict[str, dict[str, Any]]
) -> None:
    container = sandbox.droplet("toolbox-1").container
    base = f"/api/v1/toolboxes/{tb(toolboxes, 'toolbox-1')}/tools"
    with console.http() as http:
        deployed = http.post(base, json=ECHO)
        assert deployed.status_code == 200, deployed.text
        state = inspect_tool(container, "echo")
        assert state is not None and state["State"]["Running"]
        assert state["Config"]["Image"] == "dtma-tool-echo:1.0"
        assert state["Config"]["Labels"]["dtma.managed"] == "true"
        page = docker_exec(
            container,
            "python3",
            "-c",
            "import urllib.request; print("
            "urllib.request.urlopen('http://127.0.0.1:18080/').read().decode())",
        )
        assert page

        listed = http.get(base).json()
        assert listed["source"] == "agent"
        assert "echo" in [c["name"] for c in listed["data"]["containers"]]
        logs = http.get(f"{base}/echo/logs", params={"tail": 20})
        assert logs.status_code == 200 and "url:/" in logs.text
        with http.stream("GET", f"{base}/echo/logs", params={"tail": 0, "follow": True}) as live:
            assert live.status_code == 200
            docker_exec(
                container,
                "python3",
                "-c",
                "import urllib.request; urllib.request."
                "urlopen('http://127.0.0.1:18080/followed-line')",
                check=False,  # a 404 is fine: the request's log line is what counts
            )
            seen = ""
            for chunk in live.iter_text():
                seen += chunk
                if "url:/followed-line" in seen:
                    break
        assert "url:/followed-line" in seen

        assert http.post(f"{base}/echo/stop").status_code == 200
        state = inspect_tool(container, "echo")
        assert state is not None and not state["State"]["Running"]
        instance = next(
            i
            for i in http.get(base.removesuffix("/tools")).json()["tool_instances"]
            if i["name"] == "echo"
        )
        assert instance["state"] == "exited"

        assert http.post(f"{base}/echo/start").status_code == 200
        started = inspect_tool(container, "echo")
        assert started is not None and started["State"]["Running"]

        restarted = http.post(f"{base}/echo/restart")
        assert restarted.status_code == 200 and restarted.json()["success"]
        after = inspect_tool(container, "echo")
        assert after is not None and after["State"]["StartedAt"] > started["State"]["StartedAt"]

        missing = http.post(f"{base}/no-such-tool/restart")
        assert missing.status_code == 404, missing.text  # the caller named nothing there
        result = missing.json()  # the run's ConsoleResult, not a bare error
        assert (result["success"], result["status"]) == (False, "failed")
        assert result["error_code"] == "tool_not_found"
        assert "not found" in result["error"] and result["run_id"]
        assert missing.headers["location"] == f"/api/v1/runs/{result['run_id']}"
        stored = http.get(f"/api/v1/runs/{result['run_id']}").json()
        assert stored["error_code"] == "tool_not_found"
        assert inspect_tool(container, "no-such-tool") is None

        assert http.delete(f"{base}/echo").status_code == 200
        assert inspect_tool(container, "echo") is None


def test_compat_tool_actions_each_do_what_they_say(
    console: Console, sandbox: SandboxInfo, toolboxes: dict[str, dict[str, Any]]
) -> None:
    container = sandbox.droplet("toolbox-2").container
    toolbox_id = tb(toolboxes, "toolbox-2")

    def act(action: str, instance: str | None = "echo") -> httpx.Response:
        return http.post(
            "/functions/v1/toolbox-tools",
            json={"toolboxId": toolbox_id, "action": action, "instanceId": instance},
        )

    with console.http() as http:
        assert http.post(f"/api/v1/toolboxes/{toolbox_id}/tools", json=ECHO).status_code == 200
        listed = act("list", None)
        assert listed.status_code == 200 and listed.json()["success"] is True
        assert "echo" in [c["name"] for c in listed.json()["data"]["data"]["containers"]]
        assert "timestamp" in listed.json()

        logs = act("logs")
        assert logs.status_code == 200 and "serving" in logs.json()["data"]["logs"]

        stopped = act("stop")
        assert stopped.status_code == 200 and stopped.json()["success"] is True
        assert not inspect_tool(container, "echo")["State"]["Running"]  # type: ignore[index]

        assert act("start").json()["success"] is True
        running = inspect_tool(container, "echo")
        assert running is not None and running["State"]["Running"]

        assert act("restart").json()["success"] is True
        moved = inspect_tool(container, "echo")
        assert moved is not None and moved["State"]["StartedAt"] > running["State"]["StartedAt"]

        deleted = act("delete")
        assert deleted.status_code == 200 and deleted.json()["success"] is True
        assert inspect_tool(container, "echo") is None

        failed = act("stop")  # it is gone now: a real failure, with the role's reason
        assert failed.status_code == 500
        assert failed.json()["success"] is False and "not found" in failed.json()["error"]
        assert failed.json()["code"] == "tool_not_found"
        assert act("explode").status_code == 400


def test_compat_dtma_status_system_restart(
    console: Console, sandbox: SandboxInfo, toolboxes: dict[str, dict[str, Any]]
) -> None:
    container = sandbox.droplet("toolbox-2").container
    toolbox_id = tb(toolboxes, "toolbox-2")
    with console.http() as http:

        def act(action: str) -> httpx.Response:
            return http.post(
                "/functions/v1/toolbox-dtma-console",
                json={"toolboxId": toolbox_id, "action": action},
            )

        status = act("status").json()
        assert status["success"] is True and status["data"]["source"] == "agent"
        system = act("system").json()
        assert system["success"] is True and system["data"]["data"]["memory"]["total_bytes"] > 0
        before = agent_pid(container)
        restarted = act("restart")
        assert restarted.status_code == 200 and restarted.json()["success"] is True
        assert agent_pid(container) not in (0, before)


def test_redeploy_through_api_v1_and_compat_at_once(
    console: Console, sandbox: SandboxInfo, toolboxes: dict[str, dict[str, Any]]
) -> None:
    """Two toolboxes redeploy in parallel (runs on different toolboxes do not wait)."""
    containers = {n: sandbox.droplet(n).container for n in ("toolbox-2", "toolbox-3")}
    before = {n: agent_pid(c) for n, c in containers.items()}
    answers: dict[str, httpx.Response] = {}
    with console.http() as http:

        def compat() -> None:
            answers["compat"] = http.post(
                "/functions/v1/toolbox-dtma-console",
                json={"toolboxId": tb(toolboxes, "toolbox-2"), "action": "redeploy"},
            )

        worker = threading.Thread(target=compat)
        worker.start()
        v1 = http.post(f"/api/v1/toolboxes/{tb(toolboxes, 'toolbox-3')}/dtma/redeploy", json={})
        worker.join()
    assert v1.status_code == 200, v1.text
    assert answers["compat"].status_code == 200, answers["compat"].text
    for name, container in containers.items():
        assert agent_pid(container) not in (0, before[name])
        droplet = sandbox.droplet(name)
        health = httpx.get(
            f"https://{droplet.address}:30000/health", verify=agent_tls(droplet.container)
        ).json()
        assert health["status"] == "ok"
    published = v1.json()["data"]["per_host"]["toolbox-3"]["dtma_result"]
    assert published["healthy"] is True and published["rolled_back"] is False


def test_a_busy_toolbox_answers_409_naming_the_run_and_events_resume(
    console: Console, toolboxes: dict[str, dict[str, Any]]
) -> None:
    toolbox_id = tb(toolboxes, "toolbox-3")
    with console.http() as http:
        first = http.post(f"/api/v1/toolboxes/{toolbox_id}/dtma/restart", params={"wait": False})
        assert first.status_code == 202
        run_id = first.json()["run_id"]
        assert first.headers["location"] == f"/api/v1/runs/{run_id}"
        busy = http.post(f"/api/v1/toolboxes/{toolbox_id}/tools/echo/restart")
        assert busy.status_code == 409
        assert busy.json()["error"]["code"] == "toolbox_busy"
        assert busy.json()["error"]["run_id"] == run_id
        compat = http.post(
            "/functions/v1/toolbox-dtma-console",
            json={"toolboxId": toolbox_id, "action": "restart"},
        )
        assert compat.status_code == 409 and run_id in compat.json()["error"]

        live = read_sse(http, f"/api/v1/runs/{run_id}/events")
        run = wait_for_run(http, run_id)
        assert run["status"] == "successful"
        events = [e for e in live if e["event"] == "message"]
        seqs = [int(e["id"]) for e in events]
        assert seqs == list(range(1, len(seqs) + 1))
        assert json.loads(events[-1]["data"])["type"] == "run_end"
        assert json.loads(live[-1]["data"])["status"] == "successful"

        resumed = read_sse(
            http, f"/api/v1/runs/{run_id}/events", headers={"Last-Event-ID": str(seqs[4])}
        )
        resumed_ids = [int(e["id"]) for e in resumed if e["event"] == "message"]
        assert resumed_ids == seqs[5:]

        stored = {
            r["id"] for r in http.get("/api/v1/runs", params={"toolbox_id": toolbox_id}).json()
        }
        assert run_id in stored
        assert http.get(f"/api/v1/runs/{run_id}").json()["result"]["run_id"] == run_id


def read_sse(
    http: httpx.Client, url: str, headers: dict[str, str] | None = None
) -> list[dict[str, str]]:
    """Every SSE message until the stream ends: [{event, id, data}]."""
    messages: list[dict[str, str]] = []
    current: dict[str, str] = {"event": "message"}
    with http.stream("GET", url, headers=headers) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if not line:
                if "data" in current:
                    messages.append(current)
                current = {"event": "message"}
                continue
            key, _, value = line.partition(": ")
            if key in ("event", "id", "data"):
                current[key] = value
    return messages


def test_cancel_stops_the_run_and_frees_the_toolbox(
    console: Console, toolboxes: dict[str, dict[str, Any]]
) -> None:
    toolbox_id = tb(toolboxes, "toolbox-3")
    with console.http() as http:
        started = http.post(f"/api/v1/toolboxes/{toolbox_id}/dtma/restart", params={"wait": False})
        run_id = started.json()["run_id"]
        wait_until(
            lambda: any(_run_marker(p) == run_id for p in psutil.process_iter()),
            30,
            "ansible to start",
        )
        canceled = http.post(f"/api/v1/runs/{run_id}/cancel")
        assert canceled.status_code == 200, canceled.text
        assert canceled.json()["status"] == "canceled"
        assert not [p for p in psutil.process_iter() if _run_marker(p) == run_id]
        again = http.post(f"/api/v1/runs/{run_id}/cancel")
        assert again.status_code == 409
        assert http.get(f"/api/v1/toolboxes/{toolbox_id}").json()["active_run_id"] is None
        assert http.get(f"/api/v1/toolboxes/{toolbox_id}/dtma/status").json()["source"] == "agent"


def _run_marker(process: psutil.Process) -> str | None:
    try:
        return process.environ().get("DTMA_RUN_ID")
    except psutil.Error:
        return None


def test_a_console_killed_mid_run_marks_the_run_interrupted_on_restart(
    console: Console, toolboxes: dict[str, dict[str, Any]]
) -> None:
    toolbox_id = tb(toolboxes, "toolbox-1")
    with console.http() as http:
        started = http.post(f"/api/v1/toolboxes/{toolbox_id}/dtma/restart", params={"wait": False})
        run_id = started.json()["run_id"]
        wait_until(
            lambda: any(_run_marker(p) == run_id for p in psutil.process_iter()),
            30,
            "ansible to start",
        )
    console.kill()
    # The cut-short run's private data dir (ansible-runner's raw event files) is left...
    run_dir = Path(console.env["DTMA_RUNS_DIR"]) / run_id
    assert run_dir.is_dir()
    console.start()
    with console.http() as http:
        run = http.get(f"/api/v1/runs/{run_id}").json()
        assert run["status"] == "interrupted"
        assert run["success"] is False and "unknown" in run["error"]
        assert not [p for p in psutil.process_iter() if _run_marker(p) == run_id]
        assert http.get(f"/api/v1/toolboxes/{toolbox_id}").json()["active_run_id"] is None
    assert not run_dir.exists()  # ...until the restarted console's recovery removed it
