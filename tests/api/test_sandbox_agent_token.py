"""Operators and the console share each agent's token: the README's operator commands on
console-managed toolboxes leave the console reading every agent, and the console's own
agent actions check the agent from the controller's side."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from sandbox.fleet import Droplet, SandboxInfo
from tests.api.conftest import OperatorReinstall
from tests.api.console import Console, agent_tls, agent_token, docker_exec, operator_install

pytestmark = pytest.mark.sandbox


def agent_status(token: str, droplet: Droplet) -> int:
    headers = {"Authorization": f"Bearer {token}"}
    url = f"https://{droplet.address}:30000/status"
    return httpx.get(
        url, headers=headers, timeout=5, verify=agent_tls(droplet.container)
    ).status_code


def test_the_console_reads_every_agent_after_an_operators_install(
    console: Console,
    sandbox: SandboxInfo,
    toolboxes: dict[str, dict[str, Any]],
    ansible_env: dict[str, str],
    operator_reinstall: OperatorReinstall,
) -> None:
    # The operator's install over every droplet (the session's one) kept every token.
    assert set(operator_reinstall.tokens_before) == {d.name for d in sandbox.droplets}
    assert operator_reinstall.tokens_after == operator_reinstall.tokens_before

    # An operator reinstalls one agent from scratch: the droplet gets a token of its own,
    # which the console learns over SSH on the agent's first 401.
    droplet = sandbox.droplet("toolbox-2")
    old = agent_token(droplet.container)
    docker_exec(droplet.container, "sh", "-c", "systemctl disable --now dtma; rm -rf /etc/dtma")
    operator_install(sandbox, ansible_env, "-l", droplet.name)
    fresh = agent_token(droplet.container)
    assert len(fresh) >= 40 and fresh != old
    assert agent_status(old, droplet) == 401

    with console.http() as http:
        for name, toolbox in toolboxes.items():
            status = http.get(f"/api/v1/toolboxes/{toolbox['id']}/dtma/status").json()
            assert (status["source"], status["errors"]) == ("agent", {}), (name, status)
        # The console's own actions use the learnt token too (redeploy writes the config).
        redeploy = http.post(f"/api/v1/toolboxes/{toolboxes[droplet.name]['id']}/dtma/redeploy")
        assert redeploy.status_code == 200, redeploy.text
        assert redeploy.json()["data"]["console_check"]["ok"] is True
    assert agent_token(droplet.container) == fresh
    console_log = console.log_path.read_text()
    assert fresh not in console_log and fresh not in "\n".join(console.seen_bodies)


def test_a_dtma_action_fails_when_the_console_cannot_read_the_agent(
    console: Console,
    sandbox: SandboxInfo,
    toolboxes: dict[str, dict[str, Any]],
    ansible_env: dict[str, str],
) -> None:
    """The agent answers on the droplet's loopback only: the role's own check passes, the
    console's read from the controller does not, and the run fails saying so."""
    droplet = sandbox.droplet("toolbox-3")
    operator_install(
        sandbox, ansible_env, "-l", droplet.name, "-e", "dtma_agent_listen_address=127.0.0.1"
    )
    try:
        with console.http() as http:
            response = http.post(f"/api/v1/toolboxes/{toolboxes[droplet.name]['id']}/dtma/restart")
        result = response.json()
        assert response.status_code == 502, result
        assert (result["status"], result["success"]) == ("failed", False)
        assert "did not verify from the console" in result["error"]
        assert f"https://{droplet.address}:30000/status" in result["error"]
        published = result["data"]["per_host"][droplet.name]["dtma_result"]
        assert published["healthy"] is True  # what the droplet saw of itself
        assert result["data"]["console_check"]["ok"] is False
    finally:
        operator_install(sandbox, ansible_env, "-l", droplet.name)
