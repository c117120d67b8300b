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
LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")


class SettingsError(ValueError):
    """The environment does not describe a usable agent configuration."""


@dataclass(frozen=True)
class TlsFiles:
    """The certificate and private key the agent serves HTTPS with."""

    certificate: str
    private_key: str


@dataclass(frozen=True)
class AgentSettings:
    token: str
    # None only when plain HTTP was asked for explicitly (DTMA_AGENT_TLS=off).
    tls: TlsFiles | None
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
            docker_url=_docker_url(environ.get("DOCKER_HOST") or cls.docker_url),
            logs_tail_max=_int(
                environ, "DTMA_AGENT_LOGS_TAIL_MAX", DEFAULT_LOGS_TAIL_MAX, 1, 100_000
            ),
            log_level=_log_level(environ),
            tls=_tls(environ),
        )


def _tls(environ: Mapping[str, str]) -> TlsFiles | None:
    """HTTPS unless DTMA_AGENT_TLS=off (an explicit choice: a missing file is an error)."""
    mode = environ.get("DTMA_AGENT_TLS", "on").strip().lower()
    if mode == "off":
        return None
    if mode != "on":
        raise SettingsError(f"DTMA_AGENT_TLS must be on or off, got {mode!r}")
    files = {}
    for name, variable in (
        ("certificate", "DTMA_AGENT_TLS_CERT"),
        ("private_key", "DTMA_AGENT_TLS_KEY"),
    ):
        path = environ.get(variable, "")
        if not path or not os.access(path, os.R_OK):
            raise SettingsError(
                f"TLS is on but {variable} ({path or 'unset'}) is not a readable file; "
                "set DTMA_AGENT_TLS=off to serve plain HTTP"
            )
        files[name] = path
    return TlsFiles(**files)


def _docker_url(url: str) -> str:
    if not url.startswith(("unix://", "tcp://")):
        raise SettingsError(f"DOCKER_HOST must be a unix:// or tcp:// address, got {url!r}")
    return url


def _log_level(environ: Mapping[str, str]) -> str:
    level = environ.get("DTMA_AGENT_LOG_LEVEL", "info").strip().lower() or "info"
    if level not in LOG_LEVELS:
        names = ", ".join(LOG_LEVELS)
        raise SettingsError(f"DTMA_AGENT_LOG_LEVEL must be one of {names}, got {level!r}")
    return level


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
