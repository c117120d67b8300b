"""The monitor: one per process, owning the observer, the webhook dispatcher and recovery.

    async with Monitor(context) as monitor:       # context.runs set: recovery is possible
        report = await monitor.sync_all()         # status sync only
        cycle = await monitor.run_cycle()         # sync, checks, alerts, recovery

The service starts one in its lifespan (api/monitoring/router.py) with the periodic loop;
`dtma-console sync` starts one without recovery for a single sync.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from types import TracebackType
from typing import TypeVar

import runner
from api.context import Context
from api.db import session_scope
from api.errors import NotFound
from api.models import utcnow
from api.monitoring import history, reminders
from api.monitoring.observe import Observer
from api.monitoring.recovery import Recovery
from api.monitoring.sync import SyncReport, ToolboxSync, load_targets, sync
from api.monitoring.webhooks import WebhookDispatcher
from api.services import toolboxes
from api.services.agent import AgentClient

log = logging.getLogger("api.monitoring")
T = TypeVar("T")


def _running(part: Callable[[], T]) -> T | None:
    """A part of the context that exists only while the service runs, or None."""
    try:
        return part()
    except RuntimeError:
        return None


@dataclass
class CycleReport:
    sync: SyncReport
    recovery_runs: list[str] = field(default_factory=list)


class Monitor:
    def __init__(self, context: Context, *, recovery: bool = True) -> None:
        self.context = context
        settings = context.settings
        # The service's agent client; the CLI's sync (no app running) makes its own.
        agent = _running(lambda: context.agent) or AgentClient(
            port=settings.agent_port, timeout=settings.agent_timeout
        )
        self.observer = Observer(
            agent,
            concurrency=settings.sync_concurrency,
            ssh_concurrency=settings.sync_ssh_concurrency,
            ssh_timeout=settings.ssh_probe_timeout,
            relearn=lambda target: toolboxes.relearn_agent_access(context, target.toolbox_id),
        )
        self.webhooks = WebhookDispatcher(context.sessions, settings)
        # Without a run manager (the CLI) there are neither runs to follow nor repairs.
        self._runs = _running(lambda: context.runs)
        self.recovery = (
            Recovery(context, self.webhooks.publish)
            if recovery and self._runs is not None
            else None
        )
        self._sync_lock = asyncio.Lock()
        self._after_run: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> Monitor:
        # The loop the monitor lives on: other threads (tests, the CLI) submit work to it.
        self.loop = asyncio.get_running_loop()
        if self.recovery is not None:
            await asyncio.to_thread(self.recovery.settle_orphans)
        if self._runs is not None:
            self._runs.after_run.append(self.after_run)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._runs is not None and self.after_run in self._runs.after_run:
            self._runs.after_run.remove(self.after_run)
        for task in list(self._after_run):
            task.cancel()
        await asyncio.gather(*self._after_run, return_exceptions=True)
        await self.webhooks.aclose()
        self.observer.close()

    # -- sync --------------------------------------------------------------------------------
    async def sync_all(self, toolbox_ids: Collection[str] | None = None) -> SyncReport:
        """Read every toolbox (or the given ones) and write what was found; alerts opened or
        resolved on the way go to the webhooks."""
        targets = await asyncio.to_thread(
            load_targets,
            self.context.sessions,
            self.context.credentials,
            self.context.secrets,
            None if toolbox_ids is None else list(toolbox_ids),
        )
        async with self._sync_lock:
            report = await sync(
                self.observer, self.context.sessions, self.context.settings, targets
            )
        self.webhooks.publish(report.events)
        return report

    async def sync_toolbox(self, toolbox_id: str) -> ToolboxSync:
        report = await self.sync_all([toolbox_id])
        if not report.toolboxes:
            raise NotFound(f"toolbox '{toolbox_id}' not found", code="toolbox_not_found")
        return report.toolboxes[0]

    async def after_run(self, toolbox_id: str, result: runner.ConsoleResult) -> None:
        """RunManager hook: re-read the toolbox a run touched, in the background (the run's
        caller does not wait for it)."""
        task = asyncio.create_task(self._sync_after_run(toolbox_id, result.run_id))
        self._after_run.add(task)
        task.add_done_callback(self._after_run.discard)

    async def _sync_after_run(self, toolbox_id: str, run_id: str) -> None:
        try:
            await self.sync_all([toolbox_id])
        except Exception:
            log.exception(
                "sync_after_run_failed", extra={"toolbox_id": toolbox_id, "run_id": run_id}
            )

    # -- the whole cycle ---------------------------------------------------------------------
    async def run_cycle(
        self, toolbox_ids: Collection[str] | None = None, *, wait: bool = False
    ) -> CycleReport:
        """Sync, judge, alert, start the repairs that are due and send the reminders, on
        every toolbox (or the given ones). With `wait`, return only when those repairs, the
        syncs after them and the notifications have ended."""
        report = CycleReport(sync=await self.sync_all(toolbox_ids))
        if self.recovery is not None:
            report.recovery_runs = await self.recovery.consider(toolbox_ids)
        if self.webhooks.targets:
            self.webhooks.publish(
                await asyncio.to_thread(
                    reminders.due,
                    self.context.sessions,
                    self.context.settings.notify_repeat,
                    toolbox_ids,
                )
            )
        await asyncio.to_thread(self._keep_history)
        if wait:
            await self.drain()
        return report

    async def drain(self, timeout: float | None = None) -> None:
        if self.recovery is not None:
            await self.recovery.wait(timeout)
        if self._after_run:
            await asyncio.wait(set(self._after_run), timeout=timeout)
        await self.webhooks.drain(timeout)

    def _keep_history(self) -> None:
        """Average the metric buckets that closed and prune what is past retention."""
        with session_scope(self.context.sessions) as session:
            history.keep(session, self.context.settings, utcnow())


def sync_once(context: Context) -> SyncReport:
    """One status sync of every toolbox, outside the service (the CLI): blocking."""

    async def run() -> SyncReport:
        async with Monitor(context, recovery=False) as monitor:
            return await monitor.sync_all()

    return asyncio.run(run())
