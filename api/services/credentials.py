"""Where the SSH credentials for a toolbox come from.

Today every toolbox is reached with the operator key (DTMA_SSH_KEY_FILE) and pinned with
the host keys recorded for it (or DTMA_KNOWN_HOSTS_FILE). The key vault (issue 8) provides
another CredentialSource with per-toolbox keys; nothing else changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from api.models import Toolbox
from api.settings import Settings


@dataclass(frozen=True)
class SshCredentials:
    private_key: str | None = None  # OpenSSH PEM, only ever in memory
    known_hosts: str | None = None  # known_hosts lines; strict checking when given

    def __repr__(self) -> str:
        return f"SshCredentials(private_key={'<set>' if self.private_key else None})"


class CredentialSource(Protocol):
    def for_toolbox(self, toolbox: Toolbox) -> SshCredentials: ...


class OperatorKeySource:
    """The operator's key for every toolbox, read from disk at each use (so a replaced
    key file takes effect without a restart)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    def for_toolbox(self, toolbox: Toolbox) -> SshCredentials:
        key_file = self._settings.ssh_key_file
        known_hosts_file = self._settings.known_hosts_file
        known_hosts = toolbox.known_hosts
        if not known_hosts and known_hosts_file is not None and known_hosts_file.exists():
            known_hosts = known_hosts_file.read_text()
        return SshCredentials(
            private_key=key_file.read_text() if key_file is not None else None,
            known_hosts=known_hosts or None,
        )
