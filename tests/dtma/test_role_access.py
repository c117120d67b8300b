"""Who may reach the agent, as an operator sets it with the dtma role: the optional firewall
(dtma_agent_allowed_sources) and token rotation (playbooks/dtma_token_rotate.yml), each
checked from outside the playbook: from the host through the published port (the console's
path), from another droplet over the Docker network, and on the droplet itself. Named to run
after test_role.py, whose first test reads the session install's PIDs (a rotation restarts
an agent)."""

from __future__ import annotations

import subprocess

import httpx
import pytest

from sandbox.fleet import Droplet, SandboxInfo

from .conftest import PlaybookRun, RunPlaybook, agent_url, docker_exec, health, pinned, token_of

pytestmark = pytest.mark.sandbox

FIREWALL_FILE = "/etc/dtma/firewall.nft"


def inspect(droplet: Droplet, field: str) -> str:
    done = subprocess.run(
        ["docker", "inspect", "-f", "{{.NetworkSettings." + field + "}}", droplet.container],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def knock(source: Droplet, target: Droplet) -> str:
    """'open', 'refused' or 'dropped': a TCP connect from `source` to the agent port of
    `target` over the Docker network (what another machine on the droplet's network does)."""
    probe = (
        "import socket\n"
        "try:\n"
        f"    socket.create_connection(({inspect(target, 'IPAddress')!r}, 30000), 3)\n"
        "    print('open')\n"
        "except ConnectionRefusedError:\n"
        "    print('refused')\n"
        "except TimeoutError:\n"
        "    print('dropped')\n"
    )
    return docker_exec(source, f'python3 -c "{probe}"')


def test_the_agent_firewall_admits_only_the_listed_sources_and_can_be_lifted(
    installed: PlaybookRun, fresh_fleet: SandboxInfo, run_playbook: RunPlaybook
) -> None:
    target, other = fresh_fleet.droplets[2], fresh_fleet.droplets[0]
    assert knock(other, target) == "open"
    # What the console's connections come from: Docker's proxy for the published port.
    console_side = inspect(target, "Gateway")
    limited = run_playbook(
        "dtma_install.yml", limit=target.name, dtma_agent_allowed_sources=[f"{console_side}/32"]
    )
    assert limited.rc == 0, limited.failures()
    assert health(target) is not None  # the console's path: the published port
    assert knock(other, target) == "dropped"
    assert docker_exec(target, "systemctl is-enabled dtma-firewall.service") == "enabled"
    assert console_side in docker_exec(target, "nft list table inet dtma_agent")

    # A run that does not mention the firewall (the console's install) keeps it.
    rules = docker_exec(target, f"sha256sum {FIREWALL_FILE}")
    again = run_playbook("dtma_install.yml", limit=target.name)
    assert again.rc == 0, again.failures()
    assert again.stats[target.name]["changed"] == 0
    assert knock(other, target) == "dropped"

    # A bad source is refused before anything changes, saying what is wrong.
    bad = run_playbook(
        "dtma_install.yml", limit=target.name, dtma_agent_allowed_sources=["10.1.2.3/8"]
    )
    assert bad.rc != 0
    assert any("did you mean 10.0.0.0/8" in failure for failure in bad.failures()), bad.failures()
    assert docker_exec(target, f"sha256sum {FIREWALL_FILE}") == rules
    assert knock(other, target) == "dropped"

    lifted = run_playbook("dtma_install.yml", limit=target.name, dtma_agent_allowed_sources=[])
    assert lifted.rc == 0, lifted.failures()
    assert knock(other, target) == "open"
    assert health(target) is not None
    assert "dtma_agent" not in docker_exec(target, "nft list tables")


def test_an_operator_rotates_the_agent_token_and_the_old_one_is_refused(
    installed: PlaybookRun, fresh_fleet: SandboxInfo, run_playbook: RunPlaybook
) -> None:
    droplet = fresh_fleet.droplets[0]
    old = token_of(droplet)
    url = agent_url(droplet, "/status")

    def answers(token: str) -> int:
        headers = {"Authorization": f"Bearer {token}"}
        return httpx.get(url, headers=headers, verify=pinned(droplet)).status_code

    refused = run_playbook("dtma_token_rotate.yml", limit=droplet.name, dtma_agent_token="short")
    assert refused.rc != 0 and token_of(droplet) == old

    rotated = run_playbook("dtma_token_rotate.yml", limit=droplet.name)
    assert rotated.rc == 0, rotated.failures()
    new = token_of(droplet)
    assert rotated.results[droplet.name]["action"] == "rotate_token"
    assert rotated.results[droplet.name]["healthy"] is True
    assert len(new) >= 40 and new != old
    assert (answers(new), answers(old)) == (200, 401)
    assert new not in rotated.output and old not in rotated.output
