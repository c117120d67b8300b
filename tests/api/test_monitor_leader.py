"""One monitor among several consoles on one PostgreSQL database: only the leader runs
the periodic cycle; when the leader's session dies, another console takes over within one
interval. On SQLite every console leads (one console per database)."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import uuid
from types import SimpleNamespace
from typing import Any

from sqlalchemy import create_engine

from api.monitoring.leader import Leadership
from api.monitoring.scheduler import Scheduler
from tests.api.postgres import create_database

INTERVAL = 0.2


class CountingMonitor:
    def __init__(self) -> None:
        self.calls = 0

    async def run_cycle(self) -> Any:
        self.calls += 1
        return SimpleNamespace(sync=SimpleNamespace(summary=lambda: "ok"), recovery_runs=[])


LEADER = """
import sys, time
from sqlalchemy import create_engine
from api.monitoring.leader import Leadership
leadership = Leadership(create_engine(sys.argv[1]))
print("leading" if leadership.holds() else "not leading", flush=True)
time.sleep(120)
"""


def test_one_leader_runs_the_cycle_and_another_takes_over_when_it_dies(
    postgres_server: str,
) -> None:
    url = create_database(postgres_server, f"leader_{uuid.uuid4().hex[:8]}")
    url = url.replace("postgresql://", "postgresql+psycopg://", 1)
    leader = subprocess.Popen(
        [sys.executable, "-c", LEADER, url], stdout=subprocess.PIPE, text=True
    )
    engine = create_engine(url)
    monitor = CountingMonitor()
    try:
        assert leader.stdout is not None and leader.stdout.readline().strip() == "leading"

        async def scenario() -> tuple[int, int]:
            scheduler = Scheduler(monitor, INTERVAL, 0, Leadership(engine))  # type: ignore[arg-type]
            scheduler.start()
            await asyncio.sleep(INTERVAL * 5)
            while_led = monitor.calls
            leader.send_signal(signal.SIGKILL)  # the leading console dies
            await asyncio.to_thread(leader.wait)
            await asyncio.sleep(INTERVAL * 3)
            taken_over = monitor.calls
            await scheduler.stop()
            return while_led, taken_over

        while_led, taken_over = asyncio.run(scenario())
    finally:
        if leader.poll() is None:
            leader.kill()
            leader.wait()
        engine.dispose()
    assert while_led == 0  # another console leads: this one waits
    assert taken_over >= 1  # and takes over within an interval or two of the death


def test_every_console_leads_on_sqlite(tmp_path: Any) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'one.db'}")
    assert Leadership(engine).holds() and Leadership(engine).holds()
