"""Read-only view of the local Docker engine: its state, containers and their logs."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

import docker
import docker.errors
import requests.exceptions
from docker.types import CancellableStream

from .errors import ContainerNotFound, DockerError, DockerUnavailable, InvalidParameter
from .models import Container, DockerEngine, PortBinding, StateCounts
from .stats import CpuBaselines, container_stats

MANAGED_LABEL = "dtma.managed"
INSTANCE_LABEL = "dtma.instance"
_ZERO_TIME = "0001-01-01T00:00:00Z"
_REQUEST_TIMEOUT_S = 10


class Engine:
    def __init__(self, base_url: str, api_version: str) -> None:
        self._base_url = base_url
        self._api = docker.APIClient(
            base_url=base_url, version=api_version, timeout=_REQUEST_TIMEOUT_S
        )
        self._cpu = CpuBaselines()

    def close(self) -> None:
        self._api.close()

    def state(self) -> DockerEngine:
        try:
            info = self._api.version()
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            return DockerEngine(state="unreachable", error=self._describe(exc))
        return DockerEngine(
            state="running", version=info.get("Version"), api_version=info.get("ApiVersion")
        )

    def state_counts(self) -> tuple[StateCounts, StateCounts]:
        """Counts of (tool instances, all containers) by state."""
        summaries = self._call(self._api.containers, all=True)
        managed = [s for s in summaries if _is_managed(s.get("Labels"))]
        return _count(managed), _count(summaries)

    def containers(self, managed_only: bool, with_stats: bool = False) -> list[Container]:
        filters = {"label": f"{MANAGED_LABEL}=true"} if managed_only else None
        summaries = self._call(self._api.containers, all=True, filters=filters)
        found = []
        for summary in summaries:
            try:
                details = self._call(self._api.inspect_container, summary["Id"])
                container = _container(summary, details)
                if with_stats and container.state == "running":
                    raw = self._call(self._api.stats, container.id, stream=False, one_shot=True)
                    container.stats = container_stats(self._cpu, container.id, raw)
            except ContainerNotFound:
                continue  # removed between the list and the inspect
            found.append(container)
        if with_stats:
            self._cpu.forget_all_but({c.id for c in found if c.stats is not None})
        return sorted(found, key=lambda c: c.name)

    def open_logs(
        self, ref: str, *, tail: int, since: datetime | None, timestamps: bool, follow: bool
    ) -> CancellableStream:
        """A stream of log chunks (stdout and stderr); close() it to stop following."""
        container_id = self._call(self._api.inspect_container, ref)["Id"]
        since_ts = None
        if since is not None:
            if since.tzinfo is None:  # a time without a zone is UTC, as Docker's own are
                since = since.replace(tzinfo=UTC)
            since_ts = since.timestamp()
            if since_ts <= 0:
                raise InvalidParameter("since: must be after 1970-01-01T00:00:00Z")
        stream: CancellableStream = self._call(
            self._api.logs,
            container_id,
            stdout=True,
            stderr=True,
            stream=True,
            follow=follow,
            tail=tail,
            since=since_ts,
            timestamps=timestamps,
        )
        return stream

    def _call(self, method: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except docker.errors.NotFound as exc:
            raise ContainerNotFound(f"no container {args[0]!r} on this toolbox") from exc
        except docker.errors.APIError as exc:
            raise DockerError(f"the Docker engine refused the request: {exc.explanation}") from exc
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            raise DockerUnavailable(self._describe(exc)) from exc

    def _describe(self, exc: Exception) -> str:
        return f"cannot reach the Docker engine at {self._base_url}: {type(exc).__name__}"


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
