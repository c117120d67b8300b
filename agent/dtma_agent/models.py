"""Response shapes of the agent's HTTP API."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel


class Health(BaseModel):
    status: Literal["ok"] = "ok"
    version: str
    started_at: str


class DockerEngine(BaseModel):
    state: Literal["running", "unreachable"]
    version: str | None = None
    api_version: str | None = None
    error: str | None = None


class StateCounts(BaseModel):
    total: int
    by_state: dict[str, int]


class Status(BaseModel):
    version: str
    started_at: str
    uptime_seconds: float
    docker: DockerEngine
    # None when the engine cannot be read: unknown is not the same as zero.
    tool_instances: StateCounts | None
    containers: StateCounts | None


class Cpu(BaseModel):
    percent: float
    count: int


class Memory(BaseModel):
    total_bytes: int
    used_bytes: int
    available_bytes: int
    percent: float


class Disk(BaseModel):
    path: str
    total_bytes: int
    used_bytes: int
    free_bytes: int
    percent: float


class Load(BaseModel):
    one: float
    five: float
    fifteen: float


class System(BaseModel):
    hostname: str
    cpu: Cpu
    memory: Memory
    disk: Disk
    load: Load
    boot_time: str
    uptime_seconds: float


class PortBinding(BaseModel):
    container_port: int
    protocol: str
    host_ip: str | None = None
    host_port: int | None = None


class ContainerStats(BaseModel):
    # Share of one CPU over the time since the agent's previous read (100 = one full CPU,
    # as `docker stats`); None on the first read of a container (no baseline yet).
    cpu_percent: float | None
    memory_bytes: int | None
    memory_limit_bytes: int | None
    read_at: str


class Container(BaseModel):
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


class ContainerList(BaseModel):
    total: int
    containers: list[Container]
