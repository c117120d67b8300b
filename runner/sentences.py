"""The human sentence of a ConsoleResult, from what the roles published with set_stats."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from runner.models import HostCounts, RunStatus

# What the roles publish (see roles/*/README.md), in the order they are looked at.
RESULT_KEYS = ("tool_result", "dtma_result")


def _published(data: Mapping[str, Any]) -> str | None:
    for key in RESULT_KEYS:
        value = data.get(key)
        if isinstance(value, Mapping):
            for field in ("message", "msg"):
                if isinstance(value.get(field), str) and value[field].strip():
                    return str(value[field]).strip()
    return None


def describe(
    action: str,
    hosts: list[str],
    status: RunStatus,
    error: str | None,
    data: Mapping[str, Any],
    counts: Mapping[str, HostCounts],
) -> str:
    where = ", ".join(hosts)
    if status == "successful":
        published = _published(data)
        if published:
            return published
        changed = sum(c.changed for c in counts.values())
        what = f"{changed} change(s)" if changed else "nothing to change"
        return f"{action} succeeded on {where} ({what})."
    reason = f": {error}" if error else ""
    if status == "unreachable":
        return f"{action} could not reach {where}{reason}"
    if status == "timeout":
        return f"{action} on {where} {error or 'timed out'}."
    if status == "canceled":
        return f"{action} on {where} was canceled."
    if status == "error":
        return f"{action} could not run{reason}"
    return f"{action} failed on {where}{reason}"
