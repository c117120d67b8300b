"""Metrics history: what the sync's samples become over time, and how they are read back.

Every sync writes one raw sample per toolbox (nulls when it did not answer) and one per
running tool instance (store.py). Here:

- `keep` (each monitor cycle): averages the raw samples of every closed
  `metrics_average_seconds` bucket into one row per toolbox (and tool), then deletes raw
  samples older than `metrics_retention_hours` and averages older than
  `metrics_average_retention_days`. Averages are made as buckets close, so the raw rows
  can go without a backlog to catch up on.
- `read` answers `GET /api/v1/toolboxes/{id}/metrics?range=`: the points of one toolbox
  and its tools over 1 h (each raw sample), 6 h and 24 h (raw samples averaged into
  buckets) or 7 d (the stored averages, with the raw samples not yet averaged). A null
  value is a gap: the toolbox did not answer, or nothing looked at it then.

Reads go through the (toolbox_id, step_seconds, at) index: one range scan per table.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import Float, Integer, cast, delete, func, insert, select
from sqlalchemy.orm import Session

from api.monitoring.models import MetricSample, ToolMetricSample
from api.monitoring.schemas import MetricsOut
from api.settings import Settings

Range = Literal["1h", "6h", "24h", "7d"]
TOOLBOX_FIELDS = ("cpu_percent", "memory_percent", "disk_percent", "load_1m")
TOOL_FIELDS = ("cpu_percent", "memory_bytes")


@dataclass(frozen=True)
class RangeSpec:
    seconds: int
    # Bucket length; None: every raw sample is its own point.
    step: int | None
    from_averages: bool = False


RANGES: dict[Range, RangeSpec] = {
    "1h": RangeSpec(3600, None),
    "6h": RangeSpec(6 * 3600, 60),
    "24h": RangeSpec(24 * 3600, 300),
    "7d": RangeSpec(7 * 86_400, 1800, from_averages=True),
}
# A bucket closes for averaging this long after its end: a sync that began before the end
# may still be writing samples stamped inside it.
AVERAGE_GRACE_SECONDS = 120

Point = tuple[float, float | None]
_Row = tuple[float, tuple[float | None, ...]]  # (unix time, values)


def _epoch(at: datetime) -> float:
    return at.timestamp()


def _unix(session: Session, column: Any) -> Any:
    """The column as Unix seconds computed by the database: turning thousands of stored
    times into datetimes in Python would cost more than the query itself. Rounded to the
    millisecond, so that a time on a bucket's boundary stays on it."""
    if session.get_bind().dialect.name == "sqlite":
        return func.round((func.julianday(column) - 2440587.5) * 86400.0, 3)
    return cast(func.round(func.extract("epoch", column), 3), Float)


def _floor(seconds: float, step: int) -> int:
    return int(seconds // step * step)


# -- reading ---------------------------------------------------------------------------------
def read(
    session: Session, settings: Settings, toolbox_id: str, range_: Range, now: datetime
) -> MetricsOut:
    spec = RANGES[range_]
    interval = settings.monitor_interval
    start = now - timedelta(seconds=spec.seconds)
    times: list[float]
    if spec.step is None:
        boxes, tools = _load(session, settings, toolbox_id, start, averages=False)
        step = round(interval) if interval > 0 else 0
        longest = interval * (1 + settings.monitor_jitter)
        times, series, tool_series = _raw_points(boxes, tools, longest)
    else:
        # Buckets hold at least two looks, so the jitter of the loop never empties one.
        step = max(spec.step, math.ceil(2 * interval * (1 + settings.monitor_jitter) / 60) * 60)
        if spec.from_averages:
            averaged = settings.metrics_average_seconds
            step = math.ceil(step / averaged) * averaged
        first = _floor(_epoch(start), step) + step
        times = [float(t) for t in range(first, _floor(_epoch(now), step) + step, step)]
        if spec.from_averages:
            boxes, tools = _load(session, settings, toolbox_id, start, averages=True)
        else:
            boxes, tools = _grouped(session, toolbox_id, datetime.fromtimestamp(first, UTC), step)
        series = _buckets(boxes, times, step, len(TOOLBOX_FIELDS))
        tool_series = {
            name: _buckets(rows, times, step, len(TOOL_FIELDS)) for name, rows in tools.items()
        }
    return MetricsOut(
        toolbox_id=toolbox_id,
        range=range_,
        step_seconds=step,
        series={name: _points(times, series[i]) for i, name in enumerate(TOOLBOX_FIELDS)},
        tools={
            tool: {name: _points(times, values[i]) for i, name in enumerate(TOOL_FIELDS)}
            for tool, values in sorted(tool_series.items())
        },
    )


def _points(times: Sequence[float], values: Sequence[float | None]) -> list[list[float | None]]:
    return [[at, value] for at, value in zip(times, values, strict=True)]


def _load(
    session: Session, settings: Settings, toolbox_id: str, start: datetime, averages: bool
) -> tuple[list[_Row], dict[str, list[_Row]]]:
    """The toolbox's rows and each tool's since `start`, oldest first: raw samples, or the
    stored averages followed by the raw samples not averaged yet."""
    raw_since = start
    boxes: list[_Row] = []
    tools: dict[str, list[_Row]] = defaultdict(list)
    if averages:
        step = settings.metrics_average_seconds
        query = _rows(session, MetricSample, TOOLBOX_FIELDS, toolbox_id, start, step)
        boxes += [(row[0], tuple(row[1:])) for row in session.execute(query)]
        query = _rows(session, ToolMetricSample, TOOL_FIELDS, toolbox_id, start, step)
        for row in session.execute(query):
            tools[row[1]].append((row[0], tuple(row[2:])))
        if boxes:
            raw_since = max(start, datetime.fromtimestamp(boxes[-1][0] + step, UTC))
    query = _rows(session, MetricSample, TOOLBOX_FIELDS, toolbox_id, raw_since, 0)
    boxes += [(row[0], tuple(row[1:])) for row in session.execute(query)]
    query = _rows(session, ToolMetricSample, TOOL_FIELDS, toolbox_id, raw_since, 0)
    for row in session.execute(query):
        tools[row[1]].append((row[0], tuple(row[2:])))
    return boxes, dict(tools)


def _grouped(
    session: Session, toolbox_id: str, since: datetime, step: int
) -> tuple[list[_Row], dict[str, list[_Row]]]:
    """The raw samples since `since` averaged by the database into `step` buckets: one row
    per bucket (at its start) for the toolbox, and per bucket and tool."""
    if session.get_bind().dialect.name == "sqlite":
        bucket: Any = cast(_unix(session, MetricSample.at) / step, Integer)
        tool_bucket: Any = cast(_unix(session, ToolMetricSample.at) / step, Integer)
    else:
        bucket = func.floor(_unix(session, MetricSample.at) / step)
        tool_bucket = func.floor(_unix(session, ToolMetricSample.at) / step)
    box_query = (
        select(bucket, *(func.avg(getattr(MetricSample, f)) for f in TOOLBOX_FIELDS))
        .where(
            MetricSample.toolbox_id == toolbox_id,
            MetricSample.step_seconds == 0,
            MetricSample.at >= since,
        )
        .group_by(bucket)
    )
    boxes = [(float(row[0]) * step, tuple(row[1:])) for row in session.execute(box_query)]
    tool_query = (
        select(
            ToolMetricSample.tool,
            tool_bucket,
            *(func.avg(getattr(ToolMetricSample, f)) for f in TOOL_FIELDS),
        )
        .where(
            ToolMetricSample.toolbox_id == toolbox_id,
            ToolMetricSample.step_seconds == 0,
            ToolMetricSample.at >= since,
        )
        .group_by(ToolMetricSample.tool, tool_bucket)
    )
    tools: dict[str, list[_Row]] = defaultdict(list)
    for row in session.execute(tool_query):
        tools[row[0]].append((float(row[1]) * step, tuple(row[2:])))
    return boxes, dict(tools)


def _rows(
    session: Session,
    model: type[MetricSample] | type[ToolMetricSample],
    fields: Sequence[str],
    toolbox_id: str,
    since: datetime,
    step: int,
) -> Any:
    keys = [_unix(session, model.at)]
    if model is ToolMetricSample:
        keys.append(ToolMetricSample.tool)
    return (
        select(*keys, *(getattr(model, f) for f in fields))
        .where(model.toolbox_id == toolbox_id, model.step_seconds == step, model.at >= since)
        .order_by(model.at)
    )


def _raw_points(
    boxes: list[_Row], tools: dict[str, list[_Row]], expected_gap: float
) -> tuple[list[float], list[list[float | None]], dict[str, list[list[float | None]]]]:
    """One point per toolbox sample; tools take their value at the same look. Where looks
    are missing (the monitor was not running), a null point breaks the line."""
    hole = 3 * expected_gap if expected_gap > 0 else math.inf
    times: list[float] = []
    looks: list[float | None] = []  # the sample's own time; None for an inserted hole
    values: list[tuple[float | None, ...]] = []
    for at, row in boxes:
        if times and at - times[-1] > hole:
            times.append(round(times[-1] + expected_gap, 3))
            looks.append(None)
            values.append((None,) * len(TOOLBOX_FIELDS))
        times.append(round(at, 3))
        looks.append(at)
        values.append(row)
    series = [[v[i] for v in values] for i in range(len(TOOLBOX_FIELDS))]
    tool_series: dict[str, list[list[float | None]]] = {}
    for name, rows in tools.items():
        seen = dict(rows)
        found = [None if look is None else seen.get(look) for look in looks]
        tool_series[name] = [
            [None if f is None else f[i] for f in found] for i in range(len(TOOL_FIELDS))
        ]
    return times, series, tool_series


def _buckets(
    rows: Iterable[_Row], times: list[float], step: int, width: int
) -> list[list[float | None]]:
    """The mean of the non-null values in each bucket [t, t + step); null when none."""
    sums = [[0.0] * len(times) for _ in range(width)]
    counts = [[0] * len(times) for _ in range(width)]
    if times:
        first = times[0]
        for at, values in rows:
            index = int((at - first) // step)
            if 0 <= index < len(times):
                for i, value in enumerate(values):
                    if value is not None:
                        sums[i][index] += value
                        counts[i][index] += 1
    return [
        [round(s / c, 3) if c else None for s, c in zip(sums[i], counts[i], strict=True)]
        for i in range(width)
    ]


# -- keeping ---------------------------------------------------------------------------------
def keep(session: Session, settings: Settings, now: datetime) -> None:
    """Average the buckets that closed, then drop what is past its retention."""
    step = settings.metrics_average_seconds
    close = _floor(_epoch(now) - AVERAGE_GRACE_SECONDS, step)
    _average(session, MetricSample, TOOLBOX_FIELDS, step, close)
    _average(session, ToolMetricSample, TOOL_FIELDS, step, close)
    raw_cutoff = now - timedelta(hours=settings.metrics_retention_hours)
    average_cutoff = now - timedelta(days=settings.metrics_average_retention_days)
    for model in (MetricSample, ToolMetricSample):
        session.execute(delete(model).where(model.step_seconds == 0, model.at < raw_cutoff))
        session.execute(delete(model).where(model.step_seconds != 0, model.at < average_cutoff))


def _average(
    session: Session,
    model: type[MetricSample] | type[ToolMetricSample],
    fields: Sequence[str],
    step: int,
    close: int,
) -> None:
    """Average every bucket from the one after the last averaged up to `close`."""
    last = session.scalar(select(func.max(model.at)).where(model.step_seconds == step))
    if last is not None:
        begin = _floor(_epoch(last), step) + step
    else:
        oldest = session.scalar(select(func.min(model.at)).where(model.step_seconds == 0))
        if oldest is None:
            return
        begin = _floor(_epoch(oldest), step)
    if begin >= close:
        return
    is_tool = model is ToolMetricSample
    keys: list[Any] = [model.toolbox_id] + ([ToolMetricSample.tool] if is_tool else [])
    query = select(*keys, _unix(session, model.at), *(getattr(model, f) for f in fields)).where(
        model.step_seconds == 0,
        model.at >= datetime.fromtimestamp(begin, UTC),
        model.at < datetime.fromtimestamp(close, UTC),
    )
    sums: dict[tuple[Any, ...], list[float]] = {}
    counts: dict[tuple[Any, ...], list[int]] = {}
    width = len(fields)
    key_count = len(keys)
    for row in session.execute(query):
        key = (*row[:key_count], _floor(row[key_count], step))
        total = sums.setdefault(key, [0.0] * width)
        seen = counts.setdefault(key, [0] * width)
        values: tuple[float | None, ...] = tuple(row[key_count + 1 :])
        for i, value in enumerate(values):
            if value is not None:
                total[i] += value
                seen[i] += 1
    if not sums:
        return
    averaged = []
    for key, total in sums.items():
        seen = counts[key]
        row_values: dict[str, Any] = {
            "toolbox_id": key[0],
            "at": datetime.fromtimestamp(key[-1], UTC),
            "step_seconds": step,
            **{f: (total[i] / seen[i] if seen[i] else None) for i, f in enumerate(fields)},
        }
        if is_tool:
            row_values["tool"] = key[1]
        else:
            row_values["source"] = "average"
        averaged.append(row_values)
    session.execute(insert(model), averaged)
