"""CeleryRunManager: the run manager of a console process when runs execute on workers.

start stores the run `queued` (toolbox locked, extravars sealed) and sends its id; cancel
ends a run no worker claimed yet, or marks it and tells every worker (the holder stops
it); wait and events read the database, woken by the run's pub/sub notices.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import redis
import redis.asyncio as aioredis
from starlette.concurrency import run_in_threadpool

import runner
from api.context import Context
from api.errors import Conflict, NotFound, Unavailable
from api.executors import bus
from api.executors.celery_app import TASK_NAME, make_celery
from api.metrics import RUNS, RUNS_QUEUED
from api.models import Run, User, new_id
from api.services import leases, run_store
from api.services.actions import Action
from api.services.run_store import IN_FLIGHT
from api.services.runs import (
    AfterRunHook,
    FleetStart,
    FleetTarget,
    Target,
    fleet_request,
    validated_request,
)

log = logging.getLogger("api.executors")

POLL_SECONDS = 1.0  # database re-read when no notice arrives


class CeleryRunManager:
    def __init__(self, context: Context) -> None:
        settings = context.settings
        if settings.broker_url is None:
            raise RuntimeError("DTMA_EXECUTOR=celery needs DTMA_BROKER_URL (redis://...)")
        self._context = context
        url = settings.broker_url.get_secret_value()
        self._celery = make_celery(url, settings.run_queue)
        self._redis = redis.Redis.from_url(url)
        self._aredis = aioredis.Redis.from_url(url)
        self._watchers: set[asyncio.Task[None]] = set()
        self._task: asyncio.Task[None] | None = None
        self.after_run: list[AfterRunHook] = []

    # -- lifecycle ---------------------------------------------------------------------------
    async def open(self) -> None:
        await asyncio.to_thread(leases.recover_own, self._context.sessions)
        self._task = asyncio.create_task(self._reap_loop(), name="run-reaper")

    async def _reap_loop(self) -> None:
        sessions, lease = self._context.sessions, self._context.settings.run_lease_seconds
        while True:
            await asyncio.sleep(max(lease / 3, 0.5))
            try:
                await asyncio.to_thread(leases.reap, sessions, lease)
                RUNS_QUEUED.set(await asyncio.to_thread(run_store.queued_count, sessions))
            except Exception:
                log.exception("run_reaper_failed")

    async def close(self) -> None:
        """Runs go on on their workers; only this process's background work stops."""
        tasks = [*self._watchers, *([self._task] if self._task else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._aredis.aclose()
        self._redis.close()

    # -- start -------------------------------------------------------------------------------
    async def start(self, target: Target, action: Action, user: User | None) -> str:
        run_id = new_id()
        validated_request(self._context, run_id, target, action)
        sealed = self._context.secrets.seal(
            json.dumps(action.extravars), Run.extravars_sealed, run_id
        )
        sessions = self._context.sessions
        await run_in_threadpool(
            run_store.open_run,
            sessions,
            run_id,
            toolbox_id=target.toolbox_id,
            host=target.host,
            action=action,
            user=user,
            owner=None,
            extravars_sealed=sealed,
        )
        try:
            await run_in_threadpool(self._send, run_id)
        except Exception as error:
            await run_in_threadpool(
                run_store.abandon, sessions, run_id, target.toolbox_id, "broker unreachable"
            )
            log.error("run_enqueue_failed", extra={"run_id": run_id, "error": str(error)})
            raise Unavailable(
                "the run could not be queued: the broker does not answer", code="broker_unavailable"
            ) from error
        watcher = asyncio.create_task(self._after(run_id, target.toolbox_id, action.name))
        self._watchers.add(watcher)
        watcher.add_done_callback(self._watchers.discard)
        return run_id

    async def start_fleet(
        self, fleet: FleetTarget, action: Action, user: User | None
    ) -> FleetStart:
        run_id = new_id()
        fleet_request(self._context, run_id, fleet, action.name, action.playbook, action.extravars)
        sealed = self._context.secrets.seal(
            json.dumps(action.extravars), Run.extravars_sealed, run_id
        )
        sessions = self._context.sessions
        skipped = await run_in_threadpool(
            functools.partial(
                run_store.open_fleet_run, sessions, run_id, members=fleet.hosts, action=action,
                user=user, owner=None, extravars_sealed=sealed, rollout_id=fleet.rollout_id,
            )
        )  # fmt: skip
        try:
            await run_in_threadpool(self._send, run_id)
        except Exception as error:
            await run_in_threadpool(run_store.abandon, sessions, run_id, "", "broker unreachable")
            raise Unavailable(
                "the run could not be queued: the broker does not answer", code="broker_unavailable"
            ) from error
        watcher = asyncio.create_task(self._after_fleet(run_id, fleet, skipped, action.name))
        self._watchers.add(watcher)
        watcher.add_done_callback(self._watchers.discard)
        return FleetStart(run_id, skipped)

    async def _after_fleet(
        self, run_id: str, fleet: FleetTarget, skipped: dict[str, str], action: str
    ) -> None:
        result = await self.wait(run_id)
        RUNS.labels(action, result.status).inc()
        for hook in self.after_run:
            for toolbox_id in (tid for tid in fleet.hosts if tid not in skipped):
                try:
                    await hook(toolbox_id, result)
                except Exception:
                    log.exception("after_run_hook_failed", extra={"run_id": run_id})

    def _send(self, run_id: str) -> None:
        self._celery.send_task(
            TASK_NAME,
            args=[run_id],
            queue=self._context.settings.run_queue,
            retry=True,
            retry_policy={"max_retries": 3, "interval_start": 0.2, "interval_step": 0.5},
        )

    async def _after(self, run_id: str, toolbox_id: str, action: str) -> None:
        """In the process that started the run: metrics and after-run hooks at its end."""
        result = await self.wait(run_id)
        RUNS.labels(action, result.status).inc()
        for hook in self.after_run:
            try:
                await hook(toolbox_id, result)
            except Exception:
                log.exception("after_run_hook_failed", extra={"run_id": run_id})

    # -- control -----------------------------------------------------------------------------
    def cancel(self, run_id: str) -> None:
        sessions = self._context.sessions
        status = run_store.status_of(sessions, run_id)
        if status not in IN_FLIGHT:
            raise Conflict(f"run '{run_id}' is not running", code="run_not_running")
        with sessions() as session:
            from api.models import Run

            run = session.get(Run, run_id)
            action, toolbox_id = (run.action, run.toolbox_id or "") if run else ("", "")
        result = run_store.canceled_before_start(run_id, action, toolbox_id)
        if run_store.cancel_queued(sessions, run_id, result):
            bus.publish(self._redis, bus.run_channel(run_id), "end")
            return
        if not run_store.request_cancel(sessions, run_id):
            raise Conflict(f"run '{run_id}' is not running", code="run_not_running")
        bus.publish(self._redis, bus.CANCEL_CHANNEL, run_id)

    # -- reading -----------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def _notices(self, run_id: str) -> AsyncIterator[Any]:
        """A subscription to the run's notices, or None when Redis does not answer (then
        readers poll)."""
        pubsub: Any = self._aredis.pubsub()
        try:
            await pubsub.subscribe(bus.run_channel(run_id))
        except redis.RedisError:
            pubsub = None
        try:
            yield pubsub
        finally:
            if pubsub is not None:
                with contextlib.suppress(redis.RedisError):
                    await pubsub.aclose()

    @staticmethod
    async def _next_notice(pubsub: Any) -> None:
        """Until a notice arrives or POLL_SECONDS pass."""
        if pubsub is None:
            await asyncio.sleep(POLL_SECONDS)
            return
        try:
            await pubsub.get_message(ignore_subscribe_messages=True, timeout=POLL_SECONDS)
        except redis.RedisError:
            await asyncio.sleep(POLL_SECONDS)

    async def wait(self, run_id: str) -> runner.ConsoleResult:
        sessions = self._context.sessions
        async with self._notices(run_id) as pubsub:
            while True:
                result = await run_in_threadpool(run_store.result_of, sessions, run_id)
                if result is not None:
                    return result
                if await run_in_threadpool(run_store.status_of, sessions, run_id) is None:
                    raise NotFound(f"run '{run_id}' not found", code="run_not_found")
                await self._next_notice(pubsub)

    async def events(self, run_id: str, after: int) -> AsyncIterator[dict[str, Any]]:
        sessions = self._context.sessions
        async with self._notices(run_id) as pubsub:
            while True:
                stored, status = await run_in_threadpool(
                    run_store.stored_events, sessions, run_id, after
                )
                for row in stored:
                    yield row
                    after = row["seq"]
                if status not in IN_FLIGHT:
                    return
                if not stored:
                    await self._next_notice(pubsub)
