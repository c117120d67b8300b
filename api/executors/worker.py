"""`dtma-console worker`: a Celery worker (thread pool) executing runs sent by console
processes in celery mode.

For each run id it receives: claim the run (`queued` -> `running` under this process's
lease, once; a redelivered or canceled run is skipped), read the toolbox and the sealed
extravars from the shared database, unseal them with this worker's master key, run the
playbook through runner/ while a heartbeat renews the lease, store each event in order and
publish a notice, and store the result. A cancel from any console process reaches the
holder over Redis (and through the database mark at the next heartbeat).
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Coroutine
from datetime import timedelta
from typing import Any, TypeVar

import redis
from celery import Celery
from sqlalchemy.orm import Session

import runner
from api.context import Context
from api.executors import bus
from api.executors.celery_app import TASK_NAME, make_celery
from api.models import Run, Toolbox, utcnow
from api.services import leases, run_store
from api.services.runs import (
    FleetTarget,
    Target,
    confirm_fleet_result,
    confirm_result,
    fleet_request,
    on_event_of,
    run_request,
)

log = logging.getLogger("api.executors")

# How long the worker waits past the run's own timeout for runner/ to report.
RESULT_GRACE_SECONDS = 120

T = TypeVar("T")


class Worker:
    def __init__(self, context: Context) -> None:
        settings = context.settings
        if settings.broker_url is None:
            raise RuntimeError("the worker needs DTMA_BROKER_URL (redis://...)")
        self._context = context
        self.owner = leases.process_owner()
        self._redis = redis.Redis.from_url(settings.broker_url.get_secret_value())
        self._handles: dict[str, runner.RunHandle] = {}
        self._lock = threading.Lock()
        self._heartbeat = leases.Heartbeat(
            context.sessions, self.owner, settings.run_lease_seconds, self._stop_run
        )
        self._listener = threading.Thread(
            target=self._listen_for_cancels, name="cancel-listener", daemon=True
        )
        # The agent client (the console's own check after a dtma run) lives on this loop.
        self._loop = asyncio.new_event_loop()
        self._loop_thread = threading.Thread(
            target=self._loop.run_forever, name="agent-loop", daemon=True
        )

    def start(self) -> None:
        leases.recover_own(self._context.sessions)
        self._loop_thread.start()
        self._on_loop(self._context.start(runs=False), timeout=30)
        self._heartbeat.start()
        self._listener.start()

    def stop(self) -> None:
        with self._lock:
            handles = list(self._handles.values())
        for handle in handles:
            handle.cancel()
        self._heartbeat.stop()
        self._on_loop(self._context.stop(), timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)

    def _on_loop(self, work: Coroutine[Any, Any, T], timeout: float) -> T:
        return asyncio.run_coroutine_threadsafe(work, self._loop).result(timeout)

    # -- cancel ------------------------------------------------------------------------------
    def _listen_for_cancels(self) -> None:
        while True:
            try:
                pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(bus.CANCEL_CHANNEL)
                for message in pubsub.listen():
                    if message.get("type") == "message":
                        self._stop_run(message["data"].decode(), "cancel")
            except redis.RedisError as error:
                log.warning("cancel_listener_reconnecting", extra={"error": str(error)})
                threading.Event().wait(1.0)

    def _stop_run(self, run_id: str, why: str) -> None:
        with self._lock:
            handle = self._handles.get(run_id)
        if handle is not None and not handle.done:
            log.warning("run_stopped", extra={"run_id": run_id, "why": why})
            handle.cancel()

    # -- execute -----------------------------------------------------------------------------
    def execute(self, run_id: str) -> str:
        """Run one run; returns what happened ("skipped" when it was not ours to run)."""
        sessions = self._context.sessions
        if not run_store.claim(sessions, run_id, self.owner, unowned=True):
            log.info("run_not_claimed", extra={"run_id": run_id})
            return "skipped"
        self._heartbeat.add(run_id)
        try:
            result = self._run(run_id)
            if result.toolbox_id is not None:
                result = self._on_loop(
                    confirm_result(self._context, result.action, result.toolbox_id, result),
                    timeout=self._context.settings.run_timeout,
                )
            else:
                result = self._on_loop(
                    confirm_fleet_result(
                        self._context, result.action, self._members(run_id), result
                    ),
                    timeout=self._context.settings.run_timeout,
                )
        finally:
            self._heartbeat.discard(run_id)
            with self._lock:
                self._handles.pop(run_id, None)
        run_store.close_run(sessions, run_id, result)
        bus.publish(self._redis, bus.run_channel(run_id), "end")
        log.info("run_finished", extra={"run_id": run_id, "status": result.status})
        return result.status

    def _members(self, run_id: str) -> dict[str, str]:
        """A rollout's run: host -> toolbox id of every toolbox it locked."""
        with self._context.sessions() as session:
            run = session.get(Run, run_id)
            request = (run.request if run else None) or {}
            return dict(zip(request.get("hosts", []), request.get("toolbox_ids", []), strict=True))

    def _request(self, run_id: str) -> tuple[runner.RunRequest, bool]:
        """The runner's request, built from the database; and whether a cancel is pending."""
        with self._context.sessions() as session:
            run = session.get(Run, run_id)
            if (
                run is not None
                and run.toolbox_id is None
                and (run.request or {}).get("toolbox_ids")
            ):
                return self._fleet_request(session, run), run.cancel_requested_at is not None
            if run is None or run.toolbox_id is None:
                raise LookupError(f"run {run_id} or its toolbox is gone")
            toolbox = session.get(Toolbox, run.toolbox_id)
            if toolbox is None:
                raise LookupError(f"the toolbox of run {run_id} is gone")
            if run.extravars_sealed is None:
                raise LookupError(f"run {run_id} carries no extravars")
            extravars = json.loads(self._context.secrets.unseal_from(run, Run.extravars_sealed))
            credentials = self._context.credentials.for_toolbox(toolbox)
            request = run_request(
                self._context,
                run_id,
                toolbox.id,
                (run.request or {}).get("hosts", [toolbox.name])[0],
                credentials,
                run.action,
                run.playbook,
                extravars,
            )
            return request, run.cancel_requested_at is not None

    def _fleet_request(self, session: Session, run: Run) -> runner.RunRequest:
        """A rollout's run: every toolbox it locked, with its credentials."""
        if run.extravars_sealed is None:
            raise LookupError(f"run {run.id} carries no extravars")
        members = []
        for toolbox_id in run.request["toolbox_ids"]:
            toolbox = session.get(Toolbox, toolbox_id)
            if toolbox is None:
                raise LookupError(f"toolbox {toolbox_id} of run {run.id} is gone")
            credentials = self._context.credentials.for_toolbox(toolbox)
            members.append(Target(toolbox.id, toolbox.name, credentials))
        fleet = FleetTarget(tuple(members), str(run.request.get("rollout_id") or ""))
        extravars = json.loads(self._context.secrets.unseal_from(run, Run.extravars_sealed))
        return fleet_request(self._context, run.id, fleet, run.action, run.playbook, extravars)

    def _run(self, run_id: str) -> runner.ConsoleResult:
        started = utcnow()
        sessions = self._context.sessions
        try:
            request, cancel_pending = self._request(run_id)

            def publish(event: runner.RunEvent) -> None:
                bus.publish(self._redis, bus.run_channel(run_id), str(event.seq))

            on_event, gate = on_event_of(sessions, request, publish)
            handle = runner.start_run(request, on_event=on_event)
            if gate is not None:
                gate.handle = handle
        except Exception as error:  # nothing ran: say why, never retry
            log.exception("run_could_not_start", extra={"run_id": run_id})
            finished = utcnow()
            return runner.ConsoleResult(
                run_id=run_id,
                action=self._action_of(run_id),
                status="error",
                success=False,
                message="the worker could not start the run",
                error=f"{type(error).__name__}: {error}",
                started_at=started,
                finished_at=finished,
                duration_ms=int((finished - started).total_seconds() * 1000),
            )
        with self._lock:
            self._handles[run_id] = handle
        if cancel_pending:
            handle.cancel()
        timeout = self._context.settings.run_timeout + RESULT_GRACE_SECONDS
        try:
            return handle.result(timeout=timeout)
        except TimeoutError:
            handle.cancel()
            finished = utcnow()
            return runner.ConsoleResult(
                run_id=run_id,
                action=request.action or "",
                toolbox_id=request.toolbox_id,
                status="error",
                success=False,
                message="the run did not report an end",
                error=f"runner/ reported no result {timedelta(seconds=timeout)} after the "
                "start; the run was canceled and its outcome on the toolbox is unknown",
                started_at=started,
                finished_at=finished,
                duration_ms=int((finished - started).total_seconds() * 1000),
            )

    def _action_of(self, run_id: str) -> str:
        with self._context.sessions() as session:
            run = session.get(Run, run_id)
            return run.action if run else ""


def celery_app(worker: Worker, broker_url: str, queue: str) -> Celery:
    app = make_celery(broker_url, queue)

    @app.task(name=TASK_NAME)  # type: ignore[untyped-decorator]
    def execute_run(run_id: str) -> str:
        return worker.execute(str(run_id))

    return app


def serve_worker(context: Context, concurrency: int, queues: list[str]) -> None:
    """Block in the Celery worker until it is stopped (SIGTERM: warm shutdown)."""
    settings = context.settings
    assert settings.broker_url is not None
    worker = Worker(context)
    worker.start()
    app = celery_app(worker, settings.broker_url.get_secret_value(), queues[0])
    try:
        app.worker_main(
            [
                "worker",
                "--pool=threads",
                f"--concurrency={concurrency}",
                f"--queues={','.join(queues)}",
                f"--hostname=dtma-{worker.owner.replace(':', '-')}@%h",
                "--without-gossip",
                "--without-mingle",
                "--loglevel=INFO",
            ]
        )
    finally:
        worker.stop()
