"""Bounds on the load one user (or everyone) can put on a console, each refused with 429
and a stable code (TooManyRequests) rather than queued without end:

- log streams with follow=true open at once, per user and in all (FollowSlots, in this
  process: the streams are this process's connections);
- runs in flight per user (check_run_quota, counted in the database: every console process
  and worker sees the same runs);
- SSH-probe fallbacks of on-demand reads (ProbePool): their own threads, so that a flood of
  reads of unreachable toolboxes never takes the request threads that authenticate callers.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Awaitable, Callable, Hashable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from api.errors import TooManyRequests
from api.models import Run, User
from api.settings import Settings

T = TypeVar("T")
IN_FLIGHT = ("queued", "running")
# The pool never grows past this (the bound of DTMA_SSH_PROBE_CONCURRENCY); threads are only
# made as probes need them.
PROBE_THREADS_MAX = 256


class FollowSlots:
    """Log-follow streams open in this process, by user."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_user: Counter[str] = Counter()

    def take(self, user_id: str, *, per_user: int, overall: int) -> Callable[[], None]:
        """A slot for one more stream of `user_id`, or TooManyRequests; returns the release
        (safe to call more than once)."""
        with self._lock:
            if self._by_user[user_id] >= per_user:
                raise TooManyRequests(
                    f"you already follow {per_user} log stream(s) at once "
                    "(DTMA_MAX_FOLLOWS_PER_USER): close one first",
                    code="too_many_follows",
                    limit=per_user,
                )
            if self._by_user.total() >= overall:
                raise TooManyRequests(
                    f"the console already relays {overall} followed log streams "
                    "(DTMA_MAX_FOLLOWS): try again later",
                    code="follows_exhausted",
                    limit=overall,
                )
            self._by_user[user_id] += 1
        released = False

        def release() -> None:
            nonlocal released
            with self._lock:
                if not released:
                    released = True
                    self._by_user[user_id] -= 1
                    if self._by_user[user_id] <= 0:
                        del self._by_user[user_id]

        return release

    def open_for(self, user_id: str) -> int:
        with self._lock:
            return self._by_user[user_id]


def take_follow(slots: FollowSlots, settings: Settings, user: User) -> Callable[[], None]:
    """One more followed stream for `user` within DTMA_MAX_FOLLOWS_PER_USER and
    DTMA_MAX_FOLLOWS; returns its release."""
    return slots.take(user.id, per_user=settings.max_follows_per_user, overall=settings.max_follows)


def check_runs_of(sessions: sessionmaker[Session], user: User | None, limit: int) -> None:
    """check_run_quota in a session of its own (blocking: call it from a worker thread)."""
    with sessions() as session:
        check_run_quota(session, user, limit)


def check_run_quota(session: Session, user: User | None, limit: int) -> None:
    """TooManyRequests when `user` already has `limit` runs queued or running. Runs the
    console starts by itself (recovery: no user) are not counted. Checked just before the
    run is stored: two starts racing at the very same moment may both pass (one over)."""
    if user is None:
        return
    in_flight = session.scalar(
        select(func.count())
        .select_from(Run)
        .where(Run.user_id == user.id, Run.status.in_(IN_FLIGHT))
    )
    if (in_flight or 0) >= limit:
        raise TooManyRequests(
            f"you already have {in_flight} run(s) queued or running (DTMA_MAX_RUNS_PER_USER "
            f"is {limit}): wait for one to end",
            code="too_many_runs",
            limit=limit,
        )


class ProbePool:
    """Threads of their own for blocking SSH probes, at most `limit` busy at once.

    A probe counts as busy until its thread really returns (not when its caller stops
    waiting), so the bound holds even for probes abandoned on a timeout."""

    def __init__(self) -> None:
        self._executor = ThreadPoolExecutor(PROBE_THREADS_MAX, thread_name_prefix="dtma-probe")
        self._lock = threading.Lock()
        self._busy = 0

    @property
    def busy(self) -> int:
        return self._busy

    async def run(self, probe: Callable[..., T], *args: Any, limit: int) -> T:
        with self._lock:
            if self._busy >= limit:
                raise TooManyRequests(
                    f"{self._busy} SSH probes of unreachable agents are already running "
                    "(DTMA_SSH_PROBE_CONCURRENCY): try again shortly",
                    code="ssh_probes_busy",
                    limit=limit,
                )
            self._busy += 1
        try:
            future = self._executor.submit(probe, *args)
        except BaseException:
            self._done(None)
            raise
        future.add_done_callback(self._done)
        return await asyncio.wrap_future(future)

    def _done(self, _future: Future[Any] | None) -> None:
        with self._lock:
            self._busy -= 1

    def shutdown(self) -> None:
        """Idle threads end now; a probe still running ends with its own timeout."""
        self._executor.shutdown(wait=False, cancel_futures=True)


class SharedReads:
    """Concurrent reads of one key in this process share one call: the first reader starts
    it, the others wait for its answer (or its error). Nothing is kept once it ends."""

    def __init__(self) -> None:
        self._running: dict[Hashable, asyncio.Future[Any]] = {}

    async def run(self, key: Hashable, call: Callable[[], Awaitable[T]]) -> T:
        running = self._running.get(key)
        if running is None:
            running = asyncio.ensure_future(call())
            self._running[key] = running
            running.add_done_callback(lambda _: self._running.pop(key, None))
        # A reader that gives up (its client left) must not cancel the others' answer.
        answer: T = await asyncio.shield(running)
        return answer
