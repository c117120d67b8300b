"""RunEvents -> ConsoleResult: status, per-host counts, per-task outcomes, data, message.

The result is built only from the (already redacted) public events, plus what the
executor knows about how the process ended, so nothing reaches a result that an event
subscriber could not see.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from runner import error_codes
from runner.models import ConsoleResult, HostCounts, RunEvent, RunStatus, TaskOutcome
from runner.sentences import describe

Ending = Literal["finished", "timeout", "canceled", "crashed", "refused"]

_END_STATUS = {
    "task_ok": "ok",
    "task_changed": "changed",
    "task_failed": "failed",
    "task_skipped": "skipped",
    "task_unreachable": "unreachable",
}
_ITEMS_FAILED = "One or more items failed"
_UNKNOWN_HOST_KEY = re.compile(r"No \S+ host key is known for")
_ANSIBLE_ERROR = ("[ERROR]", "ERROR!")
_HOST_KEY_CHANGED = ("REMOTE HOST IDENTIFICATION HAS CHANGED", "Host key verification failed")


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)


def failure_text(data: Mapping[str, Any], task: str) -> str:
    """The real reason a task failed: its msg, and rc + stderr for a command."""
    if data.get("censored"):
        return f"task '{task}' failed (its output is hidden by no_log)"
    message = _as_text(data.get("msg")) or f"task '{task}' failed"
    rc = data.get("rc")
    if isinstance(rc, int) and rc != 0:
        stderr = _as_text(data.get("stderr")).strip()
        message += f" (rc {rc})" + (f": {stderr}" if stderr else "")
    return message


def host_key_problem(data: Mapping[str, Any]) -> error_codes.Outcome | None:
    """`host_key_unknown` / `host_key_changed` when SSH refused the host's key."""
    reason = _as_text(data.get("msg"))
    if _UNKNOWN_HOST_KEY.search(reason):
        return "host_key_unknown"
    if any(marker in reason for marker in _HOST_KEY_CHANGED):
        return "host_key_changed"
    return None


def unreachable_text(host: str, data: Mapping[str, Any]) -> str:
    """Why a host could not be reached; a host key mismatch says so in plain words."""
    problem = host_key_problem(data)
    if problem == "host_key_unknown":
        return f"host key for {host} is not known (not in the pinned known_hosts)"
    if problem == "host_key_changed":
        return f"host key for {host} changed"
    return _as_text(data.get("msg")).strip() or "unreachable"


def _merge(old: Any, new: Any, aggregate: bool) -> Any:
    """ansible's set_stats semantics: `aggregate` merges dicts and extends lists."""
    if aggregate and isinstance(old, dict) and isinstance(new, dict):
        merged = dict(old)
        for key, value in new.items():
            merged[key] = _merge(merged.get(key), value, True) if key in merged else value
        return merged
    if aggregate and isinstance(old, list) and isinstance(new, list):
        return old + new
    return new


def _joined(parts: dict[str, str]) -> str:
    if len(parts) == 1:
        return next(iter(parts.values()))
    return "; ".join(f"{host}: {text}" for host, text in parts.items())


@dataclass
class ResultBuilder:
    """Collects one run's events; `build()` turns them into the ConsoleResult."""

    run_id: str
    action: str
    toolbox_id: str | None
    playbook: str
    hosts: list[str]
    timeout: int
    check: bool = False
    tasks: list[TaskOutcome] = field(default_factory=list)
    stats: dict[str, HostCounts] | None = None
    failures: dict[str, str] = field(default_factory=dict)
    unreachable: dict[str, str] = field(default_factory=dict)
    host_key_problems: dict[str, error_codes.Outcome] = field(default_factory=dict)
    item_failures: dict[tuple[str, str], str] = field(default_factory=dict)
    running: dict[str, str] = field(default_factory=dict)
    output: list[str] = field(default_factory=list)
    per_host_data: dict[str, dict[str, Any]] = field(default_factory=dict)
    global_data: dict[str, Any] = field(default_factory=dict)

    def add(self, event: RunEvent) -> None:
        host, task, data = event.host or "", event.task or "", event.data
        if event.type == "task_start":
            self.running[host] = task
        elif event.type == "task_interrupted":
            self.running.pop(host, None)
        elif event.type in _END_STATUS:
            self._task_end(event.type, host, task, data)
        elif event.type == "item_failed":
            self.item_failures.setdefault((host, task), failure_text(data, task))
        elif event.type == "run_stats":
            self.stats = {h: HostCounts(**c) for h, c in data.get("hosts", {}).items()}
        elif event.type == "output":
            self.output.append(str(data.get("text", "")))

    def _task_end(self, type_: str, host: str, task: str, data: Mapping[str, Any]) -> None:
        self.running.pop(host, None)
        status = _END_STATUS[type_]
        msg = _as_text(data.get("msg") or data.get("skip_reason"))
        if type_ == "task_failed":
            msg = failure_text(data, task)
            if _as_text(data.get("msg")) == _ITEMS_FAILED and (host, task) in self.item_failures:
                msg = self.item_failures[(host, task)]
            if not data.get("ignored"):
                self.failures.setdefault(host, msg)
        elif type_ == "task_unreachable":
            msg = unreachable_text(host, data)
            self.unreachable.setdefault(host, msg)
            problem = host_key_problem(data)
            if problem is not None:
                self.host_key_problems.setdefault(host, problem)
        elif data.get("censored"):
            msg = "(output hidden by no_log)"
        self.tasks.append(TaskOutcome(host=host, task=task, status=status, msg=msg))  # type: ignore[arg-type]
        stats = data.get("set_stats")
        if isinstance(stats, Mapping):
            self._published(host, stats)

    def _published(self, host: str, stats: Mapping[str, Any]) -> None:
        """set_stats of one host: merged like ansible does, and attributed to that host."""
        aggregate = stats["aggregate"]
        own = self.per_host_data.setdefault(host, {})
        for key, value in stats["data"].items():
            if not stats["per_host"]:
                self.global_data[key] = _merge(self.global_data.get(key), value, aggregate)
            if isinstance(value, Mapping) and list(value) == [host]:
                value = value[host]  # a role that keys its result by inventory_hostname
            own[key] = _merge(own.get(key), value, aggregate)

    # -- the result ----------------------------------------------------------------------
    def _counts(self) -> dict[str, HostCounts]:
        if self.stats is not None:
            counts = dict(self.stats)
        else:  # no stats event (timeout, cancel): count what the events showed
            tally: dict[str, dict[str, int]] = {}
            for outcome in self.tasks:
                row = tally.setdefault(outcome.host, dict.fromkeys(HostCounts.model_fields, 0))
                column = "ok" if outcome.status == "changed" else outcome.status
                row[column] += 1
                row["changed"] += outcome.status == "changed"
            counts = {host: HostCounts(**row) for host, row in tally.items()}
        for host in self.hosts:
            counts.setdefault(host, HostCounts())
        return counts

    def _data(self) -> dict[str, Any]:
        """ansible's merged stats, plus per_host[host][key] for every host that published.

        In a single-host run, a value that host published only per host is also data[key].
        """
        per_host = {host: dict(values) for host, values in self.per_host_data.items() if values}
        data = dict(self.global_data)
        if len(self.hosts) == 1:
            for key, value in per_host.get(self.hosts[0], {}).items():
                data.setdefault(key, value)
        return {**data, "per_host": per_host}

    def _ansible_error(self, rc: int | None) -> str:
        lines = [line for text in self.output for line in text.splitlines()]
        for index, line in enumerate(lines):
            if line.lstrip().startswith(_ANSIBLE_ERROR):
                return "\n".join(lines[index:]).strip()
        if lines:
            return "\n".join(lines[-20:]).strip()
        return f"ansible-playbook exited with rc {rc} before running any task"

    def _where(self) -> str:
        if not self.running:
            return ""
        return " while running " + ", ".join(f"'{t}' on {h}" for h, t in self.running.items())

    def _status(
        self, ending: Ending, rc: int | None, counts: dict[str, HostCounts], crash: str | None
    ) -> tuple[RunStatus, str | None]:
        if ending == "canceled":
            return "canceled", "canceled on request" + self._where()
        if ending == "timeout":
            return "timeout", f"timed out after {self.timeout} s" + self._where()
        if ending in ("crashed", "refused"):
            return "error", crash or "the run could not be executed"
        if self.stats is None:
            return "error", self._ansible_error(rc)
        if self.unreachable:
            return "unreachable", _joined(self.unreachable)
        if self.failures:
            return "failed", _joined(self.failures)
        missing = [host for host in self.hosts if host not in self.stats]
        if missing:
            return "failed", "not in the inventory: " + ", ".join(missing)
        if rc not in (0, None) or any(c.failed or c.unreachable for c in counts.values()):
            return "failed", self._ansible_error(rc)
        return "successful", None

    def _outcome(
        self, status: RunStatus, refused: error_codes.Outcome | None = None
    ) -> error_codes.Outcome | None:
        """How the run ended, for its error code (None when it succeeded)."""
        if status == "successful":
            return None
        if refused is not None:
            return refused
        if status == "unreachable" and self.host_key_problems:
            return next(iter(self.host_key_problems.values()))
        return status

    def build(
        self,
        *,
        ending: Ending,
        rc: int | None,
        started_at: datetime,
        finished_at: datetime,
        crash: str | None = None,
        refused: error_codes.Outcome | None = None,
        inventory: Mapping[str, Any] | None = None,
        note: str | None = None,
    ) -> ConsoleResult:
        """`refused`: the run never started, for that reason (`crash` says why); `inventory`:
        where the run's inventory came from (data.inventory); `note` ends the message."""
        counts = self._counts()
        status, error = self._status(ending, rc, counts, crash)
        data = self._data()
        if inventory is not None:
            data["inventory"] = dict(inventory)
        error_code = error_codes.classify(self._outcome(status, refused), self.failures.values())
        if self.check:
            data["check_mode"] = True
        return ConsoleResult(
            run_id=self.run_id,
            action=self.action,
            toolbox_id=self.toolbox_id,
            status=status,
            success=status == "successful",
            message=describe(self.action, self.hosts, status, error, data, counts, self.check)
            + (f" ({note})" if note else ""),
            error=error,
            error_code=error_code,
            started_at=started_at,
            finished_at=finished_at,
            duration_ms=int((finished_at - started_at).total_seconds() * 1000),
            hosts=counts,
            tasks=self.tasks,
            data=data,
        )
