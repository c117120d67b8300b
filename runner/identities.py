"""One run over hosts reached with different SSH keys (a rollout over toolboxes that each
have their own key): every key goes into the run's ssh-agent through a FIFO (never a file),
and each host offers only its own: its IdentityFile is the key's public half (ssh then
takes the private half from the agent) with IdentitiesOnly, so a fleet of keys never trips
the droplets' MaxAuthTries.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml
from cryptography.hazmat.primitives import serialization

from runner.rundir import RunDir

# Adds each key FIFO named before `--` to the agent, then runs the command after it.
ADD_KEYS = (
    'while [ "$1" != "--" ]; do ssh-add -q "$1" >/dev/null 2>&1 '
    '|| { echo "ssh-add could not load a run key" >&2; exit 1; }; rm -f "$1"; shift; done; '
    'shift; exec "$@"'
)
IDENTITY_VAR = "__runner_identity_files"


def public_key(private_key: str) -> str:
    """The OpenSSH public line of a private key (OpenSSH or PEM format)."""
    data = private_key.encode()
    loaded = (
        serialization.load_ssh_private_key(data, password=None)
        if b"OPENSSH PRIVATE KEY" in data
        else serialization.load_pem_private_key(data, password=None)
    )
    public = loaded.public_key().public_bytes(  # type: ignore[union-attr]
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    return public.decode() + "\n"


@dataclass(frozen=True)
class Identities:
    """What a run with several keys adds: key FIFOs for its agent and per-host vars."""

    key_pipes: tuple[Path, ...]
    vars_file: Path

    @classmethod
    def prepare(
        cls, rundir: RunDir, hosts: tuple[str, ...], default: str | None,
        host_keys: Mapping[str, str],
    ) -> Identities:  # fmt: skip
        keys = list(dict.fromkeys([*([default] if default else []), *host_keys.values()]))
        pipes, files = [], {}
        (rundir.path / "identities").mkdir(mode=0o700, exist_ok=True)
        for index, key in enumerate(keys):
            pipes.append(rundir.pipe(f"identities/key-{index}", key))
            files[key] = rundir.write(f"identities/key-{index}.pub", public_key(key))
        per_host = {host: str(files[host_keys.get(host) or default or ""]) for host in hosts}
        variables = {
            IDENTITY_VAR: per_host,
            "ansible_ssh_private_key_file": "{{ " + IDENTITY_VAR + "[inventory_hostname] }}",
        }
        vars_file = rundir.write("identities/vars.yml", yaml.safe_dump(variables))
        return cls(tuple(pipes), vars_file)

    def wrap(self, command: list[str]) -> list[str]:
        return ["ssh-agent", "sh", "-c", ADD_KEYS, "sh", *map(str, self.key_pipes), "--", *command]
