"""Write what a look found: the toolbox's observed state through the one writer of it
(api/services/toolbox_state.py), and its metric samples (nulls when it did not answer) with
one per running tool instance. The caller owns the transaction."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from api.models import Toolbox
from api.monitoring.checks import percent
from api.monitoring.looks import Observation
from api.monitoring.models import MetricSample, ToolMetricSample
from api.services import toolbox_state


def record_observation(session: Session, toolbox: Toolbox, observation: Observation) -> None:
    # Every look is a sample, one of nulls when the toolbox did not answer: a gap in its
    # history, not a zero.
    session.add(sample(toolbox.id, observation))
    errors = {}
    if observation.agent_error:
        errors["agent"] = observation.agent_error
    if observation.ssh_error:
        errors["ssh"] = observation.ssh_error
    answers: dict[toolbox_state.Kind, Any] = {}
    if observation.reachable:
        answers = {"status": observation.status, "system": observation.system}
        if observation.containers is not None:
            containers = observation.containers
            answers["tools"] = {"total": len(containers), "containers": containers}
        answers = {kind: data for kind, data in answers.items() if data is not None}
    # A look that answered answers all three, so the old state is replaced, not merged
    # (and never needs to be read: the sync loads the rows without it).
    toolbox_state.record(
        session, toolbox, answers, source=observation.source,
        observed_at=observation.observed_at, errors=errors,
        refused=observation.agent_refused, replace=True,
    )  # fmt: skip
    if observation.containers is not None:
        session.add_all(tool_samples(toolbox.id, observation))


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
