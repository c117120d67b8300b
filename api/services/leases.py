"""Run leases: who executes a run (`<hostname>:<pid>`), its heartbeat, the reaper that
writes off runs whose owner stopped beating, and start-up recovery of this host's dead
processes' runs.

A run is never executed twice: a written-off run stays `interrupted` (never retried), and
an owner that finds its run written off (it was too slow to beat) stops it at once.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from datetime import timedelta

import psutil
from sqlalchemy import select, text, update

import runner
from api.models import Run, utcnow
from api.services import run_store
from api.services.run_store import IN_FLIGHT, Sessions

log = logging.getLogger("api.runs")

# Key of the PostgreSQL advisory lock that lets one console process reap at a time.
REAPER_LOCK_KEY = 0x64746D61_0001
RESTART_REASON = (
    "the console stopped while this run was in flight; what it did on the toolbox is "
    "unknown (look at the toolbox's state before acting again)"
)


def process_owner() -> str:
    """This process as a run owner: unique among live processes."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _owner_is_dead_here(owner: str) -> bool:
    """True when `owner` names a process of this host that no longer exists."""
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        return psutil.Process(int(pid)).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True
    except psutil.Error:
        return False


def _is_here(owner: str | None) -> bool:
    return owner is not None and owner.rpartition(":")[0] == socket.gethostname()


def _stop_local(run_ids: list[str]) -> dict[str, list[str]]:
    """Leftover ansible processes of written-off runs on this host (they carry the run id)
    are stopped and their run dirs discarded (no secret left behind); what could not be
    stopped, by run."""
    survivors = {}
    for run_id in run_ids:
        left = runner.stop_run_processes(run_id)
        if left:
            survivors[run_id] = left
        runner.discard_run_dir(run_id)
    return survivors


def recover_own(sessions: Sessions) -> list[str]:
    """At start-up: runs left in flight by a process of this host that is gone (the
    console this one replaces), and runs from before leases existed, become `interrupted`;
    their leftover ansible processes are stopped and their toolboxes unlocked. Runs of
    live processes (other consoles and workers) are left alone; the reaper watches those."""
    with sessions.begin() as session:
        runs = [
            run
            for run in session.scalars(select(Run).where(Run.status.in_(IN_FLIGHT)))
            if (run.owner is None and run.status == "running")
            or (run.owner is not None and _owner_is_dead_here(run.owner))
        ]
        survivors = _stop_local([run.id for run in runs])
        for run in runs:
            reason = RESTART_REASON
            if survivors.get(run.id):
                reason += f"; processes that could not be stopped: {survivors[run.id]}"
            run_store.interrupt(
                session, [run], reason, "run interrupted by a restart of the console"
            )
        ids = [run.id for run in runs]
    for run_id in ids:
        log.warning("run_interrupted", extra={"run_id": run_id, "why": "owner_restarted"})
    return ids


def reap(sessions: Sessions, lease_seconds: float) -> list[str]:
    """Write off in-flight runs whose owner has not beaten within the lease. One reaper at
    a time on PostgreSQL (advisory lock); kills nothing remote, only this host's leftovers."""
    with sessions.begin() as session:
        if session.get_bind().dialect.name == "postgresql":
            got = session.scalar(
                text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": REAPER_LOCK_KEY}
            )
            if not got:
                return []
        cutoff = utcnow() - timedelta(seconds=lease_seconds)
        runs = list(
            session.scalars(
                select(Run).where(
                    Run.status.in_(IN_FLIGHT),
                    Run.owner.is_not(None),
                    Run.heartbeat_at < cutoff,
                )
            )
        )
        written_off = []
        for run in runs:
            beat = run.heartbeat_at.isoformat() if run.heartbeat_at else "never"
            reason = (
                f"its executor {run.owner} stopped heartbeating (last beat {beat}, lease "
                f"{lease_seconds:g} s); what it did on the toolbox is unknown (look at the "
                "toolbox's state before acting again); the run is not retried"
            )
            written_off += run_store.interrupt(
                session, [run], reason, "run interrupted: its executor is gone"
            )
        local = [run.id for run in runs if _is_here(run.owner)]
    if local:
        _stop_local(local)
    for run_id in written_off:
        log.warning("run_interrupted", extra={"run_id": run_id, "why": "lease_expired"})
    return written_off


class Heartbeat:
    """A thread that renews the lease of every run this process owns, every third of the
    lease, and tells the owner about runs it must stop: written off by the reaper (lost)
    or asked to cancel from another console process."""

    def __init__(
        self,
        sessions: Sessions,
        owner: str,
        lease_seconds: float,
        on_stop: Callable[[str, str], None],
    ) -> None:
        self._sessions = sessions
        self.owner = owner
        self._interval = max(lease_seconds / 3, 0.5)
        self._on_stop = on_stop  # (run_id, "lost" | "cancel")
        self._runs: set[str] = set()
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="run-heartbeat", daemon=True)

    def start(self) -> Heartbeat:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def add(self, run_id: str) -> None:
        with self._lock:
            self._runs.add(run_id)

    def discard(self, run_id: str) -> None:
        with self._lock:
            self._runs.discard(run_id)

    def _loop(self) -> None:
        while not self._stopped.wait(self._interval):
            try:
                self.beat()
            except Exception:  # a database hiccup: try again next beat
                log.exception("run_heartbeat_failed")

    def beat(self) -> None:
        with self._lock:
            ids = list(self._runs)
        if not ids:
            return
        with self._sessions.begin() as session:
            session.execute(
                update(Run)
                .where(Run.id.in_(ids), Run.owner == self.owner, Run.status.in_(IN_FLIGHT))
                .values(heartbeat_at=utcnow())
            )
            rows = session.execute(
                select(Run.id, Run.status, Run.owner, Run.cancel_requested_at).where(
                    Run.id.in_(ids)
                )
            ).all()
        for run_id, status, owner, cancel_requested in rows:
            if status not in IN_FLIGHT or owner != self.owner:
                self._on_stop(run_id, "lost")
            elif cancel_requested is not None:
                self._on_stop(run_id, "cancel")
