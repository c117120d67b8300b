"""Droplet containers: start, stop and remove the Docker containers that play droplets.

A droplet container boots systemd, runs sshd and its own Docker engine, and publishes
ports 22 and 30000 on the droplet's own loopback address.
"""

from __future__ import annotations

import socket
import subprocess
import time

from sandbox.config import SandboxConfig

PUBLISHED_PORTS = (22, 30000)
SANDBOX_LABEL = "dtma.sandbox"

# What a systemd + dockerd container needs here; --privileged fails in this environment.
RUN_OPTIONS = [
    "--cap-add", "SYS_ADMIN",
    "--cap-add", "NET_ADMIN",
    "--security-opt", "seccomp=unconfined",
    "--security-opt", "apparmor=unconfined",
    "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw",
    "--tmpfs", "/run",
    "--tmpfs", "/run/lock",
    "--stop-signal", "SIGRTMIN+3",
]  # fmt: skip


class DropletError(RuntimeError):
    """A droplet container could not be created or reached."""


def _docker(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], input=stdin, capture_output=True, text=True)


def start_container(
    config: SandboxConfig, name: str, address: str, image: str, authorized_keys: list[str]
) -> str:
    """Create and boot the container for droplet `name`; install root's authorized keys."""
    container = config.container(name)
    _docker("rm", "-f", "-v", container)
    publish = [arg for port in PUBLISHED_PORTS for arg in ("-p", f"{address}:{port}:{port}")]
    created = _docker(
        "run", "-d", "--name", container, "--hostname", name,
        "--label", f"{SANDBOX_LABEL}={config.label}",
        "--label", f"dtma.droplet={name}",
        *RUN_OPTIONS, *publish, image,
    )  # fmt: skip
    if created.returncode != 0:
        raise DropletError(f"docker run for droplet {name} failed: {created.stderr.strip()}")
    install_authorized_keys(container, authorized_keys)
    return container


def install_authorized_keys(container: str, keys: list[str]) -> None:
    """Write root's authorized_keys inside the droplet, as DigitalOcean's cloud-init does."""
    content = "".join(key.strip() + "\n" for key in keys)
    written = _docker(
        "exec", "-i", container, "sh", "-c",
        "umask 077 && mkdir -p /root/.ssh && cat > /root/.ssh/authorized_keys",
        stdin=content,
    )  # fmt: skip
    if written.returncode != 0:
        state = container_state(container)
        hint = (
            ""
            if state == "running"
            else f" (the container is {state}; see `docker logs {container}`)"
        )
        raise DropletError(
            f"could not install SSH keys in {container}: {written.stderr.strip()}{hint}"
        )


def container_state(container: str) -> str:
    """Docker's state of the container ('running', 'exited', ...) or 'missing'."""
    inspected = _docker("inspect", "-f", "{{.State.Status}}", container)
    return inspected.stdout.strip() if inspected.returncode == 0 else "missing"


def ensure_running(container: str) -> None:
    if container_state(container) != "running":
        started = _docker("start", container)
        if started.returncode != 0:
            raise DropletError(f"could not start {container}: {started.stderr.strip()}")


def remove_container(container: str) -> None:
    _docker("rm", "-f", "-v", container)


def sandbox_containers(config: SandboxConfig) -> list[str]:
    """Names of every container (running or not) that belongs to this sandbox."""
    listed = _docker(
        "ps", "-a", "--filter", f"label={SANDBOX_LABEL}={config.label}", "--format", "{{.Names}}"
    )
    return [line for line in listed.stdout.split() if line]


def sshd_answers(address: str, timeout: float = 1.0) -> bool:
    """True when something at address:22 greets like an SSH server."""
    try:
        with socket.create_connection((address, 22), timeout=timeout) as conn:
            conn.settimeout(timeout)
            return conn.recv(4).startswith(b"SSH-")
    except OSError:
        return False


def wait_for_sshd(address: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sshd_answers(address):
            return
        time.sleep(0.3)
    raise DropletError(f"sshd at {address}:22 did not answer within {timeout:.0f}s")
