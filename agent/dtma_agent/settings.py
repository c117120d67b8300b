"""Agent configuration, read once from the environment (systemd's EnvironmentFile)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

DEFAULT_PORT = 30000
DEFAULT_LOGS_TAIL_MAX = 5000
# The oldest Docker API the agent speaks; pinning it avoids a version probe at start-up,
# so the agent starts (and reports the engine as unreachable) even when dockerd is down.
DOCKER_API_VERSION = "1.41"


class SettingsError(ValueError):
    """The environment does not describe a usable agent configuration."""


@dataclass(frozen=True)
class AgentSettings:
    token: str
    host: str = "0.0.0.0"
    port: int = DEFAULT_PORT
    docker_url: str = "unix:///var/run/docker.sock"
    logs_tail_max: int = DEFAULT_LOGS_TAIL_MAX
    log_level: str = "info"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> AgentSettings:
        token = environ.get("DTMA_AGENT_TOKEN", "")
        if len(token) < 16:
            raise SettingsError("DTMA_AGENT_TOKEN must hold a secret of at least 16 characters")
        return cls(
            token=token,
            host=environ.get("DTMA_AGENT_HOST", cls.host),
            port=_int(environ, "DTMA_AGENT_PORT", DEFAULT_PORT, 1, 65535),
            docker_url=environ.get("DOCKER_HOST", cls.docker_url),
            logs_tail_max=_int(
                environ, "DTMA_AGENT_LOGS_TAIL_MAX", DEFAULT_LOGS_TAIL_MAX, 1, 100_000
            ),
            log_level=environ.get("DTMA_AGENT_LOG_LEVEL", cls.log_level).lower(),
        )


def _int(environ: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from None
    if not low <= value <= high:
        raise SettingsError(f"{name} must be between {low} and {high}, got {value}")
    return value
