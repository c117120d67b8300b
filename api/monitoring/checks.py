"""The checks: what one observation of a toolbox says about each condition watched.

Pure functions: an observation, the toolbox's tool instances and what each check remembers
from earlier cycles go in; one `Verdict` per check comes out. Counting consecutive failures,
alerts and recovery happen elsewhere (evaluate.py, recovery.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from api.models import ToolInstance
from api.monitoring.limits import Limits
from api.monitoring.looks import Observation

REACHABLE = "droplet_reachable"
AGENT = "agent"
AGENT_TOKEN = "agent_token"
METRICS = ("cpu", "memory", "disk")
TOOL_EXITED = "tool_exited:"
TOOL_RESTART_LOOP = "tool_restart_loop:"
EXITED_STATES = frozenset({"exited", "dead"})

# The run each repairable check asks for.
RECOVERY_ACTIONS = {AGENT: "dtma.restart", TOOL_EXITED: "tool.restart"}


@dataclass(frozen=True)
class Verdict:
    check: str
    # True: the condition is bad now; False: fine; None: nothing to judge this time.
    failing: bool | None
    message: str
    severity: str = "critical"
    value: float | None = None
    threshold: float | None = None
    # Consecutive failing verdicts before the check counts as failing (and alerts).
    trip_after: int = 1
    memory: dict[str, Any] = field(default_factory=dict)


def tool_of(check: str) -> str | None:
    """The tool instance a per-tool check is about."""
    for prefix in (TOOL_EXITED, TOOL_RESTART_LOOP):
        if check.startswith(prefix):
            return check.removeprefix(prefix)
    return None


def severity_of(check: str) -> str:
    if check in METRICS or check.startswith(TOOL_RESTART_LOOP):
        return "warning"
    return "critical"


def recovery_action(check: str) -> str | None:
    if check == AGENT:
        return RECOVERY_ACTIONS[AGENT]
    if check.startswith(TOOL_EXITED):
        return RECOVERY_ACTIONS[TOOL_EXITED]
    return None


def evaluate(
    observation: Observation,
    instances: Iterable[ToolInstance],
    limits: Limits,
    memories: dict[str, dict[str, Any]],
) -> list[Verdict]:
    verdicts = [
        _reachable(observation, limits),
        _agent(observation, limits),
        _agent_token(observation),
    ]
    verdicts += _metrics(observation, limits)
    if observation.containers is not None:
        for instance in instances:
            if instance.removed_at is not None:
                continue
            verdicts.append(_tool_exited(instance))
            loop = TOOL_RESTART_LOOP + instance.name
            verdicts.append(
                _restart_loop(instance, limits, memories.get(loop, {}), observation.observed_at)
            )
    return verdicts


def _reachable(observation: Observation, limits: Limits) -> Verdict:
    if observation.reachable:
        return Verdict(REACHABLE, False, f"answered through {observation.source}")
    return Verdict(
        REACHABLE,
        True,
        f"{observation.name} does not answer: {observation.error}",
        trip_after=limits.agent_down_checks,
    )


def _agent(observation: Observation, limits: Limits) -> Verdict:
    if observation.agent_up:
        version = (observation.status or {}).get("version")
        return Verdict(AGENT, False, f"the DTMA agent answers (version {version})")
    if not observation.reachable:
        # Nothing can be said about the agent of a droplet that does not answer at all;
        # the reachability check speaks for it.
        return Verdict(AGENT, None, "unknown: the droplet does not answer")
    if observation.agent_refused:
        # It runs, it just will not talk to us: restarting it would change nothing.
        return Verdict(AGENT, None, "the DTMA agent answers but refuses the console's token")
    return Verdict(
        AGENT,
        True,
        f"the DTMA agent on {observation.name} does not answer ({observation.agent_error})",
        trip_after=limits.agent_down_checks,
    )


def _agent_token(observation: Observation) -> Verdict:
    if observation.agent_up:
        return Verdict(AGENT_TOKEN, False, "the DTMA agent accepts the console's token")
    if not observation.agent_refused:
        return Verdict(AGENT_TOKEN, None, "unknown: the agent did not answer")
    return Verdict(
        AGENT_TOKEN,
        True,
        f"the DTMA agent on {observation.name} refuses the console's token "
        f"({observation.agent_error}); install the agent again with this toolbox's token "
        f"(POST /api/v1/toolboxes/{observation.toolbox_id}/dtma/install)",
    )


def _metrics(observation: Observation, limits: Limits) -> list[Verdict]:
    system = observation.system or {}
    thresholds = {
        "cpu": limits.cpu_threshold,
        "memory": limits.memory_threshold,
        "disk": limits.disk_threshold,
    }
    verdicts = []
    for metric in METRICS:
        threshold = thresholds[metric]
        value = percent(system, metric)
        if value is None:
            verdicts.append(
                Verdict(metric, None, f"no {metric} reading", "warning", threshold=threshold)
            )
            continue
        above = value > threshold
        relation = "above" if above else "within"
        verdicts.append(
            Verdict(
                metric,
                above,
                f"{metric} at {value:.1f}% ({relation} the {threshold:g}% threshold)",
                "warning",
                value=value,
                threshold=threshold,
                trip_after=limits.threshold_checks,
            )
        )
    return verdicts


def percent(system: dict[str, Any], metric: str) -> float | None:
    reading = system.get(metric)
    if not isinstance(reading, dict):
        return None
    value = reading.get("percent")
    return float(value) if isinstance(value, int | float) else None


def _tool_exited(instance: ToolInstance) -> Verdict:
    check = TOOL_EXITED + instance.name
    if instance.state not in EXITED_STATES:
        return Verdict(check, False, f"tool instance {instance.name} is {instance.state}")
    if instance.stopped_on_purpose:
        return Verdict(
            check, False, f"tool instance {instance.name} was stopped through the console"
        )
    detail = f" ({instance.status_text})" if instance.status_text else ""
    return Verdict(
        check,
        True,
        f"tool instance {instance.name} is {instance.state}{detail} and nobody stopped it",
    )


def _restart_loop(
    instance: ToolInstance, limits: Limits, memory: dict[str, Any], now: datetime
) -> Verdict:
    """Docker restarting a tool again and again: its restart count climbs by at least
    `restart_loop_restarts` within the recovery window.

    The memory keeps the restart count each time it changed, so that the count at the
    start of the window is known without a row per cycle."""
    check = TOOL_RESTART_LOOP + instance.name
    window_start = now - timedelta(seconds=limits.recovery_window_seconds)
    changes = [(datetime.fromisoformat(at), int(c)) for at, c in memory.get("restart_counts", [])]
    count = instance.restart_count
    if changes and count < changes[-1][1]:
        changes = []  # the container was recreated: its count started again
    if not changes or changes[-1][1] != count:
        changes.append((now, count))
    before = [(at, c) for at, c in changes if at <= window_start]
    # The last change before the window gives the count at its start; older ones go.
    kept = before[-1:] + [(at, c) for at, c in changes if at > window_start]
    climbed = count - kept[0][1]
    minutes = limits.recovery_window_seconds / 60
    return Verdict(
        check,
        climbed >= limits.restart_loop_restarts,
        f"tool instance {instance.name} was restarted {climbed} time(s) by Docker "
        f"in the last {minutes:g} min",
        "warning",
        value=float(climbed),
        threshold=float(limits.restart_loop_restarts),
        memory={"restart_counts": [[at.isoformat(), c] for at, c in kept]},
    )
