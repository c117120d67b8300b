"""The periodic cycle: runs on its interval with jitter, survives a failing cycle, stops."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from api.monitoring.scheduler import Scheduler, next_delay


class CountingMonitor:
    def __init__(self) -> None:
        self.calls = 0

    async def run_cycle(self) -> Any:
        self.calls += 1
        if self.calls == 1:
            raise RuntimeError("the first cycle fails")
        return SimpleNamespace(sync=SimpleNamespace(summary=lambda: "ok"), recovery_runs=[])


def test_delays_stay_within_the_jitter() -> None:
    delays = [next_delay(30, 0.2) for _ in range(500)]
    assert all(24 <= d <= 36 for d in delays)
    assert max(delays) - min(delays) > 6  # it does vary
    assert next_delay(30, 0) == 30


def test_cycles_run_on_time_after_a_failure_and_stop_on_request() -> None:
    async def scenario() -> tuple[int, int, int]:
        monitor = CountingMonitor()
        scheduler = Scheduler(monitor, interval=0.05, jitter=0.1)  # type: ignore[arg-type]
        scheduler.start()
        await asyncio.sleep(0.4)
        await scheduler.stop()
        stopped_at = monitor.calls
        await asyncio.sleep(0.2)
        return monitor.calls, stopped_at, scheduler.cycles

    calls, stopped_at, cycles = asyncio.run(scenario())
    assert calls >= 3  # the failing first cycle did not end the loop
    assert cycles == calls - 1  # the failed one is not counted as done
    assert calls == stopped_at  # nothing after stop()


def test_an_interval_of_zero_starts_no_loop() -> None:
    async def scenario() -> int:
        monitor = CountingMonitor()
        scheduler = Scheduler(monitor, interval=0, jitter=0.2)  # type: ignore[arg-type]
        scheduler.start()
        await asyncio.sleep(0.1)
        await scheduler.stop()
        return monitor.calls

    assert asyncio.run(scenario()) == 0
