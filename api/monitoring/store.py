"""Write what an observation found into the toolbox's rows: status, agent version, last seen,
last error, last answers, a metric sample (nulls when it did not answer) and one per running
tool instance, and its tool instances (new ones added, vanished
ones marked removed, by the read path's own `instances.record_containers`). The caller owns
the transaction."""

from __future__ import annotations

from sqlalchemy.orm import Session

from api.models import Toolbox
from api.monitoring.checks import percent
from api.monitoring.models import MetricSample, ToolMetricSample
from api.monitoring.observe import Observation
from api.services import instances

# Toolbox.status for each source the last look got its answers from.
STATUS_BY_SOURCE = {"agent": "up", "ssh": "down", "none": "unreachable"}


def record_observation(session: Session, toolbox: Toolbox, observation: Observation) -> None:
    # An agent that answers but refuses the console's token is not "down": restarting it
    # would not help (the badge says so, and recovery does not restart it).
    toolbox.status = (
        "refused" if observation.agent_refused else STATUS_BY_SOURCE[observation.source]
    )
    toolbox.last_error = observation.error
    # Every look is a sample, one of nulls when the toolbox did not answer: a gap in its
    # history, not a zero.
    session.add(sample(toolbox.id, observation))
    if not observation.reachable:
        return
    toolbox.last_seen_at = observation.observed_at
    version = (observation.status or {}).get("version")
    if version:
        toolbox.agent_version = str(version)
    # The same shape the read path (api/services/observe.py) keeps and serves when stale.
    answers = {
        "status": observation.status,
        "system": observation.system,
        "tools": None
        if observation.containers is None
        else {"total": len(observation.containers), "containers": observation.containers},
    }
    stamp = {"source": observation.source, "observed_at": observation.observed_at.isoformat()}
    # A look that answered answers all three, so the old state is replaced, not merged
    # (and never needs to be read: the sync loads the rows without it).
    toolbox.last_state = {
        kind: {**stamp, "data": data} for kind, data in answers.items() if data is not None
    }
    if observation.containers is not None:
        session.add_all(tool_samples(toolbox.id, observation))
        instances.record_containers(
            session, toolbox, observation.containers, observation.observed_at
        )


def sample(toolbox_id: str, observation: Observation) -> MetricSample:
    system = observation.system or {}
    load = system.get("load")
    one = load.get("one") if isinstance(load, dict) else None
    return MetricSample(
        toolbox_id=toolbox_id,
        at=observation.observed_at,
        source=observation.source,
        cpu_percent=percent(system, "cpu"),
        memory_percent=percent(system, "memory"),
        disk_percent=percent(system, "disk"),
        load_1m=float(one) if isinstance(one, int | float) else None,
    )


def tool_samples(toolbox_id: str, observation: Observation) -> list[ToolMetricSample]:
    """One per running tool instance the agent gave stats for (`/containers?stats=true`);
    none from the SSH probe or from an agent too old to give them."""
    found = []
    for container in observation.containers or []:
        stats = container.get("stats")
        if not isinstance(stats, dict):
            continue
        cpu, memory = stats.get("cpu_percent"), stats.get("memory_bytes")
        found.append(
            ToolMetricSample(
                toolbox_id=toolbox_id,
                tool=str(container.get("instance") or container.get("name") or "?")[:128],
                at=observation.observed_at,
                cpu_percent=float(cpu) if isinstance(cpu, int | float) else None,
                memory_bytes=float(memory) if isinstance(memory, int | float) else None,
            )
        )
    return found
