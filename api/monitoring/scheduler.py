"""The periodic monitoring cycle in the service: every `monitor_interval` seconds, give or
take `monitor_jitter` of it (so that several consoles do not read the fleet in lockstep).
A failing cycle is logged and the next one runs on time. With several consoles on one
PostgreSQL database only the leader (api/monitoring/leader.py) runs the cycle; the others
try to take the lead at each of their intervals."""

from __future__ import annotations

import asyncio
import logging
import random

from api.monitoring.leader import Leadership
from api.monitoring.service import Monitor

log = logging.getLogger("api.monitoring.scheduler")


def next_delay(interval: float, jitter: float) -> float:
    return max(0.0, interval * (1 + random.uniform(-jitter, jitter)))


class Scheduler:
    def __init__(
        self,
        monitor: Monitor,
        interval: float,
        jitter: float,
        leadership: Leadership | None = None,
    ) -> None:
        self._monitor = monitor
        self._leadership = leadership
        self._interval = interval
        self._jitter = jitter
        self._task: asyncio.Task[None] | None = None
        self.cycles = 0

    def start(self) -> None:
        if self._interval > 0 and self._task is None:
            self._task = asyncio.create_task(self._loop(), name="dtma-monitoring")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._leadership is not None:
            await asyncio.to_thread(self._leadership.release)

    async def _loop(self) -> None:
        while True:
            # The first cycle also waits: start-up stays fast and tests that create an app
            # are not raced by a sync they did not ask for.
            await asyncio.sleep(next_delay(self._interval, self._jitter))
            try:
                if self._leadership is not None and not await self._leadership.aholds():
                    continue  # another console leads
                report = await self._monitor.run_cycle()
                self.cycles += 1
                log.info(
                    "monitoring_cycle",
                    extra={"summary": report.sync.summary(), "recovery_runs": report.recovery_runs},
                )
            except Exception:
                log.exception("monitoring_cycle_failed")
