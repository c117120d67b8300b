"""Metrics history read time: one toolbox's 24 h among 500 toolboxes sampled every 30 s.

Fills a fresh, migrated console database with BENCH_METRICS_TOOLBOXES toolboxes (default
500), each with a raw sample every 30 s over BENCH_METRICS_HOURS (default 48, the raw
retention: what the table holds in steady state) and BENCH_METRICS_TOOLS tool instances
(default 2) sampled with it — 2.9 M toolbox rows and 5.8 M tool rows by default — plus the
5-min averages of the last 14 days. Then times `history.read` (what the route answers:
the query and the bucketing) for 24 h, 1 h and 7 d of random toolboxes, and the same 24 h
with the (toolbox_id, step_seconds, at) indexes dropped, side by side. Goal: 24 h under
50 ms.

SQLite by default; `--postgres` runs the same on a throw-away PostgreSQL cluster (Debian's
postgresql on a loopback port). Run from the repository root:

    .venv/bin/python bench/bench_metrics.py [--postgres]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, text

from api import migrate
from api.db import make_engine, make_session_factory, session_scope
from api.models import Toolbox, utcnow
from api.monitoring import history
from api.secret_box import SecretBox
from api.settings import Settings
from api.vault.crypto import Keyring, generate_master_key

TOOLBOXES = int(os.environ.get("BENCH_METRICS_TOOLBOXES", "500"))
HOURS = float(os.environ.get("BENCH_METRICS_HOURS", "48"))
TOOLS = int(os.environ.get("BENCH_METRICS_TOOLS", "2"))
INTERVAL = 30
QUERIES = 30
INDEXES = {
    "ix_metric_samples_toolbox_step_at": ("metric_samples", "toolbox_id, step_seconds, at"),
    "ix_tool_metric_samples_toolbox_step_at": (
        "tool_metric_samples",
        "toolbox_id, step_seconds, at",
    ),
}


@contextmanager
def database(postgres: bool) -> Iterator[str]:
    if not postgres:
        with tempfile.TemporaryDirectory(prefix="bench-metrics-") as directory:
            yield f"sqlite:///{directory}/console.db"
        return
    from tests.api.postgres import create_database, postgres_cluster

    with postgres_cluster() as server:
        yield create_database(server, "bench_metrics")


def fill(engine: Engine, now: datetime) -> list[str]:
    sessions = make_session_factory(engine)
    with session_scope(sessions) as session:
        boxes = [
            Toolbox(droplet_id=n + 1, name=f"toolbox-{n}", address=f"127.0.100.{n % 250 + 1}")
            for n in range(TOOLBOXES)
        ]
        secrets = SecretBox(Keyring.parse(generate_master_key(), origin="bench"))  # never read
        for box in boxes:
            secrets.seal_into(box, Toolbox.agent_token_ciphertext, "t" * 32)
        session.add_all(boxes)
        session.flush()
        ids = [b.id for b in boxes]
    samples = int(HOURS * 3600 // INTERVAL)
    started = time.perf_counter()
    sqlite = engine.dialect.name == "sqlite"

    def stamp(at: datetime) -> object:
        # What SQLAlchemy itself stores in SQLite; PostgreSQL takes the datetime.
        return at.strftime("%Y-%m-%d %H:%M:%S.%f") if sqlite else at

    def box_rows() -> Iterator[tuple[object, ...]]:
        # Time-major, as the sync writes them: every toolbox's sample of one look together.
        for n in range(samples):
            at = stamp(now - timedelta(seconds=INTERVAL * (samples - n)))
            for toolbox_id in ids:
                yield (toolbox_id, at, 0, "agent", 12.5, 40.0, 20.0, 0.3)
        for bucket in range(14 * 288):
            at = stamp(now - timedelta(seconds=300 * (14 * 288 - bucket)))
            for toolbox_id in ids:
                yield (toolbox_id, at, 300, "average", 12.5, 40.0, 20.0, 0.3)

    def tool_rows() -> Iterator[tuple[object, ...]]:
        for n in range(samples):
            at = stamp(now - timedelta(seconds=INTERVAL * (samples - n)))
            for toolbox_id in ids:
                for tool in range(TOOLS):
                    yield (toolbox_id, f"tool-{tool}", at, 0, 2.0, 50e6)

    box_columns = "toolbox_id, at, step_seconds, source, cpu_percent, memory_percent, " + (
        "disk_percent, load_1m"
    )
    tool_columns = "toolbox_id, tool, at, step_seconds, cpu_percent, memory_bytes"
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        for table, columns, rows in (
            ("metric_samples", box_columns, box_rows()),
            ("tool_metric_samples", tool_columns, tool_rows()),
        ):
            if sqlite:
                marks = ", ".join("?" * len(columns.split(",")))
                cursor.executemany(f"INSERT INTO {table} ({columns}) VALUES ({marks})", rows)
            else:
                with cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:  # type: ignore[attr-defined]
                    for row in rows:
                        copy.write_row(row)
        raw.commit()
    finally:
        raw.close()
    print(
        f"filled {TOOLBOXES} toolboxes x {samples} raw samples x (1 + {TOOLS} tools) "
        f"+ 14 d of 5-min averages in {time.perf_counter() - started:.0f} s"
    )
    with engine.connect() as connection:
        connection.execute(text("ANALYZE"))  # both engines: plan with real statistics
        connection.commit()
    return ids


def timed(
    engine: Engine, ids: list[str], range_: history.Range, now: datetime, count: int = QUERIES
) -> list[float]:
    settings = Settings(database_url="sqlite://", monitor_interval=INTERVAL)
    sessions = make_session_factory(engine)
    chosen = random.Random(7).sample(ids, min(count, len(ids)))
    times = []
    for toolbox_id in chosen:
        with sessions() as session:
            started = time.perf_counter()
            answer = history.read(session, settings, toolbox_id, range_, now)
            times.append((time.perf_counter() - started) * 1000)
        assert answer.series["cpu_percent"], range_
    return times


def report(label: str, times: list[float]) -> float:
    median = statistics.median(times)
    print(
        f"{label:<34} median {median:7.1f} ms   first {times[0]:7.1f} ms   "
        f"max {max(times):7.1f} ms   ({len(times)} toolboxes)"
    )
    return median


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", action="store_true", help="PostgreSQL instead of SQLite")
    args = parser.parse_args()
    now = utcnow().replace(tzinfo=UTC)
    with database(args.postgres) as url:
        engine = make_engine(Settings(database_url=url))
        migrate.upgrade(engine)
        print(f"engine: {engine.dialect.name}")
        ids = fill(engine, now)
        day = report("24h (indexed)", timed(engine, ids, "24h", now))
        report("1h (indexed)", timed(engine, ids, "1h", now))
        report("7d (indexed)", timed(engine, ids, "7d", now))
        with engine.begin() as connection:
            for name in INDEXES:
                connection.execute(text(f"DROP INDEX {name}"))
        unindexed = report("24h (without the index)", timed(engine, ids, "24h", now, 5))
        print(f"index speed-up on 24h: {unindexed / day:.0f}x; goal 24h < 50 ms: "
              f"{'met' if day < 50 else 'NOT met'}")  # fmt: skip
        engine.dispose()
    return 0 if day < 50 else 1


if __name__ == "__main__":
    sys.exit(main())
