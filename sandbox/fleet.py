"""The sandbox fleet as a whole: bring it up, describe it, tear it down.

`up` talks to the emulator's HTTP API exactly as a console or operator would talk to
DigitalOcean (register the operator key, create tagged droplets), then waits until every
droplet accepts an SSH login.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from sandbox import droplets, image
from sandbox.config import PROJECT_ROOT, SandboxConfig

TAG = "dtma"
DEFAULT_REGION = "fra1"
DEFAULT_SIZE = "s-1vcpu-1gb"
BOOT_TIMEOUT = 180.0


class SandboxError(RuntimeError):
    """The sandbox could not be brought up or read."""


@dataclass(frozen=True)
class Droplet:
    id: int
    name: str
    address: str
    container: str
    status: str


@dataclass(frozen=True)
class SandboxInfo:
    inventory: Path
    droplets: list[Droplet]
    api_url: str
    api_token: str
    operator_key: Path
    known_hosts: Path
    state_dir: Path

    def droplet(self, name: str) -> Droplet:
        for candidate in self.droplets:
            if candidate.name == name:
                return candidate
        raise KeyError(name)


class EmulatorClient:
    """Minimal DigitalOcean API client for the sandbox's own use."""

    def __init__(self, config: SandboxConfig, token: str) -> None:
        self._http = httpx.Client(
            base_url=config.api_url, headers={"Authorization": f"Bearer {token}"}, timeout=30
        )

    def alive(self) -> bool:
        try:
            return self._http.get("/account").status_code == 200
        except httpx.HTTPError:
            return False

    def droplets(self, tag: str | None = TAG) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        url: str | None = "/droplets?per_page=200" + (f"&tag_name={tag}" if tag else "")
        while url:
            page = self._checked(self._http.get(url))
            found.extend(page["droplets"])
            url = page["links"]["pages"].get("next")
        return found

    def ensure_key(self, name: str, public_key: str) -> int:
        for key in self._checked(self._http.get("/account/keys"))["ssh_keys"]:
            if key["public_key"].split()[:2] == public_key.split()[:2]:
                return int(key["id"])
        created = self._http.post("/account/keys", json={"name": name, "public_key": public_key})
        return int(self._checked(created)["ssh_key"]["id"])

    def create_droplet(self, name: str, key_id: int) -> dict[str, Any]:
        body = {
            "name": name,
            "region": DEFAULT_REGION,
            "size": DEFAULT_SIZE,
            "image": "docker-20-04",
            "ssh_keys": [key_id],
            "tags": [TAG],
        }
        return self._checked(self._http.post("/droplets", json=body))["droplet"]

    def delete_droplet(self, droplet_id: int) -> None:
        response = self._http.delete(f"/droplets/{droplet_id}")
        if response.status_code not in (204, 404):
            self._checked(response)

    @staticmethod
    def _checked(response: httpx.Response) -> Any:
        if response.status_code >= 400:
            raise SandboxError(
                f"DigitalOcean emulator answered {response.status_code}: {response.text}"
            )
        return response.json()


def public_address(droplet: dict[str, Any]) -> str:
    return next(n["ip_address"] for n in droplet["networks"]["v4"] if n["type"] == "public")


# -- state files ---------------------------------------------------------------------------
def _ensure_state(config: SandboxConfig) -> str:
    config.state_dir.mkdir(parents=True, exist_ok=True)
    config.state_dir.chmod(0o700)
    if not config.operator_key.exists():
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "dtma-sandbox-operator",
             "-f", str(config.operator_key)],
            check=True,
        )  # fmt: skip
    if not config.token_file.exists():
        config.token_file.write_text(secrets.token_hex(32))
        config.token_file.chmod(0o600)
    return config.token_file.read_text().strip()


def _emulator_pid(config: SandboxConfig) -> int | None:
    try:
        pid = int(config.pid_file.read_text())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def _start_emulator(config: SandboxConfig, client: EmulatorClient, droplet_image: str) -> None:
    if _emulator_pid(config) and client.alive():
        return
    log = config.log_file.open("ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "sandbox.emulator", droplet_image],
        cwd=PROJECT_ROOT,
        env={**os.environ, **config.environment()},
        stdout=log,
        stderr=log,
        start_new_session=True,
    )
    config.pid_file.write_text(str(process.pid))
    deadline = time.monotonic() + 15
    while not client.alive():
        if process.poll() is not None or time.monotonic() > deadline:
            raise SandboxError(f"the DigitalOcean emulator did not start; see {config.log_file}")
        time.sleep(0.1)


def _stop_emulator(config: SandboxConfig) -> None:
    pid = _emulator_pid(config)
    if pid is not None:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except OSError:
                break
            time.sleep(0.05)
        else:
            os.kill(pid, signal.SIGKILL)
    config.pid_file.unlink(missing_ok=True)


# -- ssh -----------------------------------------------------------------------------------
def ssh_command(config: SandboxConfig, address: str, *command: str) -> list[str]:
    return [
        "ssh", "-i", str(config.operator_key), "-o", "BatchMode=yes",
        "-o", "IdentitiesOnly=yes", "-o", "ConnectTimeout=5",
        "-o", f"UserKnownHostsFile={config.known_hosts}",
        "-o", "StrictHostKeyChecking=accept-new", f"root@{address}", *command,
    ]  # fmt: skip


def _wait_for_login(config: SandboxConfig, address: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        login = subprocess.run(
            ssh_command(config, address, "systemctl", "is-system-running", "--wait"),
            capture_output=True,
            text=True,
        )
        if login.stdout.strip() in ("running", "degraded"):
            return
        last = (login.stderr or login.stdout).strip()
        time.sleep(0.5)
    raise SandboxError(f"droplet at {address} did not accept an SSH login: {last}")


# -- inventory -----------------------------------------------------------------------------
def write_inventory(config: SandboxConfig, token: str) -> Path:
    """The project's inventory/digitalocean.yml, pointed at the emulator."""
    plugin_options = yaml.safe_load((PROJECT_ROOT / "inventory" / "digitalocean.yml").read_text())
    plugin_options |= {"baseurl": config.api_url, "oauth_token": token, "cache": False}
    group_vars = config.inventory_dir / "group_vars" / "all"
    group_vars.mkdir(parents=True, exist_ok=True)
    for shared in (PROJECT_ROOT / "inventory" / "group_vars" / "all").glob("*.yml"):
        (group_vars / shared.name).write_text(shared.read_text())
    sandbox_vars = {
        "ansible_ssh_private_key_file": str(config.operator_key),
        "ansible_ssh_common_args": (
            f"-o UserKnownHostsFile={config.known_hosts} -o StrictHostKeyChecking=accept-new"
        ),
    }
    (group_vars / "sandbox.yml").write_text(
        "# Written by `dtma-console sandbox up`: how the controller reaches sandbox droplets.\n"
        + yaml.safe_dump(sandbox_vars, sort_keys=True)
    )
    config.inventory_file.write_text(
        "# Written by `dtma-console sandbox up`: inventory/digitalocean.yml, aimed at the\n"
        "# sandbox emulator.\n" + yaml.safe_dump(plugin_options, sort_keys=False)
    )
    config.inventory_file.chmod(0o600)
    return config.inventory_file


# -- the fleet -----------------------------------------------------------------------------
def up(config: SandboxConfig, count: int = 3) -> SandboxInfo:
    """Idempotent: afterwards exactly toolbox-1..count exist (at least), all reachable."""
    from sandbox import tools  # tool images are the tool_instance role's business

    token = _ensure_state(config)
    droplet_image = image.ensure_image()
    tools.ensure_tool_images()
    client = EmulatorClient(config, token)
    _start_emulator(config, client, droplet_image)
    public_key = config.operator_key.with_suffix(".pub").read_text()
    key_id = client.ensure_key("dtma-sandbox-operator", public_key)

    existing = {d["name"]: d for d in client.droplets()}
    for droplet in existing.values():
        droplets.ensure_running(config.container(droplet["name"]))
    for number in range(1, count + 1):
        name = f"toolbox-{number}"
        if name not in existing:
            client.create_droplet(name, key_id)
    current = client.droplets()
    for droplet in current:
        _wait_for_login(config, public_address(droplet), BOOT_TIMEOUT)
    for droplet in current:
        tools.load_tool_images(config.container(droplet["name"]))
    write_inventory(config, token)
    return info(config)


def info(config: SandboxConfig) -> SandboxInfo:
    if not config.token_file.exists():
        raise SandboxError("the sandbox is not up: run `dtma-console sandbox up` first")
    token = config.token_file.read_text().strip()
    client = EmulatorClient(config, token)
    if not client.alive():
        raise SandboxError("the sandbox emulator is not running: run `dtma-console sandbox up`")
    found = [
        Droplet(
            id=d["id"],
            name=d["name"],
            address=public_address(d),
            container=config.container(d["name"]),
            status=d["status"],
        )
        for d in client.droplets()
    ]
    return SandboxInfo(
        inventory=config.inventory_file,
        droplets=sorted(found, key=lambda d: d.address.split(".")[-1].zfill(3)),
        api_url=config.api_url,
        api_token=token,
        operator_key=config.operator_key,
        known_hosts=config.known_hosts,
        state_dir=config.state_dir,
    )


def status(config: SandboxConfig) -> dict[str, Any]:
    emulator_running = _emulator_pid(config) is not None
    report: dict[str, Any] = {
        "emulator": {"running": emulator_running, "url": config.api_url},
        "droplets": [],
    }
    if not emulator_running:
        report["containers"] = droplets.sandbox_containers(config)
        return report
    for droplet in info(config).droplets:
        report["droplets"].append(
            {
                "id": droplet.id,
                "name": droplet.name,
                "address": droplet.address,
                "status": droplet.status,
                "container": droplet.container,
                "container_state": droplets.container_state(droplet.container),
                "ssh": droplets.sshd_answers(droplet.address),
            }
        )
    return report


def down(config: SandboxConfig) -> list[str]:
    """Remove every droplet container and stop the emulator. Returns what was removed."""
    removed = droplets.sandbox_containers(config)
    for container in removed:
        droplets.remove_container(container)
    _stop_emulator(config)
    for stale in (config.state_file, config.known_hosts):
        stale.unlink(missing_ok=True)
    return removed
