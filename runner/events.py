"""ansible-runner's raw events -> the console's RunEvent (see DESIGN.md), redacted.

Only a curated set of result fields leaves this module (a module's full return value can
hold anything, e.g. a container's environment); results that ansible censored for
`no_log` are reduced to `{"censored": true}`; every string passes through the Redactor.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from runner.models import RunEvent
from runner.redact import Redactor

MAX_TEXT = 4000
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# The ssh-agent wrapper that feeds the private key prints this; it is not ansible output.
_WRAPPER_NOISE = ("Identity added:",)

_TASK_END = {
    "runner_on_failed": "task_failed",
    "runner_on_skipped": "task_skipped",
    "runner_on_unreachable": "task_unreachable",
    "runner_item_on_ok": "item_ok",
    "runner_item_on_failed": "item_failed",
    "runner_item_on_skipped": "item_skipped",
    "runner_retry": "task_retry",
}
_DISPLAYED_ERROR = re.compile(r"\[ERROR\]: (.*?)(?:\nOrigin:|\n\n|\nfatal:|$)", re.DOTALL)
_RESULT_TEXT = ("msg", "stdout", "stderr", "skip_reason")
_RESULT_PLAIN = ("rc", "changed", "attempts", "retries")


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


def _clip(text: str) -> str:
    """Long output keeps its end, where errors are."""
    return text if len(text) <= MAX_TEXT else "…" + text[-MAX_TEXT:]


def _text(value: Any) -> Any:
    return _clip(value) if isinstance(value, str) else value


def result_data(
    event_data: Mapping[str, Any], secret_outputs: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """The curated, public part of one task result (without secret set_stats keys)."""
    res = event_data.get("res") or {}
    data: dict[str, Any] = {}
    if event_data.get("task_action"):
        data["action"] = event_data["task_action"]
    if event_data.get("role"):
        data["role"] = event_data["role"]
    if isinstance(event_data.get("duration"), (int, float)):
        data["duration"] = round(float(event_data["duration"]), 3)
    if event_data.get("ignore_errors"):
        data["ignored"] = True
    if not isinstance(res, Mapping):
        return data
    if "censored" in res:
        data["censored"] = True
        return data
    for key in _RESULT_TEXT:
        if res.get(key) not in (None, ""):
            data[key] = _text(res[key])
    for key in _RESULT_PLAIN:
        if key in res:
            data[key] = res[key]
    if "_ansible_item_label" in res or "item" in res:
        data["item"] = res.get("_ansible_item_label", res.get("item"))
    stats = res.get("ansible_stats")
    if isinstance(stats, Mapping) and isinstance(stats.get("data"), Mapping):
        data["set_stats"] = {
            "data": {k: v for k, v in stats["data"].items() if k not in secret_outputs},
            "per_host": bool(stats.get("per_host")),
            "aggregate": bool(stats.get("aggregate", True)),
        }
    return data


def _connection_error(raw: Mapping[str, Any]) -> str:
    """Why a host was unreachable in a no_log task.

    no_log hides the task's result, but the reason is ssh's, not the task's, and ansible
    still displays it: the `[ERROR]: ...` line of the event's display text.
    """
    text = strip_ansi(str(raw.get("stdout") or "")).replace("\r\n", "\n")
    found = _DISPLAYED_ERROR.search(text)
    return " ".join(found.group(1).split()) if found else "unreachable"


def _stats_data(event_data: Mapping[str, Any]) -> dict[str, Any]:
    columns = {
        "ok": "ok",
        "changed": "changed",
        "failed": "failures",
        "unreachable": "dark",
        "skipped": "skipped",
        "rescued": "rescued",
        "ignored": "ignored",
    }
    hosts: set[str] = set()
    for source in columns.values():
        if isinstance(event_data.get(source), Mapping):
            hosts.update(event_data[source])
    counts = {
        host: {
            name: int((event_data.get(source) or {}).get(host, 0))
            for name, source in columns.items()
        }
        for host in sorted(hosts)
    }
    return {"hosts": counts}


def _parse_time(value: Any) -> datetime:
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            parsed = None
        if parsed is not None:
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return datetime.now(UTC)


class EventNormaliser:
    """Turns one run's raw events into RunEvents with `seq` strictly increasing from 1."""

    def __init__(
        self, run_id: str, redact: Redactor, secret_outputs: frozenset[str] = frozenset()
    ) -> None:
        self.run_id = run_id
        self._redact = redact
        self._secret_outputs = secret_outputs
        self._seq = 0
        self._changed_items: set[tuple[str, str]] = set()

    def make(
        self,
        type_: str,
        *,
        host: str | None = None,
        task: str | None = None,
        data: Mapping[str, Any] | None = None,
        at: datetime | None = None,
    ) -> RunEvent:
        """A new event of this run (the only place a `seq` is handed out)."""
        self._seq += 1
        redact = self._redact
        return RunEvent(
            seq=self._seq,
            run_id=self.run_id,
            type=type_,
            host=host,
            task=redact.text(task) if task is not None else None,
            at=at or datetime.now(UTC),
            data=redact(dict(data or {})),
        )

    def _censored_changed(self, raw: Mapping[str, Any], kind: str) -> bool:
        """Whether a no_log result changed something: ansible-runner drops the flag from
        the result but its display line still says `changed:` (for a loop, its items do)."""
        event_data = raw.get("event_data") or {}
        key = (str(event_data.get("host")), str(event_data.get("task_uuid")))
        changed = strip_ansi(str(raw.get("stdout") or "")).lstrip().startswith("changed:")
        if kind == "runner_item_on_ok":
            if changed:
                self._changed_items.add(key)
            return changed
        return changed or key in self._changed_items

    def normalise(self, raw: Mapping[str, Any]) -> RunEvent | None:
        """The RunEvent for one raw ansible-runner event, or None when it carries nothing."""
        kind = raw.get("event")
        event_data = raw.get("event_data") or {}
        at = _parse_time(raw.get("created"))
        host, task = event_data.get("host"), event_data.get("task")
        build = self.make
        if kind == "runner_on_ok" or kind in _TASK_END:
            data = result_data(event_data, self._secret_outputs)
            if data.get("censored") and kind in ("runner_on_ok", "runner_item_on_ok"):
                data["changed"] = self._censored_changed(raw, kind)
            if data.get("censored") and kind == "runner_on_unreachable":
                data["msg"] = _connection_error(raw)
            if kind == "runner_on_ok":
                type_ = "task_changed" if data.get("changed") else "task_ok"
            else:
                type_ = _TASK_END[str(kind)]
            return build(type_, host=host, task=task, data=data, at=at)
        if kind == "runner_on_start":
            data = {k: v for k, v in result_data(event_data).items() if k in ("action", "role")}
            return build("task_start", host=host, task=task, data=data, at=at)
        if kind == "playbook_on_play_start":
            return build("play_start", data={"play": event_data.get("name", "")}, at=at)
        if kind == "playbook_on_stats":
            return build("run_stats", data=_stats_data(event_data), at=at)
        if kind in ("playbook_on_no_hosts_matched", "playbook_on_no_hosts_remaining"):
            return build(kind.removeprefix("playbook_on_"), at=at)
        if kind == "verbose":
            text = strip_ansi(str(raw.get("stdout") or "")).rstrip()
            if text.strip() and not text.startswith(_WRAPPER_NOISE):
                return build("output", data={"text": _clip(text)}, at=at)
        return None
