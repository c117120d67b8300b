"""One run, start to end: private data dir, ansible-runner, cancel/timeout, clean-up.

This is the only module that talks to ansible-runner.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import sys
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ansible_runner.config.runner import RunnerConfig
from ansible_runner.runner import Runner

from runner.catalog import PROJECT_ROOT
from runner.connection import ssh_environment
from runner.events import EventNormaliser
from runner.extravars import unsafe_yaml
from runner.identities import Identities
from runner.inventory import InventoryCache, RunInventory, uses_digitalocean
from runner.models import ConsoleResult, RunEvent
from runner.processes import MARKER, stop_run_processes
from runner.redact import Redactor
from runner.request import ValidRequest
from runner.result import Ending, ResultBuilder
from runner.rundir import RunDir
from runner.settings import RunnerSettings

log = logging.getLogger("runner")

EventCallback = Callable[[RunEvent], None]

# How often ansible-runner's loop looks at the cancel flag and the clock.
POLL_SECONDS = 0.2
# The part of the console's environment a run inherits; secrets come only from the request.
INHERITED_ENV = frozenset(
    {"HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TERM", "TZ", "TMPDIR", "SHELL",
     "SSH_AUTH_SOCK", "DTMA_DO_TAG", "ORIGINAL_STDOUT_CALLBACK"}
)  # fmt: skip
INHERITED_PREFIXES = ("LC_", "ANSIBLE_", "AWX_")
# Sources the secret environment from a pipe, then runs the real command.
ENV_PIPE_WRAPPER = 'set -a && . "$0" && set +a && rm -f "$0" && exec "$@"'


def _inherited(name: str) -> bool:
    return name in INHERITED_ENV or name.startswith(INHERITED_PREFIXES)


class Execution:
    """Runs one validated request; `run()` blocks and returns the ConsoleResult."""

    def __init__(
        self,
        request: ValidRequest,
        *,
        on_event: EventCallback | None = None,
        settings: RunnerSettings | None = None,
    ) -> None:
        self.request = request
        self.settings = settings or RunnerSettings.from_env()
        self.canceled = threading.Event()
        self.started_at: datetime | None = None
        self._on_event = on_event
        self._normaliser = EventNormaliser(
            request.run_id, Redactor(request.secrets, request.secret_keys), request.secret_outputs
        )
        self._secret_outputs: dict[str, Any] = {}
        self._builder = ResultBuilder(
            run_id=request.run_id,
            action=request.action,
            toolbox_id=request.toolbox_id,
            playbook=request.spec.name,
            hosts=list(request.hosts),
            timeout=request.timeout,
            check=request.check,
        )
        # Created now, so that a clash (RequestError) reaches the caller before any thread.
        self.rundir = RunDir.create(self.settings.runs_dir, request.run_id)

    def cancel(self) -> None:
        self.canceled.set()

    # -- events --------------------------------------------------------------------------
    def _emit(self, event: RunEvent) -> None:
        self._builder.add(event)
        if self._on_event is None:
            return
        try:
            self._on_event(event)
        except Exception:  # a broken subscriber must not break (or orphan) the run
            log.exception("run.event_callback_failed run_id=%s seq=%s", event.run_id, event.seq)

    def _raw_event(self, raw: Mapping[str, Any]) -> bool:
        if raw.get("event") == "playbook_on_stats" and self.request.secret_outputs:
            custom = (raw.get("event_data") or {}).get("artifact_data") or {}
            for key in self.request.secret_outputs & custom.keys():
                self._secret_outputs[key] = custom[key]
        event = self._normaliser.normalise(raw)
        if event is not None:
            self._emit(event)
        return False  # never let ansible-runner write raw events (unredacted) to disk

    # -- ansible-runner ------------------------------------------------------------------
    def _inventory(self) -> RunInventory | None:
        """The cached DigitalOcean inventory, when the console keeps one (runner/inventory.py)."""
        req, cache_dir = self.request, self.settings.inventory_cache_dir
        if cache_dir is None or not uses_digitalocean(req.inventory):
            return None
        cache = InventoryCache(req.inventory, cache_dir, self.settings.ansible_cfg)
        return cache.for_run(req.hosts, req.env)

    def _config(self, inventory: Path) -> RunnerConfig:
        req, rundir = self.request, self.rundir
        rundir.write("env/settings", json.dumps(
            {"suppress_output_file": True, "pexpect_timeout": POLL_SECONDS}
        ))  # fmt: skip
        known_hosts = rundir.write("known_hosts", req.known_hosts) if req.known_hosts else None
        cmdline = ["--check"] if req.check else []
        if req.extravars:
            cmdline += ["-e", "@" + str(rundir.pipe("extravars.yml", unsafe_yaml(req.extravars)))]
        identities = None
        if req.host_private_keys:  # several keys: each host offers its own (identities.py)
            identities = Identities.prepare(
                rundir, req.hosts, req.ssh_private_key, req.host_private_keys
            )
            cmdline += ["-e", "@" + str(identities.vars_file)]
        envvars = {
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            "ANSIBLE_CONFIG": str(self.settings.ansible_cfg),
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_FORCE_COLOR": "0",
            "ANSIBLE_SHOW_CUSTOM_STATS": "0",  # published data reaches us as events only
            MARKER: req.run_id,
            **ssh_environment(
                self.settings.ansible_cfg, known_hosts, identities_only=identities is not None
            ),
        }
        config = RunnerConfig(
            private_data_dir=str(rundir.path),
            project_dir=str(PROJECT_ROOT),
            playbook=str(req.spec.path),
            inventory=str(inventory),
            limit=",".join(req.hosts),
            cmdline=shlex.join(cmdline),
            envvars=envvars,
            ssh_key=None if identities else req.ssh_private_key,
            ident=req.run_id,
            timeout=req.timeout,
            quiet=True,
            suppress_env_files=True,
        )
        config.prepare()
        config.env = {k: v for k, v in config.env.items() if _inherited(k) or k in envvars}
        if identities is not None:
            config.command = identities.wrap(config.command)
        if req.env:
            secret_env = "".join(f"{k}={shlex.quote(v)}\n" for k, v in req.env.items())
            env_pipe = rundir.pipe("env.sh", secret_env)
            config.command = ["/bin/sh", "-c", ENV_PIPE_WRAPPER, str(env_pipe), *config.command]
        return config

    def _execute(self, inventory: Path) -> tuple[Ending, int | None, str | None]:
        try:
            runner = Runner(
                self._config(inventory),
                cancel_callback=self.canceled.is_set,
                event_handler=self._raw_event,
            )
            _, rc = runner.run()
        except Exception as error:
            log.exception("run.crashed run_id=%s", self.request.run_id)
            return "crashed", None, f"the run could not be executed: {error}"
        if runner.canceled:
            return "canceled", rc, None
        if runner.timed_out:
            return "timeout", rc, None
        return "finished", rc, None

    def crashed(self, error: Exception) -> ConsoleResult:
        """The result of a run that broke inside runner/ itself (a bug, logged)."""
        now = datetime.now(UTC)
        return self._builder.build(
            ending="crashed", rc=None, started_at=self.started_at or now, finished_at=now,
            crash=f"the run failed inside the runner: {error}",
        )  # fmt: skip

    def run(self) -> ConsoleResult:
        req = self.request
        started_at = self.started_at = datetime.now(UTC)
        crash: str | None = None
        rc: int | None = None
        ending: Ending = "canceled"
        cached: RunInventory | None = None
        try:
            # The inputs are not repeated here: they are the caller's to show (the API keeps
            # them with the run, secrets redacted), and an event is no place for a secret.
            self._emit(self._normaliser.make("run_start", data={
                "playbook": req.spec.name, "hosts": list(req.hosts), "check": req.check,
                "action": req.action, "toolbox_id": req.toolbox_id,
            }))  # fmt: skip
            cached = self._inventory()
            if cached is not None and cached.refusal is not None:
                ending, crash = "refused", cached.refusal[1]
            elif not self.canceled.is_set():
                ending, rc, crash = self._execute(cached.path if cached else req.inventory)
        finally:
            leftovers = stop_run_processes(req.run_id)
            # ansible-runner's pipe for the key, in its artifact dir, unread if ssh-add never ran
            key_pipe = self.rundir.path / "artifacts" / req.run_id / "ssh_key_data"
            self.rundir.close_pipes([key_pipe])
            if leftovers:
                log.error("run.processes_left run_id=%s processes=%s", req.run_id, leftovers)
            self.rundir.finish(keep=self.settings.keep_run_dirs)
        result = self._builder.build(
            ending=ending,
            rc=rc,
            started_at=started_at,
            finished_at=datetime.now(UTC),
            crash=crash,
            refused=cached.refusal[0] if cached and cached.refusal else None,
            inventory=cached.data if cached else None,
            note=cached.note if cached else None,
        )
        result._secret_outputs.update(self._secret_outputs)
        for host, task in list(self._builder.running.items()):  # cut short: close them
            self._emit(self._normaliser.make(
                "task_interrupted", host=host, task=task, data={"reason": result.status}
            ))  # fmt: skip
        self._emit(self._normaliser.make("run_end", data={
            "status": result.status, "success": result.success, "message": result.message,
            "error": result.error, "duration_ms": result.duration_ms,
        }))  # fmt: skip
        log.info(
            "run.finished run_id=%s action=%s status=%s duration_ms=%s",
            req.run_id, req.action, result.status, result.duration_ms,
        )  # fmt: skip
        return result
