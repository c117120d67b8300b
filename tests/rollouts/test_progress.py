"""runner/rollout.py: the batches ansible makes of a rollout's hosts, and each host's state
read from a run's events (the shapes runner/events.py emits), without a fleet."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from runner.rollout import RolloutProgress, planned_batches

NOW = datetime(2026, 12, 1, tzinfo=UTC)


def _events(*specs: tuple[str, str | None, dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {"seq": n, "run_id": "r", "type": kind, "host": host, "task": "t", "at": NOW, "data": data}
        for n, (kind, host, data) in enumerate(specs, start=1)
    ]


def test_batches_are_a_canary_then_fixed_size_groups_in_name_order() -> None:
    hosts = ["tb-5", "tb-1", "tb-3", "tb-2", "tb-4"]
    assert planned_batches(hosts, 2) == [["tb-1"], ["tb-2", "tb-3"], ["tb-4", "tb-5"]]
    assert planned_batches(hosts, 2, canary=False) == [["tb-1", "tb-2"], ["tb-3", "tb-4"], ["tb-5"]]
    assert planned_batches(["tb-1"], 3) == [["tb-1"]]
    with pytest.raises(ValueError):
        planned_batches(hosts, 0)


def test_a_halted_run_leaves_the_untouched_hosts_not_started_never_done() -> None:
    progress = RolloutProgress.of([["a"], ["b", "c"]])
    rolled_back = {"set_stats": {"data": {"dtma_result": {"a": {
        "rolled_back": True, "reason": "redeploy failed; rolled back to 1.0"}}},
        "per_host": False, "aggregate": True}}  # fmt: skip
    progress.add_all(_events(
        ("play_start", None, {}),
        ("task_start", "a", {}),
        ("task_changed", "a", {}),
        ("task_ok", "a", rolled_back),
        ("task_failed", "a", {"msg": "the agent did not verify"}),
    ))  # fmt: skip
    assert progress.hosts["a"].state == "rolled_back"
    assert progress.hosts["b"].state == "pending" and progress.status() == "running"
    progress.add_all(_events(
        ("run_stats", None, {"hosts": {"a": {"failed": 1}}}),
        ("run_end", None, {"status": "failed"}),
    ))  # fmt: skip
    assert progress.hosts["a"].message == "redeploy failed; rolled back to 1.0"
    assert [progress.hosts[h].state for h in "bc"] == ["not_started", "not_started"]
    assert progress.status() == "halted"


def test_a_batch_is_done_when_the_next_one_starts_and_a_cut_batch_is_not_reported_done() -> None:
    progress = RolloutProgress.of([["a"], ["b"], ["c"]])
    progress.add_all(_events(
        ("play_start", None, {}), ("task_start", "a", {}), ("task_changed", "a", {}),
        ("play_start", None, {}), ("task_start", "b", {}),
    ))  # fmt: skip
    assert (progress.hosts["a"].state, progress.hosts["a"].batch) == ("successful", 0)
    assert progress.hosts["b"].state == "running"
    progress.add_all(_events(("run_end", None, {"status": "canceled"})))
    # b only began (nothing changed): not started; c never began.
    assert [progress.hosts[h].state for h in "bc"] == ["not_started", "not_started"]
    assert progress.status() == "canceled"


def test_a_host_cut_short_after_a_change_is_failed_with_the_task() -> None:
    progress = RolloutProgress.of([["a", "b"]])
    progress.add_all(_events(
        ("play_start", None, {}), ("task_start", "a", {}), ("task_changed", "a", {}),
        ("task_start", "a", {}), ("task_unreachable", "b", {"msg": "ssh: connection refused"}),
        ("run_end", None, {"status": "timeout"}),
    ))  # fmt: skip
    assert progress.hosts["a"].state == "failed" and "during 't'" in progress.hosts["a"].message
    assert progress.hosts["b"].message == "ssh: connection refused"
    assert progress.status() == "failed"
