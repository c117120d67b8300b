"""RunRequest: what a caller asks for, and its validation before anything starts."""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.catalog import PLAYBOOKS, PROJECT_ROOT, PlaybookCatalog, PlaybookSpec
from runner.errors import RequestError
from runner.extravars import validate_extravars
from runner.rundir import RUN_ID

DEFAULT_INVENTORY = PROJECT_ROOT / "inventory" / "digitalocean.yml"
MAX_TIMEOUT = 24 * 3600
HOST_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Host patterns that would widen --limit beyond the named toolboxes.
RESERVED_HOSTS = frozenset({"all", "ungrouped"})
# The runner sets these itself (config, connection, host key pinning, process marker).
RESERVED_ENV_PREFIXES = ("ANSIBLE_", "AWX_", "LD_", "PYTHON", "SSH_", "DTMA_RUN")
RESERVED_ENV = frozenset({"PATH", "HOME", "SHELL", "IFS", "ENV", "BASH_ENV"})
# Run environment that is not secret; every other `env` value is masked in events.
PUBLIC_ENV = frozenset({"DTMA_DO_TAG"})


@dataclass(kw_only=True)
class RunRequest:
    """One playbook run against named inventory hosts. Secrets are kept out of `repr`."""

    playbook: str
    hosts: list[str] | str
    extravars: dict[str, Any] = field(default_factory=dict)
    inventory: str | Path | None = None  # default: $DTMA_INVENTORY or inventory/digitalocean.yml
    ssh_private_key: str | None = field(default=None, repr=False)
    # A run over hosts reached with different keys (a rollout): host -> its key; the hosts
    # not named use ssh_private_key. Each host then offers only its own key.
    host_private_keys: dict[str, str] = field(default_factory=dict, repr=False)
    known_hosts: str | None = None
    timeout: int = 600
    check: bool = False
    action: str | None = None  # default: from the playbook name, tool_restart.yml -> tool.restart
    toolbox_id: str | None = None
    run_id: str | None = None
    env: dict[str, str] = field(default_factory=dict, repr=False)
    # set_stats keys whose values are secrets (a token read from the droplet): handed to the
    # caller only through ConsoleResult.secret_output(), never in events or the result.
    secret_outputs: list[str] = field(default_factory=list, repr=False)
    playbook_dir: str | Path | None = None  # tests only: another allow-list directory


@dataclass(frozen=True)
class ValidRequest:
    """A request that passed every check; the only thing the executor accepts."""

    run_id: str
    spec: PlaybookSpec
    hosts: tuple[str, ...]
    extravars: dict[str, Any]
    inventory: Path
    ssh_private_key: str | None = field(repr=False)
    known_hosts: str | None
    timeout: int
    check: bool
    action: str
    toolbox_id: str | None
    env: dict[str, str] = field(repr=False)
    secrets: tuple[str, ...] = field(repr=False)
    secret_outputs: frozenset[str] = frozenset()
    # Names of the playbook's no_log options: masked by key in events, whatever the value.
    secret_keys: frozenset[str] = frozenset()
    host_private_keys: dict[str, str] = field(default_factory=dict, repr=False)


def default_inventory() -> Path:
    return Path(os.environ.get("DTMA_INVENTORY") or DEFAULT_INVENTORY)


def _hosts(hosts: list[str] | str) -> tuple[str, ...]:
    names = [hosts] if isinstance(hosts, str) else list(hosts)
    if not names:
        raise RequestError("hosts", "at least one target host is required")
    for name in names:
        if not isinstance(name, str) or not HOST_NAME.match(name) or name in RESERVED_HOSTS:
            raise RequestError("hosts", f"{name!r} is not a host name")
    return tuple(dict.fromkeys(names))


def _spec(req: RunRequest) -> PlaybookSpec:
    catalog = PlaybookCatalog(Path(req.playbook_dir)) if req.playbook_dir else PLAYBOOKS
    if req.playbook not in catalog:
        known = ", ".join(catalog) or "none"
        raise RequestError("playbook", f"{req.playbook!r} is not an allowed playbook ({known})")
    return catalog[req.playbook]


def _env(env: Mapping[str, str]) -> dict[str, str]:
    for name, value in env.items():
        reserved = name in RESERVED_ENV or name.startswith(RESERVED_ENV_PREFIXES)
        if reserved or not ENV_NAME.match(name):
            raise RequestError("env", f"{name!r} cannot be set for a run")
        if not isinstance(value, str) or "\0" in value:
            raise RequestError("env", f"the value of {name} must be a string without NUL")
    return dict(env)


def _strings(value: Any) -> Iterator[str]:
    """Every scalar of `value` as text (a secret may be a number)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        yield str(value)
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _strings(item)


def _private_key(key: str | None) -> str | None:
    if key is None:
        return None
    if not isinstance(key, str) or "PRIVATE KEY-----" not in key:
        raise RequestError("ssh_private_key", "is not a PEM / OpenSSH private key")
    return key if key.endswith("\n") else key + "\n"  # ssh-add wants the final newline


def _host_keys(
    keys: Mapping[str, str], hosts: tuple[str, ...], default: str | None
) -> dict[str, str]:
    if not keys:
        return {}
    if not isinstance(keys, Mapping) or any(host not in hosts for host in keys):
        raise RequestError("host_private_keys", "must name hosts of the run")
    if default is None and any(host not in keys for host in hosts):
        raise RequestError("host_private_keys", "a host has no key and there is no default key")
    checked: dict[str, str] = {}
    for host, key in keys.items():
        try:
            checked[host] = _private_key(key) or ""
        except RequestError as error:
            raise RequestError("host_private_keys", f"{host}: {error.message}") from error
    return {host: key for host, key in checked.items() if key}


def validate_request(req: RunRequest) -> ValidRequest:
    """Every check a run needs before it may start; RequestError names the bad field."""
    if req.run_id is not None and not RUN_ID.match(req.run_id):
        raise RequestError("run_id", "must be 1-64 letters, digits, '-' or '_'")
    spec = _spec(req)
    hosts = _hosts(req.hosts)
    extravars = validate_extravars(spec, req.extravars or {})
    inventory = Path(req.inventory) if req.inventory else default_inventory()
    if not inventory.exists():
        raise RequestError("inventory", f"{inventory} does not exist")
    if isinstance(req.timeout, bool) or not isinstance(req.timeout, int):
        raise RequestError("timeout", "must be a whole number of seconds")
    if not 0 < req.timeout <= MAX_TIMEOUT:
        raise RequestError("timeout", f"must be between 1 and {MAX_TIMEOUT} seconds")
    if req.known_hosts is not None and "\0" in req.known_hosts:
        raise RequestError("known_hosts", "must be text")
    env = _env(req.env or {})
    key = _private_key(req.ssh_private_key)
    host_keys = _host_keys(req.host_private_keys or {}, hosts, key)
    secret_keys = spec.secret_options()
    secret_vars = [extravars[name] for name in secret_keys if name in extravars]
    secret_env = [value for name, value in env.items() if name not in PUBLIC_ENV]
    secrets = [*([key] if key else []), *host_keys.values(), *secret_env, *_strings(secret_vars)]
    return ValidRequest(
        run_id=req.run_id or uuid.uuid4().hex,
        spec=spec,
        hosts=hosts,
        extravars=extravars,
        inventory=inventory.resolve(),
        ssh_private_key=key,
        known_hosts=req.known_hosts,
        timeout=req.timeout,
        check=bool(req.check),
        action=req.action or Path(spec.name).stem.replace("_", ".", 1),
        toolbox_id=req.toolbox_id,
        env=env,
        secrets=tuple(secrets),
        secret_outputs=frozenset(req.secret_outputs or ()),
        secret_keys=secret_keys,
        host_private_keys=host_keys,
    )
