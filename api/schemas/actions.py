"""Inputs of the console's actions, validated before anything is stored or started.

The patterns are the roles' own (roles/*/vars/main.yml); strings that look like Jinja2
templates are refused here already, with the field named.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

TOOL_NAME = r"^[a-z0-9][a-z0-9_.-]{0,62}$"
IMAGE = (
    r"^[a-z0-9]([a-z0-9._-]*[a-z0-9])?(:[0-9]{1,5})?(/[a-z0-9]([a-z0-9._-]*[a-z0-9])?)*"
    r"(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[a-f0-9]{64})?$"
)
ENV_KEY = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"
MEMORY = r"^[0-9]{1,12}[bkmgBKMG]?$"
IPV4 = (
    r"^((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}"
    r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])$"
)
DTMA_VERSION = r"^[0-9A-Za-z][0-9A-Za-z.+_-]{0,63}$"
TEMPLATE_MARKERS = ("{{", "{%", "{#")


def no_template(value: str) -> str:
    if any(marker in value for marker in TEMPLATE_MARKERS):
        raise ValueError("templating characters ({{ {% {#) are not allowed")
    return value


ToolName = Annotated[str, StringConstraints(pattern=TOOL_NAME)]
PlainText = Annotated[str, StringConstraints(max_length=4096), AfterValidator(no_template)]
EnvKey = Annotated[str, StringConstraints(pattern=ENV_KEY)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PortSpec(_Strict):
    host_port: int = Field(ge=1024, le=65535, description="Port on the toolbox")
    container_port: int = Field(ge=1, le=65535, description="Port inside the container")
    protocol: Literal["tcp", "udp"] = "tcp"
    host_ip: Annotated[str, StringConstraints(pattern=IPV4)] = "0.0.0.0"


class DeployTool(_Strict):
    name: ToolName = Field(description="Instance (container) name")
    image: Annotated[str, StringConstraints(pattern=IMAGE, max_length=512)]
    env: dict[EnvKey, PlainText] = Field(
        default_factory=dict, max_length=200, description="Environment; values are secrets"
    )
    ports: list[PortSpec] = Field(default_factory=list, max_length=50)
    command: list[PlainText] = Field(default_factory=list, max_length=100)
    restart_policy: Literal["no", "on-failure", "always", "unless-stopped"] = "unless-stopped"
    memory: Annotated[str, StringConstraints(pattern=MEMORY)] = "0"
    cpus: float = Field(default=0, ge=0, le=256)

    def extravars(self) -> dict[str, Any]:
        return {
            "tool_instance_name": self.name,
            "tool_instance_image": self.image,
            "tool_instance_env": dict(self.env),
            "tool_instance_ports": [port.model_dump() for port in self.ports],
            "tool_instance_command": list(self.command),
            "tool_instance_restart_policy": self.restart_policy,
            "tool_instance_memory": self.memory,
            "tool_instance_cpus": self.cpus,
        }

    def public(self) -> dict[str, Any]:
        """What may be stored and shown: the environment's names, never its values."""
        shown = self.model_dump(exclude={"env"})
        shown["env"] = {key: "<redacted>" for key in self.env}
        return shown


class RedeployAgent(_Strict):
    version: Annotated[str, StringConstraints(pattern=DTMA_VERSION)] | None = Field(
        default=None, description="Release to deploy; default: the agent source's version"
    )
