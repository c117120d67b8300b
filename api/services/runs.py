"""Runs: the run manager's interface and its local implementation.

A run is stored (`queued`, the toolbox locked) before anything starts, executed by
`runner/`, its events stored as they happen, its result stored when it ends (see
api/services/run_store.py, the one module that writes runs). Where it executes is the
executor's business: `LocalRunManager` (here) runs it in this process, at most
DTMA_MAX_CONCURRENT_RUNS at once; `CeleryRunManager` (api/executors/) hands its id to a
worker. Either way the executing process holds a lease (api/services/leases.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from starlette.concurrency import run_in_threadpool

import runner
from api.context import Context
from api.errors import Conflict, InvalidInput, NotFound
from api.metrics import RUN_DURATION, RUNS, RUNS_QUEUED
from api.models import User, new_id, utcnow
from api.services import leases, run_store, toolboxes
from api.services.actions import Action, changes_agent
from api.services.credentials import SshCredentials
from api.services.run_store import IN_FLIGHT, run_url

__all__ = [
    "IN_FLIGHT", "FleetStart", "FleetTarget", "LocalRunManager", "RunManager", "Target",
    "confirm_fleet_result", "run_request", "run_url",
]  # fmt: skip

log = logging.getLogger("api.runs")

# How long past its own timeout a run may go without a result before it is written off.
WATCHDOG_GRACE_SECONDS = 120
# Agents read back at once after a rollout's run (a read may relearn over SSH).
FLEET_CHECKS_AT_ONCE = 16

# Called after every run with (toolbox id, result); monitoring re-reads the toolbox.
AfterRunHook = Callable[[str, runner.ConsoleResult], Awaitable[None]]


@dataclass(frozen=True)
class Target:
    """What a run needs to know about its toolbox, read before it starts."""

    toolbox_id: str
    host: str
    credentials: SshCredentials


@dataclass(frozen=True)
class FleetTarget:
    """The toolboxes of one run over many (a rollout), read before it starts."""

    members: tuple[Target, ...]
    rollout_id: str

    @property
    def hosts(self) -> dict[str, str]:
        return {member.toolbox_id: member.host for member in self.members}

    def only(self, toolbox_ids: list[str]) -> FleetTarget:
        kept = tuple(m for m in self.members if m.toolbox_id in toolbox_ids)
        return FleetTarget(kept, self.rollout_id)


@dataclass(frozen=True)
class FleetStart:
    run_id: str
    skipped: dict[str, str]  # toolbox id -> why it was left out (busy)


class RunManager(Protocol):
    """Start, cancel, wait for and follow runs, whichever process executes them."""

    after_run: list[AfterRunHook]

    async def open(self) -> None:
        """Recover this host's dead processes' runs; start the heartbeat and the reaper."""

    async def close(self) -> None:
        """Stop what this process still runs (bounded) and its background work."""

    async def start(self, target: Target, action: Action, user: User | None) -> str:
        """Store the run and lock the toolbox; returns the run id at once. ToolboxBusy
        when another run holds the toolbox, InvalidInput when the runner refuses it."""
        ...

    async def start_fleet(
        self, fleet: FleetTarget, action: Action, user: User | None
    ) -> FleetStart:
        """One run over the fleet's free toolboxes, each locked (the busy ones are skipped
        and returned); ToolboxBusy when none is free."""
        ...

    def cancel(self, run_id: str) -> None:
        """Ask the run to stop (thread-safe); Conflict when it is not in flight."""

    async def wait(self, run_id: str) -> runner.ConsoleResult:
        """The run's result once it ended (NotFound when there is no such run)."""
        ...

    def events(self, run_id: str, after: int) -> AsyncIterator[dict[str, Any]]:
        """Its events with seq > `after`, in order, live until it ends."""
        ...


def run_request(
    context: Context,
    run_id: str,
    toolbox_id: str,
    host: str,
    credentials: SshCredentials,
    action: str,
    playbook: str,
    extravars: dict[str, Any],
) -> runner.RunRequest:
    """The runner's request for a run, the same in every executor."""
    settings = context.settings
    return runner.RunRequest(
        playbook=playbook,
        hosts=[host],
        extravars=extravars,
        inventory=settings.inventory,
        ssh_private_key=credentials.private_key,
        known_hosts=credentials.known_hosts,
        timeout=settings.run_timeout,
        action=action,
        toolbox_id=toolbox_id,
        run_id=run_id,
        env=toolboxes.run_env(context),
    )


def validated_request(
    context: Context, run_id: str, target: Target, action: Action
) -> runner.RunRequest:
    """The run's request, checked by runner/ before anything is stored (InvalidInput when
    it refuses it), the same in every executor."""
    request = run_request(
        context,
        run_id,
        target.toolbox_id,
        target.host,
        target.credentials,
        action.name,
        action.playbook,
        action.extravars,
    )
    try:
        runner.validate_request(request)
    except runner.RequestError as error:
        raise InvalidInput(error.field, error.message) from error
    return request


def merged_credentials(
    members: tuple[Target, ...],
) -> tuple[str | None, dict[str, str], str | None]:
    """One run's SSH credentials for many toolboxes: the key most of them use, the hosts
    reached with another key (runner/identities.py: each host offers only its own), and
    the known_hosts lines of every member."""
    counts = Counter(m.credentials.private_key for m in members if m.credentials.private_key)
    default = counts.most_common(1)[0][0] if counts else None
    others = {
        m.host: m.credentials.private_key
        for m in members
        if m.credentials.private_key and m.credentials.private_key != default
    }
    lines = [m.credentials.known_hosts for m in members if m.credentials.known_hosts]
    return default, others, "\n".join(line.rstrip("\n") for line in lines) or None


def fleet_request(
    context: Context, run_id: str, fleet: FleetTarget, action: str, playbook: str,
    extravars: dict[str, Any],
) -> runner.RunRequest:  # fmt: skip
    """The runner's request for a run over many toolboxes, checked like a single run's
    (InvalidInput when runner/ refuses it), the same in every executor."""
    settings = context.settings
    key, host_keys, known_hosts = merged_credentials(fleet.members)
    request = runner.RunRequest(
        playbook=playbook,
        hosts=[member.host for member in fleet.members],
        extravars=extravars,
        inventory=settings.inventory,
        ssh_private_key=key,
        host_private_keys=host_keys,
        known_hosts=known_hosts,
        timeout=settings.run_timeout,
        action=action,
        run_id=run_id,
        env=toolboxes.run_env(context),
    )
    try:
        runner.validate_request(request)
    except runner.RequestError as error:
        raise InvalidInput(error.field, error.message) from error
    return request


class BatchGate:
    """Stops a rollout's run when its next batch would start after a cancel was asked
    for (the rollout's `cancel_requested_at`): the batch in progress finishes, the later
    ones never start. Called with every event, in the runner's thread."""

    def __init__(self, sessions: run_store.Sessions, run_id: str) -> None:
        self._sessions = sessions
        self._run_id = run_id
        self._plays = 0
        self.handle: runner.RunHandle | None = None

    def __call__(self, event: runner.RunEvent) -> None:
        if event.type != "play_start":
            return
        self._plays += 1
        stop = self._plays > 1 and self.handle is not None
        if stop and run_store.rollout_cancel_requested(self._sessions, self._run_id):
            assert self.handle is not None
            log.info("rollout_stopped_between_batches", extra={"run_id": self._run_id})
            self.handle.cancel()


def on_event_of(
    sessions: run_store.Sessions,
    request: runner.RunRequest,
    publish: Callable[[runner.RunEvent], None] | None = None,
) -> tuple[Callable[[runner.RunEvent], None], BatchGate | None]:
    """What a run does with each event, in every executor: store it (and `publish` it);
    a rollout's run (no single toolbox) also passes it to its BatchGate."""
    gate = BatchGate(sessions, str(request.run_id)) if request.toolbox_id is None else None

    def on_event(event: runner.RunEvent) -> None:
        run_store.store_event(sessions, event)
        if publish is not None:
            publish(event)
        if gate is not None:
            gate(event)

    return on_event, gate


async def confirm_result(
    context: Context, action: str, toolbox_id: str, result: runner.ConsoleResult
) -> runner.ConsoleResult:
    """After the playbook, in the process that ran it: a run that changed the agent is
    confirmed by the console's own read of it (see toolboxes.confirm_agent)."""
    if not changes_agent(action):
        return result
    try:
        return await toolboxes.confirm_agent(context, toolbox_id, result)
    except Exception as error:  # the run must still end and free its toolbox
        log.exception("agent_confirm_failed", extra={"run_id": result.run_id})
        reason = f"the console could not read the agent after the run: {error}"
        return result.model_copy(update={"status": "error", "success": False, "error": reason})


def _verified_on_droplet(result: runner.ConsoleResult, host: str) -> bool:
    """The host ran the agent action without a failure and its role published the outcome
    (hosts a halted or canceled rollout never reached published nothing)."""
    counts = result.hosts.get(host)
    published = (result.data.get("per_host") or {}).get(host, {}).get("dtma_result")
    return (
        counts is not None
        and counts.failed == 0
        and counts.unreachable == 0
        and (isinstance(published, dict) and published.get("rolled_back") is not True)
    )


async def confirm_fleet_result(
    context: Context, action: str, members: dict[str, str], result: runner.ConsoleResult
) -> runner.ConsoleResult:
    """After a rollout's run that changed the agent (members: host -> toolbox id): every
    host the droplet-side check passed is read back by the console, as after a single run
    (toolboxes.check_agent, pin and token relearnt when the run changed them). What each
    read saw is kept as `data.console_checks[host]`; a host that did not answer makes the
    run `failed`, naming it (its rollout state becomes `failed`, not `successful`)."""
    if not changes_agent(action):
        return result
    hosts = [host for host in members if _verified_on_droplet(result, host)]
    at_once = asyncio.Semaphore(FLEET_CHECKS_AT_ONCE)

    async def check(host: str) -> toolboxes.AgentCheck:
        try:
            async with at_once:
                return await toolboxes.check_agent(context, members[host], result)
        except Exception as error:  # the run must still end and free its toolboxes
            log.exception("agent_confirm_failed", extra={"run_id": result.run_id})
            return toolboxes.AgentCheck(host, "", None, f"the console could not read it: {error}")

    checks = await asyncio.gather(*(check(host) for host in hosts))
    data = {**result.data, "console_checks": {c.name: c.public() for c in checks}}
    failed = [c for c in checks if not c.ok]
    if not failed:
        return result.model_copy(update={"data": data})
    error = "; ".join(
        f"the DTMA agent on {c.name} did not verify from the console ({c.url}): {c.error}"
        for c in failed
    )
    names = ", ".join(c.name for c in failed)
    return result.model_copy(
        update={
            "status": "failed" if result.success else result.status,
            "success": False,
            "error": error if result.success else f"{result.error}; {error}",
            "error_code": "verify_failed" if result.success else result.error_code,
            "message": f"{action} failed on {names}: the console could not read the agent back",
            "data": data,
        }
    )


class Reaper:
    """Every third of the lease, write off runs whose owner stopped beating."""

    def __init__(self, context: Context) -> None:
        self._context = context
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="run-reaper")

    async def _loop(self) -> None:
        lease = self._context.settings.run_lease_seconds
        while True:
            await asyncio.sleep(max(lease / 3, 0.5))
            try:
                await asyncio.to_thread(leases.reap, self._context.sessions, lease)
            except Exception:
                log.exception("run_reaper_failed")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


@dataclass
class _Live:
    run_id: str
    toolbox_id: str | None  # None for a rollout's run (over `toolbox_ids`)
    action: Action
    request: runner.RunRequest
    loop: asyncio.AbstractEventLoop
    toolbox_ids: tuple[str, ...] = ()
    handle: runner.RunHandle | None = None
    task: asyncio.Task[runner.ConsoleResult] | None = None
    started: asyncio.Event = field(default_factory=asyncio.Event)
    canceled: asyncio.Event = field(default_factory=asyncio.Event)


class LocalRunManager:
    """Runs executed in this process (DTMA_EXECUTOR=local), at most
    DTMA_MAX_CONCURRENT_RUNS at once; the others wait `queued`, first come first served."""

    def __init__(self, context: Context) -> None:
        self._context = context
        self._live: dict[str, _Live] = {}
        self._queue: list[str] = []  # run ids waiting for a slot, oldest first
        self._slots = asyncio.Semaphore(context.settings.max_concurrent_runs)
        self.owner = leases.process_owner()
        self._heartbeat = leases.Heartbeat(
            context.sessions, self.owner, context.settings.run_lease_seconds, self._stop_run
        )
        self._reaper = Reaper(context)
        self.after_run: list[AfterRunHook] = []

    # -- lifecycle ---------------------------------------------------------------------------
    async def open(self) -> None:
        await asyncio.to_thread(leases.recover_own, self._context.sessions)
        self._heartbeat.start()
        self._reaper.start()

    async def close(self, grace: float = 30.0) -> None:
        """Cancel what still runs and wait (bounded) until each result is stored."""
        tasks = [live.task for live in self._live.values() if live.task is not None]
        for run_id in list(self._live):
            self.cancel(run_id)
        if tasks:
            await asyncio.wait(tasks, timeout=grace)
        await self._reaper.stop()
        await asyncio.to_thread(self._heartbeat.stop)

    # -- start -----------------------------------------------------------------------------
    async def start(self, target: Target, action: Action, user: User | None) -> str:
        run_id = new_id()
        request = validated_request(self._context, run_id, target, action)
        # A free slot is taken now (the run is stored `running`); otherwise it queues.
        slotted = not self._slots.locked()
        if slotted:
            await self._slots.acquire()  # immediate: a slot is free and nothing awaits between
        try:
            await run_in_threadpool(
                run_store.open_run,
                self._context.sessions,
                run_id,
                toolbox_id=target.toolbox_id,
                host=target.host,
                action=action,
                user=user,
                owner=self.owner,
                running=slotted,
            )
        except BaseException:
            if slotted:
                self._slots.release()
            raise
        live = _Live(
            run_id, target.toolbox_id, action, request, asyncio.get_running_loop(),
            (target.toolbox_id,),
        )  # fmt: skip
        self._launch(live, slotted)
        return run_id

    async def start_fleet(
        self, fleet: FleetTarget, action: Action, user: User | None
    ) -> FleetStart:
        run_id = new_id()
        fleet_request(self._context, run_id, fleet, action.name, action.playbook, action.extravars)
        slotted = not self._slots.locked()
        if slotted:
            await self._slots.acquire()
        try:
            skipped = await run_in_threadpool(
                functools.partial(
                    run_store.open_fleet_run, self._context.sessions, run_id,
                    members=fleet.hosts, action=action, user=user, owner=self.owner,
                    running=slotted, rollout_id=fleet.rollout_id,
                )
            )  # fmt: skip
        except BaseException:
            if slotted:
                self._slots.release()
            raise
        locked = fleet.only([tid for tid in fleet.hosts if tid not in skipped])
        request = fleet_request(
            self._context, run_id, locked, action.name, action.playbook, action.extravars
        )
        live = _Live(
            run_id, None, action, request, asyncio.get_running_loop(),
            tuple(m.toolbox_id for m in locked.members),
        )  # fmt: skip
        self._launch(live, slotted)
        return FleetStart(run_id, skipped)

    def _launch(self, live: _Live, slotted: bool) -> None:
        run_id = live.run_id
        self._live[run_id] = live
        self._heartbeat.add(run_id)
        if not slotted:
            self._queue.append(run_id)
            RUNS_QUEUED.set(len(self._queue))
        live.task = asyncio.create_task(self._execute(live, slotted), name=f"run-{run_id}")

    async def _slot(self, live: _Live) -> bool:
        """Wait for a free slot; False when the run was canceled while it waited."""
        acquire = asyncio.ensure_future(self._slots.acquire())
        canceled = asyncio.ensure_future(live.canceled.wait())
        try:
            await asyncio.wait({acquire, canceled}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            canceled.cancel()
            self._queue.remove(live.run_id)
            RUNS_QUEUED.set(len(self._queue))
        if acquire.done() and not acquire.cancelled():
            if not live.canceled.is_set():
                return True
            self._slots.release()
            return False
        acquire.cancel()
        return False

    async def _execute(self, live: _Live, slotted: bool) -> runner.ConsoleResult:
        try:
            if not slotted and not await self._slot(live):
                result = run_store.canceled_before_start(
                    live.run_id, live.action.name, live.toolbox_id
                )
            else:
                try:
                    result = await self._run(live, claimed=slotted)
                finally:
                    self._slots.release()
                if live.toolbox_id is not None:
                    result = await confirm_result(
                        self._context, live.action.name, live.toolbox_id, result
                    )
                else:
                    members = dict(zip(live.request.hosts, live.toolbox_ids, strict=True))
                    result = await confirm_fleet_result(
                        self._context, live.action.name, members, result
                    )
            await run_in_threadpool(
                run_store.close_run, self._context.sessions, live.run_id, result
            )
            RUNS.labels(live.action.name, result.status).inc()
            RUN_DURATION.labels(live.action.name, result.status).observe(result.duration_ms / 1000)
        finally:
            self._heartbeat.discard(live.run_id)
            self._live.pop(live.run_id, None)
            live.started.set()
        for hook in self.after_run:
            for toolbox_id in live.toolbox_ids:
                try:
                    await hook(toolbox_id, result)
                except Exception:
                    log.exception("after_run_hook_failed", extra={"run_id": live.run_id})
        return result

    async def _run(self, live: _Live, *, claimed: bool) -> runner.ConsoleResult:
        sessions = self._context.sessions
        if not claimed and not await run_in_threadpool(
            run_store.claim, sessions, live.run_id, self.owner, unowned=False
        ):
            # Written off while it waited (the reaper saw no heartbeat): never start it.
            return run_store.canceled_before_start(live.run_id, live.action.name, live.toolbox_id)
        on_event, gate = on_event_of(sessions, live.request)
        try:
            live.handle = runner.start_run(live.request, on_event=on_event)
            if gate is not None:
                gate.handle = live.handle
        except runner.RequestError as error:  # validated at start: the world changed since
            return run_store.refused(live.run_id, live.action.name, live.toolbox_id, error)
        finally:
            live.started.set()
        if live.canceled.is_set():
            live.handle.cancel()
        return await self._outcome(live, live.handle)

    async def _outcome(self, live: _Live, handle: runner.RunHandle) -> runner.ConsoleResult:
        """The runner's result; if it never reports one (its worker died), an `error`
        result saying so once the run's own timeout is well past."""
        started = utcnow()
        deadline = self._context.settings.run_timeout + WATCHDOG_GRACE_SECONDS
        try:
            return await asyncio.wait_for(asyncio.shield(handle.wait()), deadline)
        except TimeoutError:
            handle.cancel()
            finished = utcnow()
            log.error("run_watchdog_fired", extra={"run_id": live.run_id})
            return runner.ConsoleResult(
                run_id=live.run_id,
                action=live.action.name,
                toolbox_id=live.toolbox_id,
                status="error",
                success=False,
                message=f"{live.action.name} did not report an end",
                error=f"the runner reported no result {deadline} s after the start; the run "
                "was canceled and its outcome on the toolbox is unknown",
                started_at=started,
                finished_at=finished,
                duration_ms=int((finished - started).total_seconds() * 1000),
            )

    # -- queries and control -----------------------------------------------------------------
    def is_live(self, run_id: str) -> bool:
        return run_id in self._live

    def queue_depth(self) -> int:
        return len(self._queue)

    async def wait(self, run_id: str) -> runner.ConsoleResult:
        live = self._live.get(run_id)
        if live is None or live.task is None:
            result = await run_in_threadpool(run_store.result_of, self._context.sessions, run_id)
            if result is None:
                raise NotFound(
                    f"run '{run_id}' is not running in this process", code="run_not_live"
                )
            return result
        # A client that disconnects must not cancel the run.
        return await asyncio.shield(live.task)

    def cancel(self, run_id: str) -> None:
        live = self._live.get(run_id)
        if live is None:
            raise Conflict(f"run '{run_id}' is not running", code="run_not_running")
        live.loop.call_soon_threadsafe(live.canceled.set)
        if live.handle is not None:
            live.handle.cancel()

    def _stop_run(self, run_id: str, why: str) -> None:
        """From the heartbeat: the run was written off by the reaper (or a cancel came
        from another process): stop it here, it must not go on."""
        live = self._live.get(run_id)
        if live is not None and (live.handle is None or not live.handle.done):
            log.warning("run_stopped", extra={"run_id": run_id, "why": why})
            self.cancel(run_id)

    async def events(self, run_id: str, after: int) -> AsyncIterator[dict[str, Any]]:
        """Live from the runner while the run executes here, otherwise from the database
        (polled while another process still runs it)."""
        while True:
            live = self._live.get(run_id)
            if live is not None:
                await live.started.wait()
                if live.handle is not None:
                    async for event in live.handle.events(after=after):
                        yield event.model_dump(mode="json")
                    return
            stored, status = await run_in_threadpool(
                run_store.stored_events, self._context.sessions, run_id, after
            )
            for row in stored:
                yield row
                after = row["seq"]
            if status not in IN_FLIGHT:
                return
            await asyncio.sleep(0.5)
