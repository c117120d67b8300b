"""Each tool action emits no more task results (DESIGN.md "Task results") than its ceiling:
restart's is issue 16's target, the others' are their counts after the hot paths were
shortened, so that none grows back. Every run must still succeed and the restart really
restart (read from the droplet's engine).

The actions are run here through the runner, as the console runs them, on an instance of
their own; stop, start, list and remove, when an earlier test of the session already ran them
the same way (same variables, one host, succeeded: what this test would run), are counted from
that run, which the `play` fixture recorded. Run alone, the test runs them all."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from runner import RunEvent, RunRequest, run_playbook
from sandbox import fleet
from tests.runner.conftest import api_inventory, make_request  # noqa: F401  (fixtures)
from tests.tools.helpers import PlaybookRun, RecordedRun, inspect, remove_containers

pytestmark = pytest.mark.sandbox

TASK_RESULTS = {"task_ok", "task_changed", "task_failed", "task_skipped", "task_unreachable"}
RESTART_TARGET = 12
# Counts measured after the reshaping (issue 16): a ceiling, not a goal.
CEILINGS = {
    "tool_deploy.yml": 38,
    "tool_restart.yml": RESTART_TARGET,
    "tool_stop.yml": 9,
    "tool_start.yml": 12,
    "tool_logs.yml": 7,
    "tool_list.yml": 5,
    "tool_remove.yml": 9,
}


# Actions whose count may come from an earlier test's run (restart's own assertions need the
# engine read before and after it, and logs and deploy are run with other variables there).
REUSABLE = {"tool_stop.yml", "tool_start.yml", "tool_list.yml", "tool_remove.yml"}


def _earlier_run(
    recorded: list[RecordedRun], playbook: str, extravars: dict[str, Any]
) -> PlaybookRun | None:
    """The session's first run of `playbook` with the same variables (up to the instance's
    name), limited to one host, without extra arguments, that succeeded."""
    for seen in recorded:
        if (seen.playbook, set(seen.extravars), seen.extra_args, seen.run.rc) == (
            playbook, set(extravars), (), 0
        ) and seen.host is not None and seen.host in seen.run.task_results:  # fmt: skip
            return seen.run
    return None


def _task_results(
    request_for: Callable[..., RunRequest], playbook: str, host: str, extravars: dict[str, Any]
) -> list[RunEvent]:
    events: list[RunEvent] = []
    result = run_playbook(request_for(playbook, [host], extravars=extravars), events.append)
    assert result.success, f"{playbook}: {result.error}"
    return [event for event in events if event.type in TASK_RESULTS]


def test_every_tool_action_stays_within_its_task_result_ceiling(
    sandbox: fleet.SandboxInfo,
    recorded_runs: list[RecordedRun],
    make_request: Callable[..., RunRequest],  # noqa: F811
) -> None:
    toolbox = sandbox.droplets[0]
    name = "tt-count"
    remove_containers(toolbox.container, name)
    deploy = {"tool_instance_name": name, "tool_instance_image": "dtma-tool-echo:1.0",
              "tool_instance_settle_seconds": 1}  # fmt: skip
    steps = [
        ("tool_deploy.yml", deploy),
        ("tool_restart.yml", {"tool_instance_name": name}),
        ("tool_stop.yml", {"tool_instance_name": name}),
        ("tool_start.yml", {"tool_instance_name": name}),
        ("tool_logs.yml", {"tool_instance_name": name}),
        ("tool_list.yml", {}),
        ("tool_remove.yml", {"tool_instance_name": name}),
    ]
    earlier = {
        playbook: run
        for playbook, extravars in steps
        if playbook in REUSABLE and (run := _earlier_run(recorded_runs, playbook, extravars))
    }
    # Stop and start both from earlier runs or both here: otherwise this start would not be
    # from a stopped instance, or the logs would be read from a stopped one.
    if not {"tool_stop.yml", "tool_start.yml"} <= set(earlier):
        earlier.pop("tool_stop.yml", None)
        earlier.pop("tool_start.yml", None)
    counts = {playbook: max(run.task_results.values()) for playbook, run in earlier.items()}
    try:
        for playbook, extravars in steps:
            if playbook in earlier:
                continue
            before = inspect(toolbox.container, name)
            results = _task_results(make_request, playbook, toolbox.name, extravars)
            counts[playbook] = len(results)
            if playbook == "tool_restart.yml":  # the short path still restarts and verifies
                after = inspect(toolbox.container, name)
                assert before is not None and after is not None
                assert after["State"]["StartedAt"] != before["State"]["StartedAt"]
                ran = {str(event.task) for event in results if event.type != "task_skipped"}
                assert "Read the tool instance again after the settle window" in ran
    finally:
        remove_containers(toolbox.container, name)
    over = {pb: (n, CEILINGS[pb]) for pb, n in counts.items() if n > CEILINGS[pb]}
    assert over == {}, f"task results above the ceiling (count, ceiling): {over}; all: {counts}"
    assert counts["tool_restart.yml"] <= RESTART_TARGET
