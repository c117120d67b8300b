"""A deploy with a health check, a settle time and limits, through the API on the sandbox:
the container on the droplet carries exactly what was asked (`docker inspect`), is healthy,
and a check that never passes makes the deploy fail."""

from __future__ import annotations

from typing import Any

import pytest

from sandbox.fleet import SandboxInfo
from tests.api.console import Console, inspect_tool, remove_tool

pytestmark = pytest.mark.sandbox

HEALTHY = {
    "name": "hc-echo",
    "image": "dtma-tool-echo:1.0",
    "ports": [{"host_port": 18280, "container_port": 8080}],
    "env": {"HC_SECRET": "hc-secret-value-never-shown"},
    "memory": "64m",
    "cpus": 0.5,
    "settle_seconds": 2,
    "healthcheck": {
        "test": ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/"],
        "interval_seconds": 1,
        "timeout_seconds": 2,
        "retries": 2,
        "start_period_seconds": 1,
    },
}
SECOND = 1_000_000_000  # Docker keeps durations in nanoseconds


def test_a_health_checked_deploy_through_the_api_runs_what_was_asked(
    console: Console, sandbox: SandboxInfo, toolboxes: dict[str, dict[str, Any]]
) -> None:
    container = sandbox.droplet("toolbox-2").container
    base = f"/api/v1/toolboxes/{toolboxes['toolbox-2']['id']}/tools"
    with console.http() as http:
        try:
            deployed = http.post(base, json=HEALTHY)
            result = deployed.json()
            assert deployed.status_code == 200 and result["success"] is True, result
            state = inspect_tool(container, "hc-echo")
            assert state is not None
            assert state["State"]["Status"] == "running"
            assert state["State"]["Health"]["Status"] == "healthy"
            check = state["Config"]["Healthcheck"]
            assert check["Test"] == HEALTHY["healthcheck"]["test"]
            assert (check["Interval"], check["Timeout"], check["StartPeriod"]) == (
                1 * SECOND,
                2 * SECOND,
                1 * SECOND,
            )
            assert check["Retries"] == 2
            assert state["Config"]["Labels"]["dtma.settle_seconds"] == "2"
            assert state["HostConfig"]["Memory"] == 64 * 1024 * 1024
            assert state["HostConfig"]["NanoCpus"] == SECOND // 2

            # What the console stored and shows: every option, never an env value.
            run = http.get(f"/api/v1/runs/{result['run_id']}").json()
            shown = str(run["request"])
            assert "hc-secret-value-never-shown" not in shown
            assert "interval_seconds" in shown and "settle_seconds" in shown
        finally:
            remove_tool(container, "hc-echo")


def test_a_health_check_that_never_passes_fails_the_deploy(
    console: Console, sandbox: SandboxInfo, toolboxes: dict[str, dict[str, Any]]
) -> None:
    container = sandbox.droplet("toolbox-2").container
    base = f"/api/v1/toolboxes/{toolboxes['toolbox-2']['id']}/tools"
    failing = {
        "name": "hc-never",
        "image": "dtma-tool-echo:1.0",
        "settle_seconds": 0,
        "healthcheck": {
            # Nothing listens on port 9 inside the container.
            "test": ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:9/"],
            "interval_seconds": 1,
            "timeout_seconds": 1,
            "retries": 1,
        },
    }
    with console.http() as http:
        try:
            response = http.post(base, json=failing)
            result = response.json()
            assert response.status_code >= 400, result
            assert result["success"] is False, result
            assert "health" in result["error"], result["error"]
            state = inspect_tool(container, "hc-never")
            health = ((state or {}).get("State") or {}).get("Health") or {}
            assert health.get("Status") != "healthy", state
        finally:
            remove_tool(container, "hc-never")
