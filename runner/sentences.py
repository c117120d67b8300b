"""The human sentence of a ConsoleResult, from what the roles published with set_stats.

The roles publish `tool_result` (tool_instance) and `dtma_result` (dtma); see their
tasks/publish.yml. A result without published data gets a generic sentence.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from runner.models import HostCounts, RunStatus

_TOOL_VERBS = {
    "deploy": "deployed",
    "start": "started",
    "stop": "stopped",
    "restart": "restarted",
    "remove": "removed",
}
_DTMA_VERBS = {
    "install": "installed",
    "restart": "restarted",
    "redeploy": "redeployed",
    "rollback": "rolled back",
}


def _tool_sentence(host: str, result: Mapping[str, Any]) -> str:
    action, name = result.get("action"), result.get("instance")
    if action == "list":
        instances = result.get("instances") or []
        listed = ", ".join(f"{i.get('instance')} ({i.get('state')})" for i in instances)
        return f"{len(instances)} tool instance(s) on {host}" + (f": {listed}." if listed else ".")
    if action == "logs":
        lines = result.get("lines") or []
        return f"{len(lines)} log line(s) of tool instance '{name}' on {host}."
    verb = _TOOL_VERBS.get(str(action), f"{action} done")
    before, after = result.get("state_before"), result.get("state_after")
    return f"Tool instance '{name}' on {host} {verb}: now {after} (was {before})."


def _dtma_sentence(host: str, result: Mapping[str, Any]) -> str:
    health = "healthy" if result.get("healthy") in (True, "True", "true") else "not healthy"
    if result.get("action") == "status":
        state = result.get("active_state", "unknown")
        return f"DTMA agent on {host}: {state}, release {result.get('release')}, {health}."
    verb = _DTMA_VERBS.get(str(result.get("action")), f"{result.get('action')} done")
    before, after = result.get("version_before"), result.get("version_after")
    rolled_back = ", rolled back" if result.get("rolled_back") in (True, "True", "true") else ""
    if before is None:  # nothing was installed before: a first install
        return f"DTMA agent on {host} {verb} {after}{rolled_back}, {health}."
    versions = f"version {before}" if before == after else f"version {before} -> {after}"
    return f"DTMA agent on {host} {verb} ({versions}{rolled_back}), {health}."


def _published(data: Mapping[str, Any]) -> str | None:
    sentences = []
    for host, values in (data.get("per_host") or {}).items():
        if isinstance(values.get("tool_result"), Mapping):
            sentences.append(_tool_sentence(host, values["tool_result"]))
        if isinstance(values.get("dtma_result"), Mapping):
            sentences.append(_dtma_sentence(host, values["dtma_result"]))
    return " ".join(sentences) or None


def describe(
    action: str,
    hosts: list[str],
    status: RunStatus,
    error: str | None,
    data: Mapping[str, Any],
    counts: Mapping[str, HostCounts],
    check: bool = False,
) -> str:
    where = ", ".join(hosts)
    if check and status == "successful":
        # Check mode changed nothing: never report what the roles say they did as done.
        changed = sum(c.changed for c in counts.values())
        would = f"{changed} task(s) would change something" if changed else "nothing would change"
        return f"Check mode: {action} changed nothing on {where} ({would})."
    if check:
        reason = f": {error}" if error else "."
        return f"Check mode: {action} changed nothing on {where}, and its check failed{reason}"
    if status == "successful":
        published = _published(data)
        if published:
            return published
        changed = sum(c.changed for c in counts.values())
        what = f"{changed} change(s)" if changed else "nothing to change"
        return f"{action} succeeded on {where} ({what})."
    reason = f": {error}" if error else "."
    if status == "unreachable":
        return f"{action} could not reach {where}{reason}"
    if status == "timeout":
        return f"{action} on {where} {error or 'timed out'}."
    if status == "canceled":
        return f"{action} on {where} was canceled."
    if status == "error":
        return f"{action} could not run{reason}"
    return f"{action} failed on {where}{reason}"
