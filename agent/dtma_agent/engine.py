"""Read-only view of the local Docker engine: its state, containers and their logs."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from .engine_http import EngineHttp, EngineRefused, EngineUnreachable
from .errors import ContainerNotFound, DockerError, DockerUnavailable
from .logstream import Demultiplexer
from .models import Container, DockerEngine, PortBinding, StateCounts
from .stats import CpuBaselines, container_stats

MANAGED_LABEL = "dtma.managed"
INSTANCE_LABEL = "dtma.instance"
_ZERO_TIME = "0001-01-01T00:00:00Z"
_REQUEST_TIMEOUT_S = 10
T = TypeVar("T")


class Engine:
    def __init__(self, base_url: str, api_version: str) -> None:
        self._base_url = base_url
        self._http = EngineHttp(base_url, api_version, timeout=_REQUEST_TIMEOUT_S)
        self._cpu = CpuBaselines()

    async def state(self) -> DockerEngine:
        try:
            info = await self._http.get_json("/version")
        except (EngineUnreachable, EngineRefused) as exc:
            return DockerEngine(state="unreachable", error=self._describe(exc))
        return DockerEngine(
            state="running", version=info.get("Version"), api_version=info.get("ApiVersion")
        )

    async def state_counts(self) -> tuple[StateCounts, StateCounts]:
        """Counts of (tool instances, all containers) by state."""
        summaries = await self._get("/containers/json", params={"all": 1})
        managed = [s for s in summaries if _is_managed(s.get("Labels"))]
        return _count(managed), _count(summaries)

    async def containers(self, managed_only: bool, with_stats: bool = False) -> list[Container]:
        filters = json.dumps({"label": [f"{MANAGED_LABEL}=true"]}) if managed_only else None
        summaries = await self._get("/containers/json", params={"all": 1, "filters": filters})

        async def one(summary: dict[str, Any]) -> Container | None:
            try:
                details = await self._get(f"/containers/{summary['Id']}/json", ref=summary["Id"])
                container = _container(summary, details)
                if with_stats and container.state == "running":
                    raw = await self._get(
                        f"/containers/{container.id}/stats",
                        ref=container.id,
                        params={"stream": 0, "one-shot": 1},
                    )
                    container.stats = container_stats(self._cpu, container.id, raw)
            except ContainerNotFound:
                return None  # removed between the list and the inspect
            return container

        found = [c for c in await asyncio.gather(*(one(s) for s in summaries)) if c is not None]
        if with_stats:
            self._cpu.forget_all_but({c.id for c in found if c.stats is not None})
        return sorted(found, key=lambda c: c.name)

    async def open_logs(
        self, ref: str, *, tail: int, since: float | None, timestamps: bool, follow: bool
    ) -> AsyncIterator[bytes]:
        """The container's stdout and stderr as they come: its errors (unknown container,
        engine down) are raised here, before any byte; close the iterator to stop following."""
        details = await self._get(f"/containers/{ref}/json", ref=ref)
        stream = await self._call(
            lambda: self._http.stream(
                f"/containers/{details['Id']}/logs",
                {
                    "stdout": 1,
                    "stderr": 1,
                    "follow": int(follow),
                    "tail": tail,
                    "since": None if since is None else f"{since:.6f}",
                    "timestamps": int(timestamps),
                },
                follow=follow,
            ),
            ref,
        )
        tty = bool((details.get("Config") or {}).get("Tty"))
        return _payload(stream.chunks(), stream.close, None if tty else Demultiplexer())

    async def _get(
        self, path: str, ref: str | None = None, params: dict[str, Any] | None = None
    ) -> Any:
        return await self._call(lambda: self._http.get_json(path, **(params or {})), ref)

    async def _call(self, request: Callable[[], Awaitable[T]], ref: str | None) -> T:
        try:
            return await request()
        except EngineRefused as exc:
            if exc.status == 404 and ref is not None:
                raise ContainerNotFound(f"no container {ref!r} on this toolbox") from exc
            raise DockerError(f"the Docker engine refused the request: {exc.message}") from exc
        except EngineUnreachable as exc:
            raise DockerUnavailable(self._describe(exc)) from exc

    def _describe(self, exc: Exception) -> str:
        return f"cannot reach the Docker engine at {self._base_url}: {exc}"


async def _payload(
    chunks: AsyncIterator[bytes], close: Callable[[], None], demux: Demultiplexer | None
) -> AsyncIterator[bytes]:
    try:
        async for chunk in chunks:
            data = demux.feed(chunk) if demux is not None else chunk
            if data:
                yield data
    except EngineUnreachable:
        return  # the engine cut the stream: it ends here, as it would have with the SDK
    finally:
        close()


def _is_managed(labels: dict[str, str] | None) -> bool:
    return (labels or {}).get(MANAGED_LABEL) == "true"


def _count(summaries: list[dict[str, Any]]) -> StateCounts:
    states = Counter(str(s.get("State", "unknown")) for s in summaries)
    return StateCounts(total=len(summaries), by_state=dict(sorted(states.items())))


def _time(value: str | None) -> str | None:
    return None if not value or value == _ZERO_TIME else value


def _container(summary: dict[str, Any], details: dict[str, Any]) -> Container:
    state = details.get("State") or {}
    labels = summary.get("Labels") or {}
    health = state.get("Health") or {}
    return Container(
        id=details["Id"],
        name=details.get("Name", "").lstrip("/"),
        image=summary.get("Image") or (details.get("Config") or {}).get("Image", ""),
        image_id=details.get("Image", ""),
        state=state.get("Status", summary.get("State", "unknown")),
        status=summary.get("Status", ""),
        created=details.get("Created", ""),
        started_at=_time(state.get("StartedAt")),
        finished_at=_time(state.get("FinishedAt")),
        restart_count=int(details.get("RestartCount", 0)),
        exit_code=state.get("ExitCode"),
        health=health.get("Status"),
        ports=[
            PortBinding(
                container_port=port["PrivatePort"],
                protocol=port.get("Type", "tcp"),
                host_ip=port.get("IP"),
                host_port=port.get("PublicPort"),
            )
            for port in summary.get("Ports") or []
        ],
        labels=labels,
        managed=_is_managed(labels),
        instance=labels.get(INSTANCE_LABEL),
    )
