"""Toolboxes from first boot to retirement (DESIGN.md, "Provisioning").

Provisioning: the droplet is created through the DigitalOcean API with a fresh key pair of
its own (made by the vault, sealed as the toolbox's active key, registered as a DigitalOcean
account key only for the creation), then one run follows it to the end: the droplet boots,
its host keys are pinned on first contact, the agent is installed (playbooks/dtma_install.yml,
confirmed by the console's own read of the agent) and every requested tool deployed
(playbooks/tool_deploy.yml, verified by the role). Retirement is one run too: the toolbox's
tools are stopped (playbooks/tool_stop.yml), the droplet destroyed through the API (and
checked gone), the toolbox's key erased and the toolbox marked removed; its runs and audit
entries stay.

Each run is stored like any other (the toolbox locked, a lease with a heartbeat, events in
one gap-free sequence any console streams): the console's own steps are `task_*` events of
their own, and the playbooks' events are renumbered into the same sequence. Both execute in
the console process that received the request, whatever DTMA_EXECUTOR says.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

import runner
from api.context import Context
from api.db import session_scope
from api.errors import ApiError, Conflict, InvalidInput, NotFound
from api.models import Toolbox, ToolInstance, User, new_id, utcnow
from api.schemas.actions import DeployTool
from api.services import audit, digitalocean, leases, run_store, toolboxes
from api.services.actions import Action, deploy_action, dtma_action, tool_action
from api.services.runs import confirm_result, run_request
from api.vault import hostkeys, keystore, registries, sshkeys

log = logging.getLogger("api.provisioning")

PROVISION = "toolbox.provision"
RETIRE = "toolbox.retire"
# How long a new droplet may take to boot and answer SSH.
BOOT_TIMEOUT_SECONDS = 300.0
POLL_SECONDS = 2.0
# How long a destroyed droplet may still be listed by the API.
DESTROY_TIMEOUT_SECONDS = 60.0


_PLAYBOOK_BOUNDS = {"run_start": "playbook_start", "run_end": "playbook_end"}


class _Canceled(Exception):
    """The run was canceled (from any console process) or written off by the reaper."""


@dataclass
class _Journal:
    """One run's events, written as they happen: the console's own steps and the events
    of the playbooks it runs, in one gap-free sequence; and the task outcomes and host
    counts its result reports."""

    context: Context
    run_id: str
    host: str
    seq: int = 0
    tasks: list[runner.TaskOutcome] = field(default_factory=list)
    counts: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(("ok", "changed", "failed", "unreachable"), 0)
    )
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _store(self, type_: str, task: str | None, data: dict[str, Any]) -> None:
        with self._lock:
            self.seq += 1
            event = runner.RunEvent(
                seq=self.seq,
                run_id=self.run_id,
                type=type_,
                host=self.host,
                task=task,
                at=utcnow(),
                data=data,
            )
            run_store.store_event(self.context.sessions, event)

    def forward(self, event: runner.RunEvent) -> None:
        """A playbook's event, renumbered into this run (from the runner's thread); its
        run_start/run_end become playbook_start/playbook_end (this run ends once)."""
        kind = _PLAYBOOK_BOUNDS.get(event.type, event.type)
        with self._lock:
            self.seq += 1
            run_store.store_event(
                self.context.sessions,
                event.model_copy(update={"seq": self.seq, "run_id": self.run_id, "type": kind}),
            )

    async def begin(self, action: str, parameters: dict[str, Any]) -> None:
        await run_in_threadpool(
            self._store, "run_start", None, {"action": action, "parameters": parameters}
        )

    async def end(self, result: runner.ConsoleResult) -> None:
        data = {
            "status": result.status, "success": result.success, "message": result.message,
            "error": result.error, "duration_ms": result.duration_ms,
        }  # fmt: skip
        await run_in_threadpool(self._store, "run_end", None, data)

    async def play(self, name: str) -> None:
        await run_in_threadpool(self._store, "play_start", None, {"play": name})

    async def step(
        self, task: str, work: Callable[[], Awaitable[tuple[bool, str]]]
    ) -> tuple[bool, str]:
        """Run one of the console's own steps, reported as task_start then task_changed
        (or task_ok when nothing changed) or task_failed with the reason."""
        await run_in_threadpool(self._store, "task_start", task, {})
        try:
            changed, message = await work()
        except _Canceled:
            raise
        except StepFailed as failed:
            await self._failed(task, failed.error)
            raise
        except ApiError as error:
            await self._failed(task, error.message)
            raise
        except Exception as error:
            log.exception("provisioning_step_failed", extra={"run_id": self.run_id})
            await self._failed(task, f"{type(error).__name__}: {error}")
            raise
        status: Literal["changed", "ok"] = "changed" if changed else "ok"
        outcome = runner.TaskOutcome(host=self.host, task=task, status=status, msg=message)
        self.tasks.append(outcome)
        self.counts["ok"] += 1
        self.counts["changed"] += int(changed)
        await run_in_threadpool(self._store, f"task_{status}", task, {"msg": message})
        return changed, message

    async def _failed(self, task: str, message: str) -> None:
        self.tasks.append(
            runner.TaskOutcome(host=self.host, task=task, status="failed", msg=message)
        )
        self.counts["failed"] += 1
        await run_in_threadpool(self._store, "task_failed", task, {"msg": message})

    def absorb(self, result: runner.ConsoleResult) -> None:
        """A playbook's task outcomes and counts, into the run's result."""
        self.tasks.extend(result.tasks)
        for counts in result.hosts.values():
            for key in self.counts:
                self.counts[key] += getattr(counts, key)


@dataclass
class _Live:
    run_id: str
    toolbox_id: str
    journal: _Journal
    task: asyncio.Task[None] | None = None
    handle: runner.RunHandle | None = None
    canceled: bool = False


class StepFailed(Exception):
    """A step of the run failed; the run ends with this result's status and error."""

    def __init__(self, status: runner.RunStatus, message: str, error: str, code: str | None):
        super().__init__(error)
        self.status, self.message, self.error, self.code = status, message, error, code


class Provisioner:
    """Provisioning and retirement runs executed in this console process (made and
    stopped by Context.start/stop)."""

    def __init__(self, context: Context) -> None:
        self._context = context
        self.owner = leases.process_owner()
        self._heartbeat = leases.Heartbeat(
            context.sessions, self.owner, context.settings.run_lease_seconds, self._stop_run
        )
        self._live: dict[str, _Live] = {}

    async def open(self) -> None:
        self._heartbeat.start()

    async def close(self, grace: float = 30.0) -> None:
        tasks = [live.task for live in self._live.values() if live.task is not None]
        for run_id in list(self._live):
            self._stop_run(run_id, "shutdown")
        if tasks:
            await asyncio.wait(tasks, timeout=grace)
        await asyncio.to_thread(self._heartbeat.stop)

    def _stop_run(self, run_id: str, why: str) -> None:
        live = self._live.get(run_id)
        if live is None:
            return
        log.warning("provisioning_run_stopped", extra={"run_id": run_id, "why": why})
        live.canceled = True
        if live.handle is not None:
            live.handle.cancel()

    # -- provisioning ------------------------------------------------------------------------
    async def provision(self, user: User, spec: ProvisionSpec) -> tuple[str, str]:
        """Create the droplet (through the API, before answering) and start the run that
        follows it to an installed toolbox. Returns (toolbox id, run id)."""
        created = await run_in_threadpool(_create, self._context, user, spec)
        run_id = new_id()
        action = Action(PROVISION, "dtma_install.yml", {}, spec.parameters())
        await run_in_threadpool(
            run_store.open_run,
            self._context.sessions,
            run_id,
            toolbox_id=created.toolbox_id,
            host=spec.name,
            action=action,
            user=user,
            owner=self.owner,
            running=True,
        )
        live = self._start(run_id, created.toolbox_id, spec.name)
        await live.journal.begin(PROVISION, action.parameters)
        await live.journal.play(f"Provision {spec.name}")
        await live.journal.step(
            "Create the droplet through the DigitalOcean API",
            _done(True, f"droplet {created.droplet_id} ({spec.region}, {spec.size}) created"),
        )
        live.task = asyncio.create_task(
            self._execute(live, PROVISION, lambda: self._provision(live, spec)),
            name=f"provision-{run_id}",
        )
        return created.toolbox_id, run_id

    async def _provision(self, live: _Live, spec: ProvisionSpec) -> dict[str, Any]:
        journal, context = live.journal, self._context
        await journal.step("Wait for the droplet to boot", lambda: self._booted(live))
        await journal.step("Pin the droplet's SSH host keys", lambda: self._pin(live))
        token = await run_in_threadpool(_agent_token, context, live.toolbox_id)
        await self._playbook(live, dtma_action("install", context.settings, token))
        for tool in spec.tools:
            login = await run_in_threadpool(_registry_login, context, tool.image)
            await self._playbook(live, deploy_action(tool, login))
        return {"tools": [tool.name for tool in spec.tools]}

    async def _booted(self, live: _Live) -> tuple[bool, str]:
        deadline = time.monotonic() + BOOT_TIMEOUT_SECONDS
        droplet_id = await run_in_threadpool(_droplet_id, self._context, live.toolbox_id)
        while True:
            self._check(live)
            droplet = await run_in_threadpool(
                digitalocean.get_droplet, self._context.settings, droplet_id
            )
            if droplet is None:
                raise StepFailed("failed", "the droplet vanished", "DigitalOcean no longer "
                                 f"lists droplet {droplet_id}", "toolbox_gone")  # fmt: skip
            if droplet.status == "active" and droplet.public_ipv4:
                await run_in_threadpool(_record_droplet, self._context, live.toolbox_id, droplet)
                return True, f"droplet {droplet_id} is active at {droplet.public_ipv4}"
            if time.monotonic() > deadline:
                raise StepFailed(
                    "timeout",
                    "the droplet did not boot",
                    f"droplet {droplet_id} still '{droplet.status}' after "
                    f"{BOOT_TIMEOUT_SECONDS:.0f} s",
                    "timeout",
                )
            await asyncio.sleep(POLL_SECONDS)

    async def _pin(self, live: _Live) -> tuple[bool, str]:
        """Trust on first use, as for an imported droplet; retried while sshd starts."""
        deadline = time.monotonic() + BOOT_TIMEOUT_SECONDS
        while True:
            self._check(live)
            try:
                return await run_in_threadpool(_pin_host_keys, self._context, live.toolbox_id)
            except ApiError as error:
                if time.monotonic() > deadline:
                    raise StepFailed(
                        "unreachable", "the droplet's SSH host keys could not be read",
                        error.message, "unreachable",
                    ) from None  # fmt: skip
            await asyncio.sleep(POLL_SECONDS)

    async def _playbook(self, live: _Live, action: Action) -> None:
        """One playbook run inside this run (its events renumbered into it); StepFailed
        with its reason when it did not succeed."""
        self._check(live)
        context = self._context
        request = await run_in_threadpool(_request, context, live.toolbox_id, action)
        try:
            live.handle = runner.start_run(request, on_event=live.journal.forward)
        except runner.RequestError as error:
            raise StepFailed("error", f"{action.name} was refused", error.message, None) from None
        if live.canceled:
            live.handle.cancel()
        result = await live.handle.wait()
        live.handle = None
        result = await confirm_result(context, action.name, live.toolbox_id, result)
        live.journal.absorb(result)
        if live.canceled:
            raise _Canceled
        if not result.success:
            raise StepFailed(
                result.status,
                f"{action.name} failed: {result.message}",
                result.error or result.message,
                result.error_code,
            )

    def _check(self, live: _Live) -> None:
        if live.canceled:
            raise _Canceled

    # -- retirement --------------------------------------------------------------------------
    async def retire(self, user: User, toolbox_id: str, *, force: bool) -> str:
        """Start the run that stops the toolbox's tools, destroys its droplet and marks
        it removed. Returns the run id (ToolboxBusy when another run holds it)."""
        name, tools = await run_in_threadpool(_retirable, self._context, toolbox_id)
        run_id = new_id()
        action = Action(RETIRE, "tool_stop.yml", {}, {"force": force, "tools": tools})
        await run_in_threadpool(
            run_store.open_run,
            self._context.sessions,
            run_id,
            toolbox_id=toolbox_id,
            host=name,
            action=action,
            user=user,
            owner=self.owner,
            running=True,
        )
        live = self._start(run_id, toolbox_id, name)
        await live.journal.begin(RETIRE, action.parameters)
        live.task = asyncio.create_task(
            self._execute(live, RETIRE, lambda: self._retire(live, name, tools, force)),
            name=f"retire-{run_id}",
        )
        return run_id

    async def _retire(
        self, live: _Live, name: str, tools: list[str], force: bool
    ) -> dict[str, Any]:
        journal = live.journal
        await journal.play(f"Retire {name}")
        not_stopped: list[str] = []
        for tool in tools:
            try:
                await self._playbook(live, tool_action("stop", tool))
            except StepFailed as failed:
                if not force:
                    raise StepFailed(
                        failed.status,
                        f"{name} was not retired: its tool {tool} could not be stopped "
                        "(retire with force=true to destroy the droplet anyway)",
                        failed.error,
                        failed.code,
                    ) from None
                not_stopped.append(tool)
        await journal.step(
            "Destroy the droplet through the DigitalOcean API", lambda: self._destroy(live)
        )
        await journal.step(
            "Erase the toolbox's SSH key and mark it removed",
            lambda: run_in_threadpool(_mark_retired, self._context, live.toolbox_id),
        )
        return {"tools_stopped": [t for t in tools if t not in not_stopped],
                "tools_not_stopped": not_stopped}  # fmt: skip

    async def _destroy(self, live: _Live) -> tuple[bool, str]:
        settings = self._context.settings
        droplet_id = await run_in_threadpool(_droplet_id, self._context, live.toolbox_id)
        existed = await run_in_threadpool(digitalocean.destroy_droplet, settings, droplet_id)
        deadline = time.monotonic() + DESTROY_TIMEOUT_SECONDS
        while await run_in_threadpool(digitalocean.get_droplet, settings, droplet_id):
            if time.monotonic() > deadline:
                raise StepFailed(
                    "failed", "the droplet was not destroyed",
                    f"DigitalOcean still lists droplet {droplet_id} "
                    f"{DESTROY_TIMEOUT_SECONDS:.0f} s after its deletion", "verify_failed",
                )  # fmt: skip
            await asyncio.sleep(POLL_SECONDS)
        said = "destroyed" if existed else "was already gone"
        return existed, f"droplet {droplet_id} {said}; the API no longer lists it"

    # -- the run's frame ---------------------------------------------------------------------
    def _start(self, run_id: str, toolbox_id: str, host: str) -> _Live:
        live = _Live(run_id, toolbox_id, _Journal(self._context, run_id, host))
        self._live[run_id] = live
        self._heartbeat.add(run_id)
        return live

    async def _execute(
        self, live: _Live, action: str, work: Callable[[], Awaitable[dict[str, Any]]]
    ) -> None:
        started = utcnow()
        status: runner.RunStatus = "successful"
        message, error, code, data = f"{action} done", None, None, {}
        try:
            data = await work()
        except _Canceled:
            status, message, error, code = "canceled", f"{action} canceled", "canceled", None
        except StepFailed as failed:
            status, message, error, code = failed.status, failed.message, failed.error, failed.code
        except ApiError as failure:
            status, message, error = "failed", f"{action} failed", failure.message
            code = failure.code
        except Exception as failure:  # the run must end and free its toolbox
            log.exception("provisioning_run_failed", extra={"run_id": live.run_id})
            status, message, error = "error", f"{action} failed", f"{type(failure).__name__}"
        finished = utcnow()
        journal = live.journal
        result = runner.ConsoleResult(
            run_id=live.run_id,
            action=action,
            toolbox_id=live.toolbox_id,
            status=status,
            success=status == "successful",
            message=message,
            error=error,
            error_code=code,
            started_at=started,
            finished_at=finished,
            duration_ms=int((finished - started).total_seconds() * 1000),
            hosts={journal.host: runner.HostCounts(**journal.counts)},
            tasks=journal.tasks,
            data=data,
        )
        try:
            with contextlib.suppress(Exception):  # the result is what matters
                await journal.end(result)
            await run_in_threadpool(
                run_store.close_run, self._context.sessions, live.run_id, result
            )
        finally:
            self._heartbeat.discard(live.run_id)
            self._live.pop(live.run_id, None)
        if action == RETIRE and result.success:
            with contextlib.suppress(Exception):  # the next sync refreshes it anyway
                await run_in_threadpool(toolboxes.refresh_run_inventory, self._context)
        elif action == PROVISION:
            for hook in self._context.runs.after_run:  # the monitor reads the new toolbox
                try:
                    await hook(live.toolbox_id, result)
                except Exception:
                    log.exception("after_run_hook_failed", extra={"run_id": live.run_id})


def _done(changed: bool, message: str) -> Callable[[], Awaitable[tuple[bool, str]]]:
    async def done() -> tuple[bool, str]:
        return changed, message

    return done


# -- what a provisioning request carries -------------------------------------------------------
@dataclass(frozen=True)
class ProvisionSpec:
    name: str
    region: str
    size: str
    tags: list[str]
    owner: str | None
    tools: list[DeployTool]

    def parameters(self) -> dict[str, Any]:
        """Safe to store and show (tools without their environment's values)."""
        return {
            "name": self.name, "region": self.region, "size": self.size, "tags": self.tags,
            "owner": self.owner, "tools": [tool.public() for tool in self.tools],
        }  # fmt: skip


@dataclass(frozen=True)
class _Created:
    toolbox_id: str
    droplet_id: int


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


def _create(context: Context, user: User, spec: ProvisionSpec) -> _Created:
    """Key pair, droplet, toolbox row: all of it or (as far as it is in the console's
    hands) none of it."""
    settings = context.settings
    with session_scope(context.sessions) as session:
        taken = session.scalar(
            select(Toolbox.id).where(Toolbox.name == spec.name, Toolbox.removed_at.is_(None))
        )
        if taken is not None:
            raise Conflict(f"a toolbox named {spec.name} exists already", code="toolbox_exists")
        owner = _owner(session, spec.owner)
    pair = sshkeys.generate(f"dtma-console:{spec.name}:{_stamp()}")
    tags = [settings.do_tag, *spec.tags]
    if owner is not None:
        tags.append(f"{toolboxes.OWNER_TAG_PREFIX}{owner.id}")
    key_id = digitalocean.create_account_key(
        settings, f"dtma-{spec.name}-{_stamp()}", pair.public_openssh
    )
    try:
        droplet = digitalocean.create_droplet(
            settings,
            name=spec.name,
            region=spec.region,
            size=spec.size,
            image=settings.do_droplet_image,
            tags=list(dict.fromkeys(tags)),
            ssh_key_ids=[key_id],
        )
    finally:  # the droplet carries the key from now on; the account needs it no more
        digitalocean.delete_account_key(settings, key_id)
    try:
        with session_scope(context.sessions) as session:
            toolbox = Toolbox(
                droplet_id=droplet.id,
                name=droplet.name,
                address=droplet.public_ipv4,
                region=droplet.region,
                droplet_status=droplet.status,
                owner_id=owner.id if owner is not None else None,
            )
            context.secrets.seal_into(
                toolbox, Toolbox.agent_token_ciphertext, toolboxes.new_agent_token()
            )
            session.add(toolbox)
            session.flush()
            keystore.activate(
                session, keystore.add_pending(session, context.secrets, toolbox.id, pair)
            )
            audit.record(
                session, user=user, action="toolbox.create", outcome="successful",
                toolbox_id=toolbox.id, parameters=spec.parameters(),
                detail=f"droplet {droplet.id} created with key {pair.fingerprint}",
            )  # fmt: skip
            return _Created(toolbox.id, droplet.id)
    except Exception:
        digitalocean.destroy_droplet(settings, droplet.id)  # no droplet the console forgot
        raise


def _owner(session: Session, name: str | None) -> User | None:
    if name is None:
        return None
    owner = session.scalar(select(User).where(User.name == name))
    if owner is None:
        raise InvalidInput("owner", f"no user named '{name}'")
    return owner


def _toolbox(session: Session, toolbox_id: str) -> Toolbox:
    toolbox = session.get(Toolbox, toolbox_id)
    if toolbox is None:
        raise NotFound(f"toolbox '{toolbox_id}' not found", code="toolbox_not_found")
    return toolbox


def _droplet_id(context: Context, toolbox_id: str) -> int:
    with context.sessions() as session:
        return _toolbox(session, toolbox_id).droplet_id


def _record_droplet(context: Context, toolbox_id: str, droplet: digitalocean.DropletInfo) -> None:
    with session_scope(context.sessions) as session:
        toolbox = _toolbox(session, toolbox_id)
        toolbox.address, toolbox.droplet_status = droplet.public_ipv4, droplet.status


def _pin_host_keys(context: Context, toolbox_id: str) -> tuple[bool, str]:
    with session_scope(context.sessions) as session:
        toolbox = _toolbox(session, toolbox_id)
        pinned = hostkeys.pin_on_first_contact(
            session, toolbox, context.settings.ssh_keyscan_timeout
        )
        prints = [key.fingerprint for key in hostkeys.pinned(session, toolbox_id)]
    return pinned, f"pinned {', '.join(prints)}"


def _registry_login(context: Context, image: str) -> dict[str, Any] | None:
    """The private-registry login a tool's pull needs, as the tools route gets it."""
    with context.sessions() as session:
        return registries.login_for(session, context.secrets, image)


def _agent_token(context: Context, toolbox_id: str) -> str:
    with context.sessions() as session:
        toolbox = _toolbox(session, toolbox_id)
        return context.secrets.unseal_from(toolbox, Toolbox.agent_token_ciphertext)


def _request(context: Context, toolbox_id: str, action: Action) -> runner.RunRequest:
    """The playbook's request with the toolbox's own key and pinned host keys."""
    with context.sessions() as session:
        toolbox = _toolbox(session, toolbox_id)
        credentials = context.credentials.for_toolbox(toolbox)
        name = toolbox.name
    request = run_request(
        context, new_id(), toolbox_id, name, credentials, action.name, action.playbook,
        action.extravars,
    )  # fmt: skip
    return request


def _retirable(context: Context, toolbox_id: str) -> tuple[str, list[str]]:
    """(name, its tool instances) of a toolbox that can be retired."""
    with context.sessions() as session:
        toolbox = _toolbox(session, toolbox_id)
        if toolbox.removed_at is not None:
            raise Conflict(f"toolbox {toolbox.name} is already removed", code="toolbox_removed")
        tools = session.scalars(
            select(ToolInstance.name).where(
                ToolInstance.toolbox_id == toolbox_id, ToolInstance.removed_at.is_(None)
            )
        )
        return toolbox.name, sorted(tools)


def _mark_retired(context: Context, toolbox_id: str) -> tuple[bool, str]:
    with session_scope(context.sessions) as session:
        toolbox = _toolbox(session, toolbox_id)
        for key in keystore.history(session, toolbox_id):
            if key.state in ("active", "pending"):
                keystore.revoke(session, key)
        toolbox.removed_at, toolbox.droplet_status = utcnow(), "destroyed"
        return True, f"{toolbox.name} removed; its runs and audit entries are kept"
