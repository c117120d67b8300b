"""The roles' input rules, read from the roles themselves so the API and the playbooks refuse
the same requests: patterns and bounds from `roles/<role>/vars/main.yml`, defaults from
`meta/argument_specs.yml`. A request the API accepts then never fails the role's validation.

Patterns are anchored `^…$` and always matched whole (`fullmatch`; pydantic's regex engine
treats `$` as the end of the text): a trailing newline ("web\\n") never slips through.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from runner.catalog import ROLES_DIR


@dataclass(frozen=True)
class Bounds:
    """Inclusive bounds of a numeric input."""

    min: float
    max: float

    @property
    def int_min(self) -> int:
        return int(self.min)

    @property
    def int_max(self) -> int:
        return int(self.max)


def _role_file(role: str, *parts: str) -> dict[str, Any]:
    loaded = yaml.safe_load(ROLES_DIR.joinpath(role, *parts).read_text())
    if not isinstance(loaded, dict):
        raise RuntimeError(f"roles/{role}/{'/'.join(parts)} is not a mapping")
    return loaded


_TOOL = _role_file("tool_instance", "vars", "main.yml")
_TOOL_OPTIONS = _role_file("tool_instance", "meta", "argument_specs.yml")["argument_specs"]["main"][
    "options"
]
_DTMA = _role_file("dtma", "vars", "main.yml")

TOOL_NAME: str = _TOOL["__tool_instance_name_pattern"]
IMAGE: str = _TOOL["__tool_instance_image_pattern"]
IMAGE_MAX_LENGTH: int = _TOOL["__tool_instance_image_max_length"]
ENV_KEY: str = _TOOL["__tool_instance_env_key_pattern"]
MEMORY: str = _TOOL["__tool_instance_memory_pattern"]
MEMORY_LIMIT_MIN_BYTES: int = _TOOL["__tool_instance_memory_limit_min_bytes"]
CPUS_LIMIT_MIN: float = _TOOL["__tool_instance_cpus_limit_min"]
IPV4: str = _TOOL["__tool_instance_ipv4_pattern"]
HEALTHCHECK_KINDS: tuple[str, ...] = tuple(_TOOL["__tool_instance_healthcheck_kinds"])
VOLUME_NAME: str = _TOOL["__tool_instance_volume_name_pattern"]
VOLUME_TARGET: str = _TOOL["__tool_instance_volume_target_pattern"]
LABEL_KEY: str = _TOOL["__tool_instance_label_key_pattern"]
LABEL_RESERVED_PREFIX: str = _TOOL["__tool_instance_label_reserved_prefix"]
LABEL_VALUE_MAX_LENGTH: int = _TOOL["__tool_instance_label_value_max_length"]
LOG_MAX_SIZE: str = _TOOL["__tool_instance_log_max_size_pattern"]
REGISTRY: str = _TOOL["__tool_instance_registry_pattern"]
REGISTRY_USERNAME: str = _TOOL["__tool_instance_registry_username_pattern"]
TOOL_BOUNDS: dict[str, Bounds] = {
    name: Bounds(float(bounds["min"]), float(bounds["max"]))
    for name, bounds in _TOOL["__tool_instance_bounds"].items()
}
DTMA_VERSION: str = _DTMA["__dtma_version_pattern"]


def tool_default(option: str) -> Any:
    """The default of a tool_instance option, as its argument spec declares it."""
    return _TOOL_OPTIONS[f"tool_instance_{option}"]["default"]
