"""Filters of the tool_instance role, so that its hot paths need no set_fact chain and no Jinja
namespace loop: a container's state without its environment, and log lines merged in order
with every secret value masked."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

MASK = "********"
# What a read that found no container (or could not ask Docker) leaves.
ABSENT: dict[str, Any] = {
    "exists": False, "readable": True, "error": "", "state": "absent", "running": False,
    "managed": False, "id": "", "image": "", "image_id": "", "health": "", "started_at": "",
    "finished_at": "", "exit_code": None, "restart_count": 0, "settle_seconds": "", "ports": [],
}  # fmt: skip


def tool_instance_state(info: Mapping[str, Any] | None) -> dict[str, Any]:
    """The state of a container read by docker_container_info, without its environment."""
    info = info or {}
    if "exists" not in info:  # the read failed, or was skipped
        error = str(info.get("msg") or "no answer from the Docker engine")
        return {**ABSENT, "readable": False, "error": error}
    if not info["exists"]:
        return dict(ABSENT)
    container = info.get("container") or {}
    state = container.get("State") or {}
    labels = (container.get("Config") or {}).get("Labels") or {}
    bindings = (container.get("HostConfig") or {}).get("PortBindings") or {}
    return {
        "exists": True,
        "readable": True,
        "error": "",
        "id": container.get("Id", ""),
        "image": (container.get("Config") or {}).get("Image", ""),
        "image_id": container.get("Image", ""),
        "state": state.get("Status", ""),
        "running": bool(state.get("Running")),
        "health": (state.get("Health") or {}).get("Status", ""),
        "started_at": state.get("StartedAt", ""),
        "finished_at": state.get("FinishedAt", ""),
        "exit_code": state.get("ExitCode"),
        "restart_count": container.get("RestartCount", 0),
        "managed": labels.get("dtma.managed", "") == "true",
        "settle_seconds": labels.get("dtma.settle_seconds", ""),
        # Published ports as "host_ip:host_port->container_port/protocol".
        "ports": [
            f"{binding.get('HostIp') or ''}:{binding.get('HostPort')}->{target}"
            for target, targets in bindings.items()
            for binding in targets or []
        ],
    }


def _secrets(container: Mapping[str, Any] | None, env: Mapping[str, Any] | None) -> list[str]:
    """Values to mask, longest first: the container's env values that the deploy set (label
    dtma.env_keys; all of them when the container does not say) and the requested env's."""
    found: list[str] = []
    container = container or {}
    config = container.get("Config") or {}
    keys = (config.get("Labels") or {}).get("dtma.env_keys")
    wanted = None if keys is None else set(keys.split(","))
    for entry in config.get("Env") or []:
        key, sep, value = str(entry).partition("=")
        if sep and value and (wanted is None or key in wanted):
            found.append(value)
    found += [str(value) for value in (env or {}).values() if str(value)]
    return sorted(set(found), key=len, reverse=True)


def tool_instance_redact(text: Any, env: Mapping[str, Any] | None) -> str:
    """`text` with every value of the requested environment masked."""
    out = "" if text is None else str(text)
    for secret in _secrets(None, env):
        out = out.replace(secret, MASK)
    return out


def _merged(stdout_lines: Iterable[str], stderr_lines: Iterable[str]) -> list[tuple[str, str, str]]:
    """`docker logs --timestamps` output, stdout and stderr merged back in order by their
    fixed-width timestamps: (at, stream, text)."""
    entries = []
    for stream, lines in (("stdout", stdout_lines), ("stderr", stderr_lines)):
        for line in lines or []:
            at, _, text = str(line).partition(" ")
            entries.append((at, stream, text))
    return sorted(entries, key=lambda entry: entry[0])


def tool_instance_log_entries(logs: Mapping[str, Any], tail: int) -> list[dict[str, str]]:
    """The last `tail` lines of a `docker logs --timestamps` result as {at, stream, text}."""
    merged = _merged(logs.get("stdout_lines") or [], logs.get("stderr_lines") or [])
    return [{"at": at, "stream": stream, "text": text} for at, stream, text in merged[-int(tail) :]]


def tool_instance_masked_tail(
    logs: Mapping[str, Any] | None, info: Mapping[str, Any] | None, env: Mapping[str, Any] | None,
    count: int,
) -> list[str]:  # fmt: skip
    """The last `count` log lines (text only) with every environment value masked."""
    logs = logs or {}
    secrets = _secrets((info or {}).get("container"), env)
    merged = _merged(logs.get("stdout_lines") or [], logs.get("stderr_lines") or [])
    lines = []
    for _, _, text in merged[-int(count) :]:
        for secret in secrets:
            text = text.replace(secret, MASK)
        lines.append(text)
    return lines


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "tool_instance_state": tool_instance_state,
            "tool_instance_redact": tool_instance_redact,
            "tool_instance_log_entries": tool_instance_log_entries,
            "tool_instance_masked_tail": tool_instance_masked_tail,
        }
