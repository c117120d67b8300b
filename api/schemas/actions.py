"""Inputs of the console's actions, validated before anything is stored or started.

The patterns and bounds are the roles' own (`api/schemas/role_rules.py` reads them from
`roles/*/vars/main.yml`), so a request accepted here passes the role's validation too;
strings that look like Jinja2 templates are refused here already, with the field named.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from api.schemas import role_rules as rules
from runner.extravars import TEMPLATE_MARKERS

TOOL_NAME = rules.TOOL_NAME
_BOUNDS = rules.TOOL_BOUNDS
_MEMORY_UNITS = {"b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def no_template(value: str) -> str:
    if any(marker in value for marker in TEMPLATE_MARKERS):
        raise ValueError("templating characters ({{ {% {#) are not allowed")
    return value


def _int_field(bound: str, default: int, description: str) -> Any:
    bounds = _BOUNDS[bound]
    return Field(
        default=default,
        ge=bounds.int_min,
        le=bounds.int_max,
        description=f"{description} ({bounds.int_min}-{bounds.int_max})",
    )


ToolName = Annotated[str, StringConstraints(pattern=TOOL_NAME)]
PlainText = Annotated[str, StringConstraints(max_length=4096), AfterValidator(no_template)]
EnvKey = Annotated[str, StringConstraints(pattern=rules.ENV_KEY)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class PortSpec(_Strict):
    host_port: int = Field(
        ge=_BOUNDS["host_port"].int_min,
        le=_BOUNDS["host_port"].int_max,
        description="Port on the toolbox",
    )
    container_port: int = Field(
        ge=_BOUNDS["container_port"].int_min,
        le=_BOUNDS["container_port"].int_max,
        description="Port inside the container",
    )
    protocol: Literal["tcp", "udp"] = "tcp"
    host_ip: Annotated[str, StringConstraints(pattern=rules.IPV4)] = "0.0.0.0"


class HealthCheck(_Strict):
    """Docker's health check; the role gets it as `tool_instance_healthcheck` with Docker
    durations ("5s")."""

    test: list[PlainText] = Field(
        min_length=2,
        max_length=100,
        description="[CMD, program, arg, ...] or [CMD-SHELL, command], run inside the container",
        examples=[["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/"]],
    )
    interval_seconds: int = _int_field("healthcheck_interval", 5, "Seconds between checks")
    timeout_seconds: int = _int_field("healthcheck_timeout", 5, "Seconds before a check fails")
    retries: int = _int_field("healthcheck_retries", 3, "Failures in a row before unhealthy")
    start_period_seconds: int = _int_field(
        "healthcheck_start_period", 0, "Seconds after the start in which failures do not count"
    )

    @field_validator("test")
    @classmethod
    def _known_kind(cls, test: list[str]) -> list[str]:
        if test[0] not in rules.HEALTHCHECK_KINDS:
            kinds = " or ".join(rules.HEALTHCHECK_KINDS)
            raise ValueError(f"must start with {kinds} (got {test[0]!r})")
        return test

    @model_validator(mode="after")
    def _answers_within_the_verify_window(self) -> HealthCheck:
        """The first check runs `interval` after the start: a deploy waits for `healthy`
        only `tool_instance_verify_timeout` seconds, so a later first answer cannot verify."""
        window = int(rules.tool_default("verify_timeout"))
        first_answer = self.interval_seconds + self.timeout_seconds
        if first_answer > window:
            raise ValueError(
                f"interval plus timeout is {first_answer} s: the first result would come "
                f"after the {window} s a deploy waits for the tool to be healthy"
            )
        return self

    def role_input(self) -> dict[str, Any]:
        return {
            "test": list(self.test),
            "interval": f"{self.interval_seconds}s",
            "timeout": f"{self.timeout_seconds}s",
            "retries": self.retries,
            "start_period": f"{self.start_period_seconds}s",
        }


def _memory_limit(value: str) -> str:
    unit = value[-1].lower() if value[-1].isalpha() else "b"
    size = int(value.rstrip("bkmgBKMG")) * _MEMORY_UNITS[unit]
    if 0 < size < rules.MEMORY_LIMIT_MIN_BYTES:
        minimum = rules.MEMORY_LIMIT_MIN_BYTES // 1024**2
        raise ValueError(f"a memory limit must be 0 (none) or at least {minimum}m")
    return value


def _cpus_limit(value: float) -> float:
    if 0 < value < rules.CPUS_LIMIT_MIN:
        raise ValueError(f"a CPU limit must be 0 (none) or at least {rules.CPUS_LIMIT_MIN}")
    return value


class VolumeSpec(_Strict):
    """A named volume (Docker creates it when missing); host paths are never mounted."""

    name: Annotated[str, StringConstraints(pattern=rules.VOLUME_NAME)] = Field(
        description="Volume name (not a path)", examples=["echo-data"]
    )
    target: Annotated[str, StringConstraints(pattern=rules.VOLUME_TARGET)] = Field(
        description="Absolute path inside the container", examples=["/data"]
    )
    read_only: bool = False

    @field_validator("target")
    @classmethod
    def _no_parent(cls, target: str) -> str:
        if "/.." in target:
            raise ValueError("the path must not contain '..'")
        return target


def _label_key(key: str) -> str:
    if key.startswith(rules.LABEL_RESERVED_PREFIX):
        raise ValueError(
            f"label keys starting with {rules.LABEL_RESERVED_PREFIX} are the console's own"
        )
    return key


LabelKey = Annotated[str, StringConstraints(pattern=rules.LABEL_KEY), AfterValidator(_label_key)]
LabelValue = Annotated[
    str, StringConstraints(max_length=rules.LABEL_VALUE_MAX_LENGTH), AfterValidator(no_template)
]


def _unique_targets(volumes: list[VolumeSpec]) -> list[VolumeSpec]:
    targets = [volume.target for volume in volumes]
    if len(targets) != len(set(targets)):
        raise ValueError("two volumes are mounted at one target")
    return volumes


class DeployTool(_Strict):
    name: ToolName = Field(description="Instance (container) name")
    image: Annotated[str, StringConstraints(pattern=rules.IMAGE, max_length=rules.IMAGE_MAX_LENGTH)]
    env: dict[EnvKey, PlainText] = Field(
        default_factory=dict, max_length=200, description="Environment; values are secrets"
    )
    ports: list[PortSpec] = Field(default_factory=list, max_length=50)
    command: list[PlainText] = Field(default_factory=list, max_length=100)
    restart_policy: Literal["no", "on-failure", "always", "unless-stopped"] = "unless-stopped"
    memory: Annotated[
        str, StringConstraints(pattern=rules.MEMORY), AfterValidator(_memory_limit)
    ] = Field(default="0", description="Memory limit such as 256m or 1g; 0 for none")
    cpus: Annotated[float, AfterValidator(_cpus_limit)] = Field(
        default=0,
        ge=_BOUNDS["cpus"].min,
        le=_BOUNDS["cpus"].max,
        description="CPU limit in CPUs such as 0.5; 0 for none",
    )
    healthcheck: HealthCheck | None = Field(
        default=None, description="Success needs the container healthy; none by default"
    )
    settle_seconds: int = _int_field(
        "settle_seconds",
        int(rules.tool_default("settle_seconds")),
        "Seconds the container must keep running unchanged after it started",
    )
    volumes: Annotated[list[VolumeSpec], AfterValidator(_unique_targets)] = Field(
        default_factory=list, max_length=_BOUNDS["volumes"].int_max, description="Named volumes"
    )
    labels: dict[LabelKey, LabelValue] = Field(
        default_factory=dict, max_length=_BOUNDS["labels"].int_max, description="Container labels"
    )
    log_max_size: Annotated[str, StringConstraints(pattern=rules.LOG_MAX_SIZE)] = Field(
        default=str(rules.tool_default("log_max_size")),
        description="Log rotation: size of one log file (100k, 10m; at most 1g)",
    )
    log_max_file: int = _int_field(
        "log_max_file", int(rules.tool_default("log_max_file")), "Log rotation: files kept"
    )

    def extravars(self) -> dict[str, Any]:
        extravars = {
            "tool_instance_name": self.name,
            "tool_instance_image": self.image,
            "tool_instance_env": dict(self.env),
            "tool_instance_ports": [port.model_dump() for port in self.ports],
            "tool_instance_command": list(self.command),
            "tool_instance_restart_policy": self.restart_policy,
            "tool_instance_memory": self.memory,
            "tool_instance_cpus": self.cpus,
            "tool_instance_settle_seconds": self.settle_seconds,
            "tool_instance_volumes": [volume.model_dump() for volume in self.volumes],
            "tool_instance_labels": dict(self.labels),
            "tool_instance_log_max_size": self.log_max_size,
            "tool_instance_log_max_file": self.log_max_file,
        }
        # Without a health check the role's default ({}) stands: an empty dict would come
        # back from the argument-spec check with every sub-option set to None.
        if self.healthcheck is not None:
            extravars["tool_instance_healthcheck"] = self.healthcheck.role_input()
        return extravars

    def public(self) -> dict[str, Any]:
        """What may be stored and shown: the environment's names, never its values."""
        shown = self.model_dump(exclude={"env"})
        shown["env"] = {key: "<redacted>" for key in self.env}
        return shown


class RedeployAgent(_Strict):
    version: Annotated[str, StringConstraints(pattern=rules.DTMA_VERSION)] | None = Field(
        default=None, description="Release to deploy; default: the agent source's version"
    )
