"""Resource use of running containers from Docker's one-shot stats, as `docker stats` shows it.

A one-shot read (`one-shot=true`) answers at once but carries no previous CPU reading, so
the CPU share is taken over the time since this agent's previous read of the same
container (like psutil's `cpu_percent(interval=None)`); the first read of a container has
no baseline and reports `cpu_percent: null`. Memory is the usage without the reclaimable
page cache, the figure `docker stats` prints.
"""

from __future__ import annotations

import threading
from typing import Any

from .models import ContainerStats


class CpuBaselines:
    """The previous (container CPU time, system CPU time) of each container, per id."""

    def __init__(self) -> None:
        self._seen: dict[str, tuple[int, int]] = {}
        self._lock = threading.Lock()

    def percent(self, container_id: str, cpu_stats: dict[str, Any]) -> float | None:
        usage = (cpu_stats.get("cpu_usage") or {}).get("total_usage")
        system = cpu_stats.get("system_cpu_usage")
        if not isinstance(usage, int) or not isinstance(system, int):
            return None
        cpus = cpu_stats.get("online_cpus") or len(
            (cpu_stats.get("cpu_usage") or {}).get("percpu_usage") or []
        )
        with self._lock:
            before = self._seen.get(container_id)
            self._seen[container_id] = (usage, system)
        if before is None:
            return None
        used, elapsed = usage - before[0], system - before[1]
        if used < 0 or elapsed <= 0:  # restarted container, or no time passed
            return None
        return round(used / elapsed * max(int(cpus), 1) * 100, 2)

    def forget_all_but(self, container_ids: set[str]) -> None:
        """Drop the baselines of containers that no longer run."""
        with self._lock:
            for gone in set(self._seen) - container_ids:
                del self._seen[gone]


def memory_bytes(memory_stats: dict[str, Any]) -> int | None:
    usage = memory_stats.get("usage")
    if not isinstance(usage, int):
        return None
    details = memory_stats.get("stats") or {}
    # cgroup v2: inactive_file; cgroup v1: total_inactive_file (what the docker CLI subtracts).
    for key in ("inactive_file", "total_inactive_file"):
        cache = details.get(key)
        if isinstance(cache, int) and cache < usage:
            return usage - cache
    return usage


def container_stats(
    baselines: CpuBaselines, container_id: str, raw: dict[str, Any]
) -> ContainerStats:
    memory = raw.get("memory_stats") or {}
    limit = memory.get("limit")
    return ContainerStats(
        cpu_percent=baselines.percent(container_id, raw.get("cpu_stats") or {}),
        memory_bytes=memory_bytes(memory),
        memory_limit_bytes=limit if isinstance(limit, int) and limit > 0 else None,
        read_at=str(raw.get("read") or ""),
    )
