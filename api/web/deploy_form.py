"""The Deploy form: what the operator typed, turned into the API's DeployTool, with every
problem reported next to the field it concerns."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from api.schemas.actions import DeployTool

FIELDS = ("name", "image", "ports", "env", "command", "restart_policy")
RESTART_POLICIES = ("unless-stopped", "always", "on-failure", "no")
_PORT = re.compile(
    r"^(?:(?P<ip>\d{1,3}(?:\.\d{1,3}){3}):)?(?P<host>\d{1,5}):(?P<container>\d{1,5})"
    r"(?:/(?P<protocol>tcp|udp))?$"
)
_ITEM = {"ports": "port", "command": "argument"}
_FRIENDLY = {
    "name": "use 1-63 lowercase letters, digits, '.', '_' or '-', starting with a letter or digit",
    "image": "not an image reference such as dtma-tool-echo:1.0 or registry/app:2",
}


@dataclass
class DeployForm:
    values: dict[str, str]
    errors: dict[str, str] = field(default_factory=dict)

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
        self.error(name, message)

    def _report(self, problem: Any) -> None:
        location = [str(part) for part in problem.get("loc", ())]
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
        env = {}
        for number, line in enumerate(self.values["env"].splitlines(), start=1):
            if not line.strip():
                continue
            key, sep, value = line.partition("=")
            if not sep or not key.strip():
                self.error("env", f"line {number}: expected KEY=VALUE")
                continue
            env[key.strip()] = value
        return env

    def _command(self) -> list[str]:
        try:
            return shlex.split(self.values["command"])
        except ValueError as error:
            self.error("command", f"cannot split the command: {error}")
            return []
