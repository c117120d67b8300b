"""Response shapes of the agent's HTTP API (plain dataclasses, serialized in field order)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal


def as_json(shape: Any) -> Any:
    """The JSON-ready form of a response shape (nested dataclasses become dicts)."""
    return asdict(shape)


@dataclass(kw_only=True)
class Health:
    status: Literal["ok"] = "ok"
    version: str
    started_at: str


@dataclass(kw_only=True)
class DockerEngine:
    state: Literal["running", "unreachable"]
    version: str | None = None
    api_version: str | None = None
    error: str | None = None


@dataclass(kw_only=True)
class StateCounts:
    total: int
    by_state: dict[str, int]


@dataclass(kw_only=True)
class Status:
    version: str
    started_at: str
    uptime_seconds: float
    docker: DockerEngine
    # None when the engine cannot be read: unknown is not the same as zero.
    tool_instances: StateCounts | None
    containers: StateCounts | None


@dataclass(kw_only=True)
class Cpu:
    percent: float
    count: int


@dataclass(kw_only=True)
class Memory:
    total_bytes: int
    used_bytes: int
    available_bytes: int
    percent: float


@dataclass(kw_only=True)
class Disk:
    path: str
    total_bytes: int
    used_bytes: int
    free_bytes: int
    percent: float


@dataclass(kw_only=True)
class Load:
    one: float
    five: float
    fifteen: float


@dataclass(kw_only=True)
class System:
    hostname: str
    cpu: Cpu
    memory: Memory
    disk: Disk
    load: Load
    boot_time: str
    uptime_seconds: float


@dataclass(kw_only=True)
class PortBinding:
    container_port: int
    protocol: str
    host_ip: str | None = None
    host_port: int | None = None


@dataclass(kw_only=True)
class ContainerStats:
    # Share of one CPU over the time since the agent's previous read (100 = one full CPU,
    # as `docker stats`); None on the first read of a container (no baseline yet).
    cpu_percent: float | None
    memory_bytes: int | None
    memory_limit_bytes: int | None
    read_at: str


@dataclass(kw_only=True)
class Container:
    id: str
    name: str
    image: str
    image_id: str
    state: str
    status: str
    created: str
    started_at: str | None
    finished_at: str | None
    restart_count: int
    exit_code: int | None
    health: str | None
    ports: list[PortBinding]
    labels: dict[str, str]
    managed: bool
    instance: str | None
    # Only with `stats=true`, and only for a running container.
    stats: ContainerStats | None = None


@dataclass(kw_only=True)
class ContainerList:
    total: int
    containers: list[Container] = field(default_factory=list)
