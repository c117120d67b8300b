"""The console's DigitalOcean inventory without a round trip per click.

Operators get the DigitalOcean plugin's own cache (`cache: true` in inventory/digitalocean.yml,
jsonfile, a timeout). The console uses the same plugin and the same cache mechanism, on a
derived copy of its inventory whose cache never expires by age: the console's sync refreshes
it (`refresh`, one `ansible-inventory --flush-cache`), and a run whose toolbox the cache does
not know (a new droplet) refreshes it first. A run on a known toolbox reads no API at all, so
a DigitalOcean API that is down, hangs or answers 5xx does not stop it; its result says how
old the inventory was. A refresh that got a 401 (revoked token) stops every run with that
reason until a refresh succeeds. A droplet that a refresh no longer lists leaves the cache,
so no run targets it ("not in the inventory").
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from runner.error_codes import Outcome
from runner.redact import Redactor

PLUGIN = "community.digitalocean.digitalocean"
# The plugin's HTTP timeout in the derived copy, and the refresh's own limit (seconds).
API_TIMEOUT = 10
REFRESH_TIMEOUT = 30
# Codes of a run refused because of the inventory (runner/error_codes.py).
TOKEN_REJECTED: Outcome = "do_token_rejected"
UNAVAILABLE: Outcome = "inventory_unavailable"
GONE: Outcome = "toolbox_gone"


def uses_digitalocean(source: Path) -> bool:
    """Whether `source` is a DigitalOcean plugin inventory (the only kind that is cached)."""
    try:
        options = yaml.safe_load(source.read_text())
    except (OSError, yaml.YAMLError):
        return False
    return isinstance(options, dict) and options.get("plugin") == PLUGIN


@dataclass
class CacheState:
    """What the last refresh left: the hosts it listed, and why the latest one failed."""

    refreshed_at: str | None = None
    hosts: dict[str, str] = field(default_factory=dict)  # host -> ansible_host
    error: str | None = None
    error_code: str | None = None
    error_at: str | None = None

    def age_seconds(self, now: datetime) -> int | None:
        if self.refreshed_at is None:
            return None
        return max(0, int((now - datetime.fromisoformat(self.refreshed_at)).total_seconds()))


@dataclass(frozen=True)
class RunInventory:
    """The inventory a run uses, what to say about it, or why the run must not start."""

    path: Path
    data: dict[str, Any]
    note: str | None = None  # appended to the result's message
    refusal: tuple[Outcome, str] | None = None  # (error code, message)


class InventoryCache:
    """The cache of one inventory source, under `cache_dir/<hash of its path>/`."""

    def __init__(self, source: Path, cache_dir: Path, ansible_cfg: Path) -> None:
        self.source = source.resolve()
        key = hashlib.sha256(str(self.source).encode()).hexdigest()[:16]
        self.dir = cache_dir / key
        self.inventory = self.dir / "inventory" / self.source.name  # the plugin wants the name
        self.index = self.dir / "index.json"
        self.ansible_cfg = ansible_cfg

    # -- the derived inventory -----------------------------------------------------------
    def derived_inventory(self) -> Path:
        """The source's plugin options with a cache that expires only when refreshed, beside
        the source's group_vars/host_vars, so that hosts get exactly the operators' vars."""
        options = yaml.safe_load(self.source.read_text())
        options |= {
            "cache": True,
            "cache_plugin": "ansible.builtin.jsonfile",
            "cache_connection": str(self.dir / "plugin"),
            "cache_timeout": 0,  # never by age: refresh() and new droplets renew it
            "timeout": API_TIMEOUT,
        }
        text = "# Derived by runner/inventory.py from " + str(self.source) + "\n"
        text += yaml.safe_dump(options, sort_keys=False)
        self.inventory.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not self.inventory.exists() or self.inventory.read_text() != text:
            self.inventory.write_text(text)
            self.inventory.chmod(0o600)
        for shared in ("group_vars", "host_vars"):
            link, target = self.inventory.parent / shared, self.source.parent / shared
            if target.is_dir() and not link.is_symlink():
                link.symlink_to(target)
        return self.inventory

    # -- state ----------------------------------------------------------------------------
    def state(self) -> CacheState:
        try:
            return CacheState(**json.loads(self.index.read_text()))
        except (OSError, ValueError, TypeError):
            return CacheState()

    def _save(self, state: CacheState) -> None:
        self.index.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        partial = self.index.with_suffix(".tmp")
        partial.write_text(json.dumps(asdict(state)))
        partial.replace(self.index)

    # -- refresh --------------------------------------------------------------------------
    def refresh(self, env: Mapping[str, str]) -> CacheState:
        """List the droplets once (the plugin rewrites its cache); on failure keep the hosts
        known so far and record why, so that runs can say it."""
        inventory = self.derived_inventory()
        state = self.state()
        now = datetime.now(UTC).isoformat()
        command = [str(Path(sys.executable).parent / "ansible-inventory"), "-i", str(inventory),
                   "--list", "--flush-cache"]  # fmt: skip
        run_env = {
            **{k: v for k, v in os.environ.items() if k in ("HOME", "LANG", "TMPDIR", "USER")},
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            "ANSIBLE_CONFIG": str(self.ansible_cfg),
            "ANSIBLE_NOCOLOR": "1",
            **env,
        }
        redact = Redactor(tuple(v for k, v in env.items() if k != "DTMA_DO_TAG")).text
        try:
            done = subprocess.run(
                command, env=run_env, capture_output=True, text=True, timeout=REFRESH_TIMEOUT
            )
        except subprocess.TimeoutExpired:
            reason = f"did not answer within {REFRESH_TIMEOUT} s"
            return self._failed(state, now, UNAVAILABLE, reason)
        if done.returncode != 0:
            reason = redact(_reason(done.stderr))
            code = TOKEN_REJECTED if "HTTP Error 401" in done.stderr else UNAVAILABLE
            return self._failed(state, now, code, reason)
        listed = json.loads(done.stdout)
        hostvars = listed.get("_meta", {}).get("hostvars", {})
        state = CacheState(
            refreshed_at=now,
            hosts={name: _plain(vars_.get("ansible_host")) for name, vars_ in hostvars.items()},
        )
        self._save(state)
        return state

    def _failed(self, state: CacheState, now: str, code: Outcome, reason: str) -> CacheState:
        state.error, state.error_code, state.error_at = reason, code, now
        self._save(state)
        return state

    # -- a run ----------------------------------------------------------------------------
    def for_run(self, hosts: tuple[str, ...], env: Mapping[str, str]) -> RunInventory:
        """The cached inventory when it knows every host (no API call), else a refreshed one."""
        inventory = self.derived_inventory()
        state, refreshed = self.state(), False
        if state.error_code != TOKEN_REJECTED and any(h not in state.hosts for h in hosts):
            state, refreshed = self.refresh(env), True  # a new droplet: bypass the cache
        now = datetime.now(UTC)
        data = {"source": "live" if refreshed and state.error is None else "cache",
                "refreshed_at": state.refreshed_at, "age_seconds": state.age_seconds(now),
                "api_error": state.error, "api_error_at": state.error_at}  # fmt: skip
        if state.error_code == TOKEN_REJECTED:
            return RunInventory(inventory, data, refusal=(TOKEN_REJECTED, (
                f"the DigitalOcean API refused the console's token at {state.error_at} "
                f"({state.error}): nothing was run; renew DTMA_DO_API_TOKEN, then sync"
            )))  # fmt: skip
        unknown = [h for h in hosts if h not in state.hosts]
        if unknown and state.error is None:  # listed just now: such droplets do not exist
            return RunInventory(inventory, data, refusal=(GONE, (
                f"{', '.join(unknown)} is not among the DigitalOcean droplets tagged for the "
                "console (it no longer exists, or never did): nothing was run"
            )))  # fmt: skip
        if unknown:
            return RunInventory(inventory, data, refusal=(UNAVAILABLE, (
                f"{', '.join(unknown)} is not in the cached inventory and the DigitalOcean API "
                f"could not be read ({state.error}): nothing was run"
            )))  # fmt: skip
        note = None
        if state.error is not None:
            note = (f"inventory from the cache, {data['age_seconds']} s old: the DigitalOcean "
                    f"API could not be read ({state.error})")  # fmt: skip
        return RunInventory(inventory, data, note=note)


def _plain(value: Any) -> str:
    """A value of `ansible-inventory --list`, which writes unsafe strings as objects."""
    if isinstance(value, Mapping):
        value = value.get("__ansible_unsafe", "")
    return "" if value is None else str(value)


def _reason(stderr: str) -> str:
    """What the plugin said went wrong (HTTP status, timeout), from ansible-inventory's
    error output."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for line in lines:
        if "plugin: " in line:
            return line.split("plugin: ", 1)[1][:300]
    return (lines[-1] if lines else "ansible-inventory failed")[:300]


def refresh_inventory(
    inventory: str | Path, env: Mapping[str, str], settings: Any = None
) -> CacheState | None:
    """Refresh the console's cached inventory (its sync calls this); None when the console
    keeps no cache (DTMA_INVENTORY_CACHE_DIR unset) or the inventory is not DigitalOcean's."""
    from runner.settings import RunnerSettings  # the settings are read when the sync runs

    settings = settings or RunnerSettings.from_env()
    source = Path(inventory)
    if settings.inventory_cache_dir is None or not uses_digitalocean(source):
        return None
    return InventoryCache(source, settings.inventory_cache_dir, settings.ansible_cfg).refresh(env)
