"""The SSH probe (pyinfra facts): the read path's fallback when the agent does not answer.

Answers in the agent's shapes (status, system, containers) as far as SSH can tell, so that
callers handle one format whatever the source. Blocking: call it from a worker thread.
The private key stays in memory (a paramiko key object), never on disk.

pyinfra and paramiko (with gevent and invoke, about 0.3 s of CPU to import) are imported by
the functions that use them: every console process imports this module, few probe over SSH.
The facts are imported once connected: connected() imports pyinfra.api first, so threads
probing at once import pyinfra in one order (no import-lock deadlock).
"""

from __future__ import annotations

import io
import logging
import tempfile
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import paramiko
    from pyinfra.api.host import Host

logging.getLogger("pyinfra").setLevel(logging.CRITICAL)

AGENT_UNIT = "dtma.service"
DTMA_CURRENT = "/opt/dtma/current"


class ProbeError(Exception):
    """The droplet could not be read over SSH; the message says why."""


@dataclass(frozen=True)
class SshTarget:
    name: str
    address: str
    private_key: str | None
    known_hosts: str | None
    user: str = "root"
    port: int = 22


def _load_key(text: str) -> paramiko.PKey:
    import paramiko

    key_class: type[paramiko.PKey]
    for key_class in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
        try:
            return key_class.from_private_key(io.StringIO(text))
        except paramiko.SSHException:
            continue
    raise ProbeError("the SSH private key could not be read")


@contextmanager
def connected(target: SshTarget, timeout: float) -> Iterator[Host]:
    """A pyinfra host connected to `target`, host key pinned when known_hosts is given."""
    from pyinfra.api import Config, Inventory, State
    from pyinfra.api.exceptions import PyinfraError

    with tempfile.TemporaryDirectory(prefix="dtma-probe-") as workdir:
        known_hosts = Path(workdir) / "known_hosts"
        known_hosts.write_text(target.known_hosts or "")
        data: dict[str, Any] = {
            "ssh_hostname": target.address,
            "ssh_user": target.user,
            "ssh_port": target.port,
            "ssh_known_hosts_file": str(known_hosts),
            # Pinned when the console knows the host key; otherwise trust on first use.
            "ssh_strict_host_key_checking": "yes" if target.known_hosts else "accept-new",
            "ssh_connect_retries": 0,
            "ssh_allow_agent": False,
            "ssh_look_for_keys": False,
        }
        if target.private_key:
            data["ssh_paramiko_connect_kwargs"] = {"pkey": _load_key(target.private_key)}
        inventory = Inventory(([(target.name, data)], {}))
        # The state attaches itself to the inventory's hosts (timeouts, connectors).
        State(inventory, Config(CONNECT_TIMEOUT=max(1, int(timeout))))
        host = inventory.get_host(target.name)
        try:
            host.connect(raise_exceptions=True)
        except PyinfraError as error:
            raise ProbeError(f"SSH to {target.address} failed: {error}") from error
        try:
            yield host
        finally:
            host.disconnect()
            if host.connector is not None and getattr(host.connector, "client", None):
                host.connector.client.close()  # type: ignore[attr-defined]


def _fact(host: Host, fact: type, timeout: float, **arguments: Any) -> Any:
    from pyinfra.api.exceptions import PyinfraError

    try:
        return host.get_fact(fact, _timeout=int(timeout), **arguments)
    except PyinfraError as error:
        raise ProbeError(f"reading {fact.__name__} over SSH failed: {error}") from error


def _command(host: Host, command: str, timeout: float) -> str:
    from pyinfra.facts.server import Command

    output = _fact(host, Command, timeout, command=command)
    if output is None:
        raise ProbeError(f"command failed over SSH: {command}")
    return str(output)


def _counts(containers: list[dict[str, Any]]) -> dict[str, Any]:
    by_state = Counter(str(c.get("State", {}).get("Status", "unknown")) for c in containers)
    return {"total": len(containers), "by_state": dict(sorted(by_state.items()))}


def _is_managed(container: dict[str, Any]) -> bool:
    labels = (container.get("Config") or {}).get("Labels") or {}
    return labels.get("dtma.managed") == "true"


@contextmanager
def _on(target: SshTarget, timeout: float, reuse: Host | None) -> Iterator[Host]:
    """`reuse` when given (one connection for several reads), else a fresh connection."""
    if reuse is not None:
        yield reuse
        return
    with connected(target, timeout) as host:
        yield host


def read_all(
    target: SshTarget, timeout: float
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Status, system and the managed containers over one SSH connection."""
    with connected(target, timeout) as host:
        return (
            read_status(target, timeout, reuse=host),
            read_system(target, timeout, reuse=host),
            read_containers(target, timeout, managed=True, reuse=host),
        )


def read_status(target: SshTarget, timeout: float, reuse: Host | None = None) -> dict[str, Any]:
    with _on(target, timeout, reuse) as host:
        from pyinfra.facts.docker import DockerContainers
        from pyinfra.facts.systemd import SystemdStatus

        units = _fact(host, SystemdStatus, timeout, services=[AGENT_UNIT, "docker.service"])
        release = _command(host, f'echo "release=$(readlink -f {DTMA_CURRENT})"', timeout)
        release = release.strip().removeprefix("release=")
        docker_running = bool(units.get("docker.service"))
        containers = _fact(host, DockerContainers, timeout) if docker_running else None
        docker_version = None
        if docker_running:
            version_command = "docker version --format '{{.Server.Version}}' 2>/dev/null || true"
            docker_version = _command(host, version_command, timeout).strip() or None
    return {
        "version": Path(release).name if release.startswith("/opt/dtma/releases/") else None,
        "started_at": None,
        "uptime_seconds": None,
        "agent_service": {"unit": AGENT_UNIT, "active": bool(units.get(AGENT_UNIT))},
        "docker": {
            "state": "running" if docker_running else "unreachable",
            "version": docker_version,
            "api_version": None,
            "error": None if docker_running else "docker.service is not running",
        },
        "tool_instances": _counts([c for c in containers if _is_managed(c)])
        if containers is not None
        else None,
        "containers": _counts(containers) if containers is not None else None,
    }


def _cpu_percent(stat_twice: str) -> float:
    lines = [line.split() for line in stat_twice.splitlines() if line.startswith("cpu ")]
    if len(lines) != 2:
        raise ProbeError("unexpected /proc/stat output over SSH")
    first, second = ([int(v) for v in line[1:]] for line in lines)
    idle = (second[3] + second[4]) - (first[3] + first[4])
    total = sum(second) - sum(first)
    return round(100.0 * (total - idle) / total, 1) if total > 0 else 0.0


def read_system(target: SshTarget, timeout: float, reuse: Host | None = None) -> dict[str, Any]:
    with _on(target, timeout, reuse) as host:
        from pyinfra.facts.server import Hostname, LoadAverage

        hostname = _fact(host, Hostname, timeout)
        load = _fact(host, LoadAverage, timeout) or {}
        cpus = int(_command(host, "nproc", timeout).strip())
        stat = _command(
            host, "grep '^cpu ' /proc/stat; sleep 0.2; grep '^cpu ' /proc/stat", timeout
        )
        meminfo = _command(host, "cat /proc/meminfo", timeout)
        disk = _command(host, "df -B1 --output=size,used,avail / | tail -n 1", timeout).split()
        uptime = float(_command(host, "cat /proc/uptime", timeout).split()[0])
    memory = {
        line.split(":")[0]: int(line.split()[1]) * 1024
        for line in meminfo.splitlines()
        if line.split() and line.split()[-1] == "kB"
    }
    total, available = memory.get("MemTotal", 0), memory.get("MemAvailable", 0)
    disk_total, disk_used, disk_free = (int(v) for v in disk[:3])
    return {
        "hostname": hostname,
        "cpu": {"percent": _cpu_percent(stat), "count": cpus},
        "memory": {
            "total_bytes": total,
            "used_bytes": total - available,
            "available_bytes": available,
            "percent": round(100.0 * (total - available) / total, 1) if total else 0.0,
        },
        "disk": {
            "path": "/",
            "total_bytes": disk_total,
            "used_bytes": disk_used,
            "free_bytes": disk_free,
            "percent": round(100.0 * disk_used / disk_total, 1) if disk_total else 0.0,
        },
        "load": {
            "one": float(load.get("1", 0.0)),
            "five": float(load.get("5", 0.0)),
            "fifteen": float(load.get("15", 0.0)),
        },
        "boot_time": (datetime.now(UTC) - timedelta(seconds=uptime)).isoformat(),
        "uptime_seconds": uptime,
    }


def _container(inspect: dict[str, Any]) -> dict[str, Any]:
    config = inspect.get("Config") or {}
    state = inspect.get("State") or {}
    labels = config.get("Labels") or {}
    ports = []
    for spec, bindings in ((inspect.get("NetworkSettings") or {}).get("Ports") or {}).items():
        port, _, protocol = spec.partition("/")
        for binding in bindings or [{}]:
            host_port = binding.get("HostPort")
            ports.append(
                {
                    "container_port": int(port),
                    "protocol": protocol or "tcp",
                    "host_ip": binding.get("HostIp"),
                    "host_port": int(host_port) if host_port else None,
                }
            )
    started = state.get("StartedAt")
    finished = state.get("FinishedAt")
    return {
        "id": str(inspect.get("Id", ""))[:12],
        "name": str(inspect.get("Name", "")).lstrip("/"),
        "image": config.get("Image", ""),
        "image_id": inspect.get("Image", ""),
        "state": state.get("Status", "unknown"),
        "status": state.get("Status", "unknown"),
        "created": inspect.get("Created", ""),
        "started_at": None if not started or started.startswith("0001") else started,
        "finished_at": None if not finished or finished.startswith("0001") else finished,
        "restart_count": int(inspect.get("RestartCount", 0)),
        "exit_code": state.get("ExitCode"),
        "health": (state.get("Health") or {}).get("Status"),
        "ports": ports,
        "labels": labels,
        "managed": labels.get("dtma.managed") == "true",
        "instance": labels.get("dtma.instance"),
    }


def read_containers(
    target: SshTarget, timeout: float, *, managed: bool, reuse: Host | None = None
) -> dict[str, Any]:
    with _on(target, timeout, reuse) as host:
        from pyinfra.facts.docker import DockerContainers

        inspected = _fact(host, DockerContainers, timeout) or []
    containers = [_container(c) for c in inspected]
    if managed:
        containers = [c for c in containers if c["managed"]]
    return {"total": len(containers), "containers": containers}
