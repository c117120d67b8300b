"""Tool instances in the database, kept equal to what was last read from the toolbox."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from api.models import Toolbox, ToolInstance


def _when(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value or value.startswith("0001-"):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def record_containers(
    session: Session, toolbox: Toolbox, containers: list[dict[str, Any]], observed_at: datetime
) -> None:
    """Upsert the managed containers (agent shape) by instance name; instances that are no
    longer there are marked removed. A row observed after `observed_at` (by an action that
    ended meanwhile) is newer than this look and is left as it is. The caller flushes."""
    known = {instance.name: instance for instance in toolbox.tool_instances}
    seen = set()
    for container in containers:
        name = container.get("instance") or container.get("name")
        if not container.get("managed") or not name:
            continue
        if container.get("name") and container["name"] != name:
            continue  # a previous container an upgrade keeps (<name>.previous), not an instance
        seen.add(name)
        instance = known.get(name)
        if instance is None:
            instance = ToolInstance(name=name)
            toolbox.tool_instances.append(instance)
            known[name] = instance
        elif _newer(instance, observed_at):
            continue
        instance.image = container.get("image")
        instance.container_id = container.get("id")
        instance.state = str(container.get("state") or "unknown")
        instance.status_text = container.get("status")
        instance.ports = list(container.get("ports") or [])
        instance.started_at = _when(container.get("started_at"))
        instance.restart_count = int(container.get("restart_count") or 0)
        instance.observed_at = observed_at
        instance.removed_at = None
    for name, instance in known.items():
        if name not in seen and instance.removed_at is None and not _newer(instance, observed_at):
            instance.state = "removed"
            instance.removed_at = observed_at
            instance.observed_at = observed_at


def _newer(instance: ToolInstance, observed_at: datetime) -> bool:
    return instance.observed_at is not None and instance.observed_at > observed_at
