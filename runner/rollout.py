"""A rollout's batches and each host's state, read from the events of its one run.

A rollout is one playbook run with `serial` (playbooks/dtma_redeploy.yml, tool_deploy.yml,
tool_restart.yml: hosts in name order, a canary batch of one, then `batch` hosts at a
time). Ansible starts the play once per batch, so the n-th `play_start` event opens batch
n-1; a host belongs to the batch in which its first event came. A batch is done when the
next one starts or the run's stats arrive. Hosts that never had an event are `pending`
while the run goes on and `not_started` once it ended: a halted rollout never reports an
untouched host as done.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from runner.models import RunEvent
from runner.result import failure_text, unreachable_text

HostState = Literal[
    "pending", "running", "successful", "failed", "rolled_back", "not_started", "skipped"
]
# Where the roles publish a host's outcome (set_stats), and its rollback flag and reason.
PUBLISHED_KEYS = ("dtma_result", "tool_result")


def planned_batches(hosts: Iterable[str], batch: int, canary: bool = True) -> list[list[str]]:
    """The batches ansible makes of `hosts` with the playbooks' `order: sorted` and
    `serial: [1, batch]` (or `[batch]` without a canary)."""
    if batch < 1:
        raise ValueError("a batch holds at least one host")
    names = sorted(set(hosts))
    batches: list[list[str]] = []
    if canary and names:
        batches.append(names[:1])
        names = names[1:]
    batches.extend(names[i : i + batch] for i in range(0, len(names), batch))
    return batches


@dataclass
class HostProgress:
    batch: int | None = None
    state: HostState = "pending"
    message: str = ""
    task: str | None = None  # the task it runs now
    changed: bool = False  # a task changed something on it


@dataclass
class RolloutProgress:
    """Feed it the run's events in order; `hosts` then says where each host stands."""

    hosts: dict[str, HostProgress]
    batch: int = -1  # the batch in progress (-1: none started yet)
    ended: bool = False
    run_status: str | None = None
    _published: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def of(cls, batches: list[list[str]]) -> RolloutProgress:
        hosts = {h: HostProgress(batch=n) for n, names in enumerate(batches) for h in names}
        return cls(hosts=hosts)

    def add_all(self, events: Iterable[RunEvent | Mapping[str, Any]]) -> RolloutProgress:
        for event in events:
            self.add(event if isinstance(event, RunEvent) else RunEvent.model_validate(event))
        return self

    def add(self, event: RunEvent) -> None:
        kind, host, data = event.type, event.host, event.data
        if kind == "play_start":
            self._finish_batch()
            self.batch += 1
        elif kind == "run_stats":
            self._finish_batch(data.get("hosts") or {})
        elif kind == "run_end":
            self._end(str(data.get("status")))
        elif host is not None and host in self.hosts:
            self._host_event(kind, self.hosts[host], host, event)

    def _host_event(self, kind: str, progress: HostProgress, host: str, event: RunEvent) -> None:
        data, task = event.data, event.task or ""
        if progress.state == "pending":
            progress.state, progress.batch = "running", max(self.batch, 0)
        if kind == "task_start":
            progress.task = task
            if progress.state == "running":
                progress.message = f"running '{task}'"
            return
        progress.task = None
        if kind == "task_changed":
            progress.changed = True
        if kind == "task_failed" and not data.get("ignored") and progress.state == "running":
            progress.state, progress.message = "failed", failure_text(data, task)
        elif kind == "task_unreachable" and progress.state == "running":
            progress.state, progress.message = "failed", unreachable_text(host, data)
        stats = data.get("set_stats")
        if isinstance(stats, Mapping):
            for key in PUBLISHED_KEYS:
                value = (stats.get("data") or {}).get(key)
                if isinstance(value, Mapping):
                    own = value.get(host)
                    self._published[host] = dict(own if isinstance(own, Mapping) else value)
        published = self._published.get(host) or {}
        if progress.state == "failed" and published.get("rolled_back") is True:
            progress.state = "rolled_back"
            progress.message = str(published.get("reason") or progress.message)

    def _finish_batch(self, counts: Mapping[str, Mapping[str, int]] | None = None) -> None:
        """The batch in progress ended: its hosts that did not fail succeeded."""
        for host, progress in self.hosts.items():
            if progress.state != "running":
                continue
            row = (counts or {}).get(host) or {}
            if row.get("failures") or row.get("failed") or row.get("unreachable"):
                progress.state = "failed"
                progress.message = progress.message or "failed (see the run's events)"
                continue
            progress.state, progress.task = "successful", None
            published = self._published.get(host) or {}
            progress.message = _success_message(published)

    def _end(self, status: str) -> None:
        self.ended, self.run_status = True, status
        for progress in self.hosts.values():
            if progress.state == "pending":
                progress.state = "not_started"
                progress.message = "not started: the rollout ended before this host's batch"
            elif progress.state == "running":  # cut short (cancel, timeout)
                if progress.changed:
                    progress.state = "failed"
                    where = f" during '{progress.task}'" if progress.task else ""
                    progress.message = f"the run ended ({status}){where}; its outcome is unknown"
                else:
                    progress.state = "not_started"
                    progress.message = f"the run ended ({status}) before anything changed here"

    def status(self) -> str:
        """running | successful | failed | halted | canceled (the rollout's, not the run's)."""
        if not self.ended:
            return "running"
        states = {p.state for p in self.hosts.values()}
        if self.run_status == "canceled":
            return "canceled"
        if self.run_status == "successful" and states <= {"successful"}:
            return "successful"
        return "halted" if "not_started" in states else "failed"


def _success_message(published: Mapping[str, Any]) -> str:
    version = published.get("version_after")
    if version:
        return f"agent {version} serves"
    state, image = published.get("state_after"), published.get("image")
    if state:
        return f"{state}" + (f" ({image})" if image else "")
    return "done"
