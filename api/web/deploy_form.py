"""The Deploy form: what the operator typed, turned into the API's DeployTool, with every
problem reported next to the field it concerns."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from api.schemas import role_rules as rules
from api.schemas.actions import DeployTool, HealthCheck

FIELDS = (
    "name",
    "image",
    "ports",
    "env",
    "command",
    "restart_policy",
    "memory",
    "cpus",
    "settle_seconds",
    "volumes",
    "labels",
    "log_max_size",
    "log_max_file",
    "health_command",
    "health_interval",
    "health_timeout",
    "health_retries",
    "health_start_period",
)
# Form field -> HealthCheck field, for the health check's number fields.
_HEALTH_NUMBERS = {
    "health_interval": "interval_seconds",
    "health_timeout": "timeout_seconds",
    "health_retries": "retries",
    "health_start_period": "start_period_seconds",
}
_HEALTH_FIELDS = {number: form for form, number in _HEALTH_NUMBERS.items()} | {
    "test": "health_command"
}
RESTART_POLICIES = ("unless-stopped", "always", "on-failure", "no")
_PORT = re.compile(
    r"^(?:(?P<ip>\d{1,3}(?:\.\d{1,3}){3}):)?(?P<host>\d{1,5}):(?P<container>\d{1,5})"
    r"(?:/(?P<protocol>tcp|udp))?$"
)
_ITEM = {"ports": "port", "command": "argument", "volumes": "volume"}
# NAME:/path or NAME:/path:ro (the path's own rules are the API's, from the role).
_VOLUME = re.compile(r"^(?P<name>[^:\s]+):(?P<target>[^:\s]+)(?::(?P<mode>ro|rw))?$")
_FRIENDLY = {
    "name": "use 1-63 lowercase letters, digits, '.', '_' or '-', starting with a letter or digit",
    "image": "not an image reference such as dtma-tool-echo:1.0 or registry/app:2",
    "memory": "a size such as 256m or 1g (k, m, g), or 0 for no limit",
    "log_max_size": "a size such as 100k or 10m, at most 1g",
    "volumes": "NAME:/path: a volume name (letters, digits, . _ -, never a host path) at an "
    "absolute path inside the container",
    "labels": "keys are lowercase letters, digits, '.', '/', '_' or '-', like com.example.team",
}


@dataclass(frozen=True)
class NumberInput:
    """What the browser is told about a number field, as attribute text: its bounds (the
    same the API and the role apply) and the default it gets when left empty."""

    min: str
    max: str
    step: str
    default: str


def _number(bound: str, default: float, step: str = "1") -> NumberInput:
    bounds = rules.TOOL_BOUNDS[bound]
    return NumberInput(f"{bounds.min:g}", f"{bounds.max:g}", step, f"{default:g}")


def _health_default(name: str) -> float:
    default = HealthCheck.model_fields[name].default
    return float(default)


NUMBERS = {
    "cpus": _number("cpus", 0, step="0.01"),
    "settle_seconds": _number("settle_seconds", float(rules.tool_default("settle_seconds"))),
    "log_max_file": _number("log_max_file", float(rules.tool_default("log_max_file"))),
    "health_interval": _number("healthcheck_interval", _health_default("interval_seconds")),
    "health_timeout": _number("healthcheck_timeout", _health_default("timeout_seconds")),
    "health_retries": _number("healthcheck_retries", _health_default("retries")),
    "health_start_period": _number(
        "healthcheck_start_period", _health_default("start_period_seconds")
    ),
}


@dataclass
class DeployForm:
    values: dict[str, str]
    errors: dict[str, str] = field(default_factory=dict)

    numbers = NUMBERS
    log_default = str(rules.tool_default("log_max_size"))

    @classmethod
    def empty(cls) -> DeployForm:
        return cls({name: "" for name in FIELDS} | {"restart_policy": "unless-stopped"})

    @classmethod
    def submitted(cls, form: dict[str, Any]) -> DeployForm:
        return cls({name: str(form.get(name) or "").strip() for name in FIELDS})

    def error(self, name: str, message: str) -> None:
        self.errors.setdefault(name if name in FIELDS else "form", message)

    def parse(self) -> DeployTool | None:
        """The validated request, or None with `errors` filled in."""
        body: dict[str, Any] = {
            "name": self.values["name"],
            "image": self.values["image"],
            "restart_policy": self.values["restart_policy"] or "unless-stopped",
            "ports": self._ports(),
            "env": self._env(),
            "command": self._command(),
        }
        for name in ("memory", "log_max_size"):
            if self.values[name]:
                body[name] = self.values[name]
        volumes = self._volumes()
        if volumes:
            body["volumes"] = volumes
        labels = self._pairs("labels", "key=value")
        if labels:
            body["labels"] = labels
        for name in ("cpus", "settle_seconds", "log_max_file"):
            if self.values[name]:
                body[name] = self._number(name, whole=name != "cpus")
        healthcheck = self._healthcheck()
        if healthcheck is not None:
            body["healthcheck"] = healthcheck
        if not body["name"]:
            self.error("name", "a name is required")
        if not body["image"]:
            self.error("image", "an image is required")
        # Validate even after a problem was found, so that every field gets its message;
        # the first message of a field wins.
        try:
            spec = DeployTool.model_validate(body)
        except ValidationError as invalid:
            for problem in invalid.errors():
                self._report(problem)
            return None
        return None if self.errors else spec

    def report_field(self, field_name: str, message: str) -> None:
        """An InvalidInput from the run service: its field is an extra var or a body path."""
        name = re.split(r"[.\[]", field_name.removeprefix("tool_instance_"), maxsplit=1)[0]
        self.error("health_command" if name == "healthcheck" else name, message)

    def _report(self, problem: Any) -> None:
        location = [str(part) for part in problem.get("loc", ())]
        if location[:1] == ["healthcheck"]:
            # A problem of the check as a whole concerns its timing, shown at the interval.
            # The command is one field: which of its words is wrong shows in the message.
            inner = location[1] if len(location) > 1 else "interval_seconds"
            location = [_HEALTH_FIELDS.get(inner, "health_command")]
        name = location[0] if location else "form"
        if problem.get("type") == "string_pattern_mismatch" and name in _FRIENDLY:
            self.error(name, _FRIENDLY[name])
            return
        where = " ".join(
            f"{_ITEM.get(name, 'item')} {int(part) + 1}" if part.isdigit() else part
            for part in location[1:]
        )
        message = str(problem.get("msg", "invalid value")).removeprefix("Value error, ")
        self.error(name, f"{where}: {message}" if where else message)

    def _ports(self) -> list[dict[str, Any]]:
        ports = []
        for entry in re.split(r"[\s,]+", self.values["ports"]):
            if not entry:
                continue
            match = _PORT.match(entry)
            if match is None:
                self.error("ports", f"'{entry}' is not HOST:CONTAINER, e.g. 8080:80 or 5353:53/udp")
                continue
            port: dict[str, Any] = {
                "host_port": int(match["host"]),
                "container_port": int(match["container"]),
                "protocol": match["protocol"] or "tcp",
            }
            if match["ip"]:
                port["host_ip"] = match["ip"]
            ports.append(port)
        return ports

    def _env(self) -> dict[str, str]:
        return self._pairs("env", "KEY=VALUE")

    def _pairs(self, name: str, shape: str) -> dict[str, str]:
        """KEY=VALUE lines (the environment, labels)."""
        pairs = {}
        for number, line in enumerate(self.values[name].splitlines(), start=1):
            if not line.strip():
                continue
            key, sep, value = line.partition("=")
            if not sep or not key.strip():
                self.error(name, f"line {number}: expected {shape}")
                continue
            pairs[key.strip()] = value
        return pairs

    def _volumes(self) -> list[dict[str, Any]]:
        volumes = []
        for line in self.values["volumes"].splitlines():
            entry = line.strip()
            if not entry:
                continue
            match = _VOLUME.match(entry)
            if match is None:
                self.error("volumes", f"'{entry}' is not NAME:/path or NAME:/path:ro")
                continue
            volumes.append({"name": match["name"], "target": match["target"],
                            "read_only": match["mode"] == "ro"})  # fmt: skip
        return volumes

    def _command(self) -> list[str]:
        try:
            return shlex.split(self.values["command"])
        except ValueError as error:
            self.error("command", f"cannot split the command: {error}")
            return []

    def _number(self, name: str, *, whole: bool) -> int | float | str:
        """The field's number; the text itself (refused by the schema) when it is none."""
        text = self.values[name]
        try:
            return int(text) if whole else float(text)
        except ValueError:
            self.error(name, "a whole number is needed" if whole else "a number is needed")
            return text

    def _healthcheck(self) -> dict[str, Any] | None:
        """The health check: the command run without a shell (Docker's CMD form), with the
        timings typed; None when no command was given (then no timing may be given)."""
        try:
            command = shlex.split(self.values["health_command"])
        except ValueError as error:
            self.error("health_command", f"cannot split the command: {error}")
            return None
        timings = {
            number: self._number(form, whole=True)
            for form, number in _HEALTH_NUMBERS.items()
            if self.values[form]
        }
        if not command:
            if timings:
                self.error("health_command", "give the check's command, or clear its timings")
            return None
        return {"test": ["CMD", *command], **timings}
