"""SSH settings of a run: host key pinning and a shared ControlPersist directory.

The project's ansible.cfg holds the connection defaults (pipelining, ControlPersist,
control_path_dir shared by all runs, no fact gathering). A run with known-hosts content
adds, in front of the configured ssh_args so that they win (ssh keeps the first value of
an option): its own known_hosts file, strict checking, no global known_hosts.

ControlPersist masters are keyed by a hash of the pinned known_hosts as well as ssh's %C:
a master only serves runs that trust the same host keys, so a run with other (say,
rotated) pins never rides on a connection that was verified against different ones.
"""

from __future__ import annotations

import configparser
import hashlib
import shlex
from pathlib import Path

DEFAULT_SSH_ARGS = "-C -o ControlMaster=auto -o ControlPersist=60s"


def configured_ssh_args(ansible_cfg: Path) -> str:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(ansible_cfg)
    return parser.get("ssh_connection", "ssh_args", fallback=DEFAULT_SSH_ARGS)


def ssh_environment(
    ansible_cfg: Path, known_hosts_file: Path | None, *, identities_only: bool = False
) -> dict[str, str]:
    """ANSIBLE_* variables for the run's ssh connections; `identities_only`: each host
    offers only the key its IdentityFile names (a run with several keys)."""
    # ansible-runner turns host key checking off unless told otherwise: never here.
    env = {"ANSIBLE_HOST_KEY_CHECKING": "True"}
    only = "-o IdentitiesOnly=yes " if identities_only else ""
    if known_hosts_file is None:
        if only:
            env["ANSIBLE_SSH_ARGS"] = only + configured_ssh_args(ansible_cfg)
        return env
    pins = known_hosts_file.read_bytes()
    pin_args = " ".join(
        [
            "-o", shlex.quote(f"UserKnownHostsFile={known_hosts_file}"),
            "-o", "GlobalKnownHostsFile=/dev/null",
            "-o", "StrictHostKeyChecking=yes",
        ]
    )  # fmt: skip
    env["ANSIBLE_SSH_ARGS"] = f"{only}{pin_args} {configured_ssh_args(ansible_cfg)}"
    env["ANSIBLE_SSH_CONTROL_PATH"] = "%(directory)s/%%C-" + hashlib.sha256(pins).hexdigest()[:12]
    return env
