"""Checks shared by the runner tests."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence

import psutil

from runner import RunEvent
from runner.processes import MARKER

TASK_ENDS = {"task_ok", "task_changed", "task_failed", "task_skipped", "task_unreachable"}
TASK_ENDS |= {"task_interrupted"}  # a task cut short by a cancel or a timeout


def run_processes(run_id: str) -> list[str]:
    """Live processes of a run (by the marker in their environment), as text."""
    found = []
    for process in psutil.process_iter():
        try:
            if process.environ().get(MARKER) == run_id and process.status() != "zombie":
                found.append(f"{process.pid} {' '.join(process.cmdline())}")
        except psutil.Error:
            continue
    return found


def docker_inspect(container: str, instance: str, template: str) -> str:
    """Read a tool instance's container state straight from the droplet's Docker engine."""
    return subprocess.run(
        ["docker", "exec", container, "docker", "inspect", "-f", template, instance],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout.strip()  # fmt: skip


def assert_event_order(events: Sequence[RunEvent], run_id: str) -> None:
    """seq strictly increasing from 1; run_start first, run_end last; every task start
    on a host ends before the next one starts there."""
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert {e.run_id for e in events} == {run_id}
    assert events[0].type == "run_start" and events[-1].type == "run_end"
    open_tasks: dict[str, str] = {}
    for event in events:
        if event.type == "task_start":
            assert event.host not in open_tasks, f"{event.task} started before {event.host} ended"
            open_tasks[str(event.host)] = str(event.task)
        elif event.type in TASK_ENDS:
            assert open_tasks.pop(str(event.host)) == event.task
    assert open_tasks == {}
