"""Rotating an agent's token from the console: the new token is installed and verified on
the droplet, read back by the console (learnt over SSH and sealed), and the old one is
refused from then on; the token shows up nowhere."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from sandbox.fleet import Droplet, SandboxInfo
from tests.api.console import Console, agent_tls, docker_exec

pytestmark = pytest.mark.sandbox

READ_TOKEN = ("sed", "-n", "s/^DTMA_AGENT_TOKEN=//p", "/etc/dtma/dtma.env")


def agent_status(token: str, droplet: Droplet) -> int:
    headers = {"Authorization": f"Bearer {token}"}
    url = f"https://{droplet.address}:30000/status"
    return httpx.get(
        url, headers=headers, timeout=5, verify=agent_tls(droplet.container)
    ).status_code


def test_a_rotated_agent_token_replaces_the_old_one_everywhere(
    console: Console, sandbox: SandboxInfo, toolboxes: dict[str, dict[str, Any]]
) -> None:
    droplet = sandbox.droplet("toolbox-1")
    toolbox = toolboxes[droplet.name]
    old = docker_exec(droplet.container, *READ_TOKEN)
    assert agent_status(old, droplet) == 200
    with console.http() as http:
        rotated = http.post(f"/api/v1/toolboxes/{toolbox['id']}/dtma/token/rotate")
        assert rotated.status_code == 200, rotated.text
        result = rotated.json()
        status = http.get(f"/api/v1/toolboxes/{toolbox['id']}/dtma/status").json()
    new = docker_exec(droplet.container, *READ_TOKEN)
    assert result["success"] and result["data"]["console_check"]["ok"], result
    assert result["data"]["per_host"][droplet.name]["dtma_result"]["action"] == "rotate_token"
    assert len(new) >= 40 and new != old
    assert (agent_status(old, droplet), agent_status(new, droplet)) == (401, 200)
    assert (status["source"], status["errors"]) == ("agent", {}), status
    seen = console.log_path.read_text() + "\n".join(console.seen_bodies) + rotated.text
    assert new not in seen and old not in seen
