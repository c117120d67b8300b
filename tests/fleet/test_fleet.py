"""The sandbox fleet against the real inventory plugin, SSH and Docker."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import httpx
import pytest
import yaml

from sandbox import droplets, fleet
from sandbox.config import PROJECT_ROOT, SandboxConfig

pytestmark = pytest.mark.sandbox


def _inventory(inventory: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(PROJECT_ROOT / ".venv/bin/ansible-inventory"), "-i", str(inventory), "--list"],
        capture_output=True, text=True, env=env, cwd=PROJECT_ROOT, timeout=120,
    )  # fmt: skip


def _hosts(inventory: Path, env: dict[str, str]) -> dict[str, str]:
    listed = _inventory(inventory, env)
    assert listed.returncode == 0, listed.stderr
    hostvars = json.loads(listed.stdout)["_meta"]["hostvars"]
    hosts = {}
    for name, variables in hostvars.items():
        address = variables["ansible_host"]
        # Composed variables come out of ansible-inventory wrapped as unsafe text.
        hosts[name] = address["__ansible_unsafe"] if isinstance(address, dict) else address
    return hosts


def _variant(sandbox: fleet.SandboxInfo, tmp_path: Path, **overrides: object) -> Path:
    """A copy of the sandbox inventory with some plugin options changed."""
    options = yaml.safe_load(sandbox.inventory.read_text()) | overrides
    (tmp_path / "group_vars").symlink_to(sandbox.inventory.parent / "group_vars")
    variant = tmp_path / "digitalocean.yml"
    variant.write_text(yaml.safe_dump(options))
    return variant


def test_inventory_lists_exactly_the_tagged_droplets(
    sandbox: fleet.SandboxInfo, sandbox_config: SandboxConfig, ansible_env: dict[str, str]
) -> None:
    hosts = _hosts(sandbox.inventory, ansible_env)
    for number in (1, 2, 3):
        assert hosts[f"toolbox-{number}"] == f"{sandbox_config.net}.{number}"
    expected = {d.name: d.address for d in sandbox.droplets}
    assert hosts == expected


def test_plugin_follows_pagination_with_one_droplet_per_page(
    sandbox: fleet.SandboxInfo, ansible_env: dict[str, str], tmp_path: Path
) -> None:
    paged = _variant(sandbox, tmp_path, pagination=1)
    assert _hosts(paged, ansible_env) == {d.name: d.address for d in sandbox.droplets}


def test_wrong_token_makes_the_inventory_fail_clearly(
    sandbox: fleet.SandboxInfo, ansible_env: dict[str, str], tmp_path: Path
) -> None:
    wrong = _variant(sandbox, tmp_path, oauth_token="not-the-token")
    listed = _inventory(wrong, ansible_env)
    assert listed.returncode != 0
    assert "401" in listed.stderr and "Unauthorized" in listed.stderr


def test_ansible_ping_answers_from_every_droplet(
    sandbox: fleet.SandboxInfo, ansible_env: dict[str, str]
) -> None:
    pinged = subprocess.run(
        [str(PROJECT_ROOT / ".venv/bin/ansible"), "all", "-i", str(sandbox.inventory),
         "-m", "ansible.builtin.ping"],
        capture_output=True, text=True, env=ansible_env, cwd=PROJECT_ROOT, timeout=180,
    )  # fmt: skip
    assert pinged.returncode == 0, pinged.stdout + pinged.stderr
    for droplet in sandbox.droplets:
        assert f"{droplet.name} | SUCCESS" in pinged.stdout
    assert pinged.stdout.count("ping: pong") == len(sandbox.droplets)


def test_droplets_look_like_docker_droplets(sandbox: fleet.SandboxInfo) -> None:
    droplet = sandbox.droplet("toolbox-1")
    probe = subprocess.run(
        ["docker", "exec", droplet.container, "sh", "-c",
         "ps -p 1 -o comm= && systemctl is-active ssh docker && python3 --version"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert probe.stdout.split()[:3] == ["systemd", "active", "active"], probe.stdout
    assert "Python 3" in probe.stdout


def test_a_droplet_created_through_the_api_appears_and_a_deleted_one_disappears(
    sandbox: fleet.SandboxInfo, sandbox_config: SandboxConfig, ansible_env: dict[str, str]
) -> None:
    client = fleet.EmulatorClient(sandbox_config, sandbox.api_token)
    public_key = sandbox.operator_key.with_suffix(".pub").read_text()
    key_id = client.ensure_key("ops", public_key)
    created = client.create_droplet("probe-api", key_id)
    try:
        assert created["status"] == "new"
        address = fleet.public_address(created)
        assert _hosts(sandbox.inventory, ansible_env)["probe-api"] == address
        droplets.wait_for_sshd(address, 120)
        login = subprocess.run(
            fleet.ssh_command(sandbox_config, address, "hostname"),
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert login.stdout.strip() == "probe-api", login.stderr
    finally:
        client.delete_droplet(created["id"])
    assert "probe-api" not in _hosts(sandbox.inventory, ansible_env)
    assert droplets.container_state(sandbox_config.container("probe-api")) == "missing"
    gone = httpx.get(
        f"{sandbox.api_url}/droplets/{created['id']}",
        headers={"Authorization": f"Bearer {sandbox.api_token}"},
    )
    assert gone.status_code == 404


def test_sandbox_up_twice_creates_no_duplicates(
    sandbox: fleet.SandboxInfo, sandbox_config: SandboxConfig
) -> None:
    again = fleet.up(sandbox_config, len(sandbox.droplets))
    assert [d.id for d in again.droplets] == [d.id for d in sandbox.droplets]
    assert sorted(droplets.sandbox_containers(sandbox_config)) == sorted(
        d.container for d in sandbox.droplets
    )


def test_down_leaves_no_container_or_emulator_behind(tmp_path: Path) -> None:
    """An isolated one-droplet sandbox of its own, so the shared fleet stays up."""
    config = SandboxConfig(
        state_dir=tmp_path / "sb", net="127.0.18", api_port=8098, prefix="downtest-"
    )
    try:
        up = fleet.up(config, 1)
        assert len(up.droplets) == 1
        pid = int(config.pid_file.read_text())
        removed = fleet.down(config)
        assert removed == ["downtest-toolbox-1"]
        assert droplets.sandbox_containers(config) == []
        assert droplets.container_state("downtest-toolbox-1") == "missing"
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
        assert not droplets.sshd_answers("127.0.18.1")
    finally:
        fleet.down(config)
