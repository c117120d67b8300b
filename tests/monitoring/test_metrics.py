"""Metrics history: samples written by real syncs and read back through the route; averaging,
retention and the points the route answers, with synthetic timestamps on both engines."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from api import migrate
from api.db import make_engine, make_session_factory, session_scope
from api.monitoring import history
from api.monitoring.models import MetricSample, ToolMetricSample
from api.settings import Settings
from sandbox.fleet import SandboxInfo
from tests.monitoring.conftest import Console, add_toolbox, docker_on

# A fixed "now" on a bucket boundary plus 7 s, so bucket arithmetic is easy to follow.
NOW = datetime(2026, 12, 1, 12, 0, 7, tzinfo=UTC)
MIB = 2.0**20
SETTINGS = Settings(database_url="sqlite://", monitor_interval=30, monitor_jitter=0.2)


@pytest.fixture
def sessions(engine_url: str) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(Settings(database_url=engine_url))
    migrate.upgrade(engine)
    yield make_session_factory(engine)
    engine.dispose()


def _samples(
    toolbox_id: str, start: datetime, end: datetime, every: int = 30
) -> tuple[list[MetricSample], list[ToolMetricSample]]:
    """A sample every `every` s: cpu = the minute of the hour, memory 50, disk 70, load 1;
    a tool 'web' at cpu = 2 x the minute, memory 1 MiB."""
    boxes, tools = [], []
    at = start
    while at < end:
        boxes.append(MetricSample(toolbox_id=toolbox_id, at=at, source="agent",
                                  cpu_percent=float(at.minute), memory_percent=50.0,
                                  disk_percent=70.0, load_1m=1.0))  # fmt: skip
        tools.append(ToolMetricSample(toolbox_id=toolbox_id, tool="web", at=at,
                                      cpu_percent=2.0 * at.minute, memory_bytes=MIB))  # fmt: skip
        at += timedelta(seconds=every)
    return boxes, tools


def _count(session: Session, model: Any, step: int) -> int:
    return int(
        session.scalar(select(func.count()).select_from(model).where(model.step_seconds == step))
        or 0
    )


def test_closed_buckets_are_averaged_and_old_rows_pruned_on_both_engines(
    sessions: sessionmaker[Session],
) -> None:
    toolbox_id = add_toolbox(sessions, "toolbox-h")
    start = NOW - timedelta(hours=72)
    boxes, tools = _samples(toolbox_id, start, NOW, every=60)
    # A quarter of an hour in which the toolbox did not answer: samples of nulls.
    silent = NOW - timedelta(hours=10)
    for sample in boxes:
        if silent <= sample.at < silent + timedelta(minutes=15):
            sample.source, sample.cpu_percent, sample.memory_percent = "none", None, None
            sample.disk_percent = sample.load_1m = None
    tools = [t for t in tools if not silent <= t.at < silent + timedelta(minutes=15)]
    old_average = MetricSample(toolbox_id=toolbox_id, at=NOW - timedelta(days=15),
                               step_seconds=300, source="average", cpu_percent=1.0)  # fmt: skip
    kept_average = MetricSample(toolbox_id=toolbox_id, at=NOW - timedelta(days=13),
                                step_seconds=300, source="average", cpu_percent=2.0)  # fmt: skip
    with session_scope(sessions) as session:
        session.add_all([*boxes, *tools, old_average, kept_average])
    with session_scope(sessions) as session:
        history.keep(session, SETTINGS, NOW)
    with session_scope(sessions) as session:
        # Raw: the last 48 h only (a sample a minute).
        assert _count(session, MetricSample, 0) == 48 * 60
        oldest_raw = session.scalar(
            select(func.min(MetricSample.at)).where(MetricSample.step_seconds == 0)
        )
        assert oldest_raw is not None and oldest_raw >= NOW - timedelta(hours=48)  # fmt: skip
        # Averages: every 5-min bucket of the 72 h that closed (ended 2 min before now),
        # made before the raw rows went, plus the 13-day-old one; the 15-day-old one is gone.
        closed = (72 * 3600 - 300) // 300  # the newest bucket (11:55) is still open
        assert _count(session, MetricSample, 300) == closed + 1
        assert _count(session, ToolMetricSample, 300) == closed - 3  # not the silent buckets
        rows = {
            r.at: r
            for r in session.scalars(select(MetricSample).where(MetricSample.step_seconds == 300))
        }
        assert NOW - timedelta(days=15) not in rows
        # 10:05..10:10 three days ago: minutes 5..9 → cpu mean 7.
        bucket = datetime(2026, 11, 28, 12, 5, tzinfo=UTC)
        assert rows[bucket].cpu_percent == pytest.approx(7.0)
        assert rows[bucket].memory_percent == pytest.approx(50.0)
        assert rows[bucket].source == "average"
        # A bucket in which the toolbox never answered averages to nulls, not zeros.
        gap = rows[
            silent.replace(second=0) - timedelta(minutes=silent.minute % 5) + timedelta(minutes=5)
        ]
        assert gap.cpu_percent is None and gap.load_1m is None  # fmt: skip
        tool_bucket = session.scalars(
            select(ToolMetricSample).where(
                ToolMetricSample.step_seconds == 300, ToolMetricSample.at == bucket
            )
        ).one()
        assert (tool_bucket.tool, tool_bucket.cpu_percent) == ("web", pytest.approx(14.0))
    # Running again averages nothing twice.
    with session_scope(sessions) as session:
        history.keep(session, SETTINGS, NOW + timedelta(seconds=20))
        assert _count(session, MetricSample, 300) == closed + 1


def test_points_of_each_range_with_gaps_as_nulls_on_both_engines(
    sessions: sessionmaker[Session],
) -> None:
    toolbox_id = add_toolbox(sessions, "toolbox-r")
    boxes, tools = _samples(toolbox_id, NOW - timedelta(hours=50), NOW)
    # 11:20-11:30 nothing looked (the console was down); 11:40:07 it did not answer.
    down = (NOW - timedelta(minutes=40), NOW - timedelta(minutes=30))
    boxes = [b for b in boxes if not down[0] <= b.at < down[1]]
    tools = [t for t in tools if not down[0] <= t.at < down[1]]
    unanswered = next(b for b in boxes if b.at == NOW - timedelta(minutes=20))
    unanswered.source, unanswered.cpu_percent = "none", None
    tools = [t for t in tools if t.at != unanswered.at]
    with session_scope(sessions) as session:
        session.add_all([*boxes, *tools])
        history.keep(session, SETTINGS, NOW)

    with session_scope(sessions) as session:
        hour = history.read(session, SETTINGS, toolbox_id, "1h", NOW)
        day = history.read(session, SETTINGS, toolbox_id, "24h", NOW)
        week = history.read(session, SETTINGS, toolbox_id, "7d", NOW)

    # 1 h: each sample a point, a null where it did not answer and one in the hole.
    cpu = hour.series["cpu_percent"]
    assert hour.step_seconds == 30
    assert len(cpu) == 120 - 20 + 1
    assert [p[0] for p in cpu] == sorted(p[0] for p in cpu)
    nulls = [datetime.fromtimestamp(t, UTC) for t, v in cpu if v is None]
    # The hole's null comes one longest interval (30 s + 20 % jitter) after the last look.
    hole = NOW - timedelta(minutes=40, seconds=30) + timedelta(seconds=36)
    assert nulls == [hole, NOW - timedelta(minutes=20)]
    assert set(hour.series) == {"cpu_percent", "memory_percent", "disk_percent", "load_1m"}
    web = hour.tools["web"]
    assert [t for t, _ in web["cpu_percent"]] == [t for t, _ in cpu]
    assert web["memory_bytes"][-1][1] == MIB
    at_unanswered = [
        v for t, v in web["cpu_percent"] if datetime.fromtimestamp(t, UTC) == unanswered.at
    ]
    assert at_unanswered == [None]  # fmt: skip
    # 24 h: 5-min buckets from the raw samples; the silent 10 minutes are two null buckets,
    # and so is the bucket now begun (its first look, due at 12:00:07, not taken yet).
    assert day.step_seconds == 300
    assert len(day.series["cpu_percent"]) == 288
    day_nulls = [datetime.fromtimestamp(t, UTC) for t, v in day.series["cpu_percent"] if v is None]
    assert day_nulls == [
        datetime(2026, 12, 1, 11, 20, tzinfo=UTC),
        datetime(2026, 12, 1, 11, 25, tzinfo=UTC),
        datetime(2026, 12, 1, 12, 0, tzinfo=UTC),
    ]
    first_t, first_v = day.series["cpu_percent"][0]
    assert datetime.fromtimestamp(first_t, UTC) == datetime(2026, 11, 30, 12, 5, tzinfo=UTC)
    assert first_v == pytest.approx(7.0)
    # 7 d: half-hour points from the stored averages (and the raw samples after them);
    # before the history began, nulls.
    assert week.step_seconds == 1800
    assert len(week.series["cpu_percent"]) == 336
    valued = [v for _, v in week.series["cpu_percent"] if v is not None]
    assert len(valued) == 100  # 50 h of history, the current half-hour included
    assert week.series["memory_percent"][-2][1] == pytest.approx(50.0)
    assert week.tools["web"]["memory_bytes"][-2][1] == pytest.approx(MIB)


# -- on the sandbox: real syncs, read back through the route -------------------------------
@pytest.fixture
def busy_tool(sandbox: SandboxInfo) -> Iterator[str]:
    """A tool instance on toolbox-1 that keeps a CPU busy, started behind the console."""
    droplet = sandbox.droplet("toolbox-1")
    docker_on(
        droplet.container, "docker", "run", "-d", "--name", "spin", "--label", "dtma.managed=true",
        "--label", "dtma.instance=spin", "--entrypoint", "/bin/sh", "dtma-tool-echo:1.0",
        "-c", "while :; do :; done",
    )  # fmt: skip
    try:
        yield "spin"
    finally:
        docker_on(droplet.container, "docker", "rm", "-f", "spin")


def _memory_from_docker_stats(container: str, tool: str) -> float:
    usage = docker_on(
        container, "docker", "stats", "--no-stream", "--format", "{{.MemUsage}}", tool
    )
    amount = usage.split("/")[0].strip()
    units = {"B": 1, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "kB": 1e3, "MB": 1e6, "GB": 1e9}
    for unit, factor in sorted(units.items(), key=lambda u: -len(u[0])):
        if amount.endswith(unit):
            return float(amount[: -len(unit)]) * factor
    raise AssertionError(f"unreadable docker stats memory {usage!r}")


@pytest.mark.sandbox
def test_real_syncs_write_samples_that_the_route_reads_back(
    console: Console,
    sandbox: SandboxInfo,
    toolboxes: dict[str, dict[str, Any]],
    echo_everywhere: str,
    busy_tool: str,
) -> None:
    toolbox_id = toolboxes["toolbox-1"]["id"]
    console.call(console.monitor.drain(60))  # no sync of an earlier test still under way
    # Two answered looks in a row (the first read of a container has no CPU baseline; on a
    # loaded machine an agent may miss its timeout once, which is a null sample).
    answered = 0
    for _ in range(8):
        report = console.call(console.monitor.sync_all([toolbox_id]))
        answered = answered + 1 if report.toolboxes[0].status == "up" else 0
        if answered == 2:
            break
    assert answered == 2, report
    with console.http() as http:
        metrics = http.get(f"/api/v1/toolboxes/{toolbox_id}/metrics", params={"range": "1h"})
        detail = http.get(f"/api/v1/toolboxes/{toolbox_id}").json()
        bad = http.get(f"/api/v1/toolboxes/{toolbox_id}/metrics", params={"range": "2d"})
        missing = http.get("/api/v1/toolboxes/nope/metrics")
    other = console.token("metrics-stranger")
    with console.http() as http:
        stranger = http.get(f"/api/v1/toolboxes/{toolbox_id}/metrics", headers=other)
    assert metrics.status_code == 200, metrics.text
    body = metrics.json()
    assert (body["toolbox_id"], body["range"]) == (toolbox_id, "1h")
    # The last point is the last look: the same figures the toolbox row kept from it.
    system = detail["last_state"]["system"]
    last_look = datetime.fromisoformat(system["observed_at"]).timestamp()
    assert last_look == pytest.approx(report.toolboxes[0].observed_at.timestamp(), abs=0.001)
    cpu = body["series"]["cpu_percent"]
    assert len(cpu) >= 3
    assert cpu[-1][0] == pytest.approx(last_look, abs=0.001)
    assert cpu[-1][1] == pytest.approx(system["data"]["cpu"]["percent"])
    last = {name: points[-1][1] for name, points in body["series"].items()}
    data = system["data"]
    assert last["memory_percent"] == pytest.approx(data["memory"]["percent"])
    assert last["disk_percent"] == pytest.approx(data["disk"]["percent"])
    assert last["load_1m"] == pytest.approx(data["load"]["one"])
    # Tools: the busy one uses a CPU, the idle echo hardly any; memory as docker stats says.
    spin, echo = body["tools"][busy_tool], body["tools"][echo_everywhere]
    # The spinner's share of a CPU shrinks with the machine's load (12 % seen at load 30).
    assert spin["cpu_percent"][-1][1] > 5, spin["cpu_percent"]
    assert spin["cpu_percent"][-1][1] > echo["cpu_percent"][-1][1]
    container = sandbox.droplet("toolbox-1").container
    expected = _memory_from_docker_stats(container, echo_everywhere)
    assert echo["memory_bytes"][-1][1] == pytest.approx(expected, rel=0.5, abs=2**20)
    # Validation and ownership, like every toolbox route.
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "range"
    assert missing.status_code == 404
    assert stranger.status_code == 404


@pytest.mark.sandbox
def test_a_paused_droplet_is_a_gap_in_its_history(
    console: Console, sandbox: SandboxInfo, toolboxes: dict[str, dict[str, Any]]
) -> None:
    """Checked in the browser too (tests/web/test_charts.py): here, the stored sample."""
    droplet = sandbox.droplet("toolbox-2")
    toolbox_id = toolboxes[droplet.name]["id"]
    subprocess.run(["docker", "pause", droplet.container], check=True, capture_output=True)
    try:
        paused = console.call(console.monitor.sync_all([toolbox_id])).toolboxes[0]
    finally:
        subprocess.run(["docker", "unpause", droplet.container], check=True, capture_output=True)
    assert paused.status == "unreachable"
    for _ in range(5):  # a droplet just unpaused may need a moment to answer again
        if console.call(console.monitor.sync_all([toolbox_id])).toolboxes[0].status == "up":
            break
    with console.http() as http:
        answer = http.get(f"/api/v1/toolboxes/{toolbox_id}/metrics", params={"range": "1h"})
    cpu = answer.json()["series"]["cpu_percent"]
    at_pause = [v for t, v in cpu if t == pytest.approx(paused.observed_at.timestamp(), abs=0.001)]
    assert at_pause == [None], cpu[-4:]
    assert cpu[-1][1] is not None, cpu[-4:]
