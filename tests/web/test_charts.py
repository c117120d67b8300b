"""History charts in Chromium: the System tab's CPU, memory, disk and load, with a gap drawn
where a paused droplet did not answer, hover showing time and value, and the Containers
tab's per-tool CPU/memory chart. Screenshots land in test-output/web/."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Locator, expect

from api.monitoring import Monitor
from api.monitoring.sync import ToolboxSync
from sandbox.fleet import SandboxInfo
from tests.web.conftest import ECHO, Console, Tab

pytestmark = pytest.mark.sandbox


def sync(console: Console, droplet: str) -> ToolboxSync:
    """One status sync of the toolbox, on the service's own loop."""
    monitor: Monitor = console.app.state.context.monitor
    future = asyncio.run_coroutine_threadsafe(
        monitor.sync_all([console.toolboxes[droplet]]), monitor.loop
    )
    return future.result(120).toolboxes[0]


def answered_looks(console: Console, droplet: str, count: int) -> None:
    """`count` syncs in a row that the agent answered (on a loaded machine one may miss
    its timeout: that look is a null sample, retried here)."""
    in_a_row = 0
    for _ in range(count + 5):
        in_a_row = in_a_row + 1 if sync(console, droplet).status == "up" else 0
        if in_a_row == count:
            return
    raise AssertionError(f"{droplet}: not {count} answered looks in a row")


# Pixels of the series' colour in canvas columns at the times `probes`, after zooming the x
# scale to [lo, hi] so that the gap is wide on screen whatever the history around it.
STROKE_PIXELS = """async ([figure, lo, hi, probes]) => {
  const u = figure._plot;
  u.setScale("x", { min: lo, max: hi });
  await new Promise((done) => requestAnimationFrame(() => done()));
  const stroke = u.series[1]._stroke || u.series[1].stroke;
  const probe = document.createElement("canvas").getContext("2d");
  probe.fillStyle = typeof stroke === "function" ? stroke(u, 1) : stroke;
  probe.fillRect(0, 0, 1, 1);
  const [r, g, b] = probe.getImageData(0, 0, 1, 1).data;
  const top = Math.round(u.bbox.top), height = Math.round(u.bbox.height);
  return probes.map((ts) => {
    const x = Math.round(u.valToPos(ts, "x", true));
    const column = u.ctx.getImageData(x, top, 1, height).data;
    let count = 0;
    for (let i = 0; i < column.length; i += 4) {
      const [cr, cg, cb, alpha] = column.slice(i, i + 4);
      const near = Math.abs(cr - r) + Math.abs(cg - g) + Math.abs(cb - b);
      if (alpha > 100 && near < 90) count += 1;
    }
    return count;
  });
}"""

# Around the last null with values on both sides: [time before, null time, time after].
GAP = """(figure) => {
  const [xs, ys] = figure._plot.data;
  for (let i = ys.length - 2; i > 0; i -= 1) {
    if (ys[i] !== null) continue;
    let a = i - 1, b = i + 1;
    while (a >= 0 && ys[a] === null) a -= 1;
    while (b < ys.length && ys[b] === null) b += 1;
    if (a > 0 && ys[a - 1] !== null && b < ys.length) return [xs[a - 1], xs[a], xs[i], xs[b]];
  }
  return null;
}"""


def chart(page: Any, key: str) -> Locator:
    return page.locator(f"[data-chart={key}]")


def test_system_history_draws_every_metric_with_a_gap_where_the_droplet_was_paused(
    tab: Tab, console: Console, sandbox: SandboxInfo, screenshots: Path
) -> None:
    droplet = sandbox.droplet("toolbox-2")
    answered_looks(console, droplet.name, 2)
    subprocess.run(["docker", "pause", droplet.container], check=True, capture_output=True)
    try:
        paused = sync(console, droplet.name)
    finally:
        subprocess.run(["docker", "unpause", droplet.container], check=True, capture_output=True)
    assert paused.status == "unreachable"
    answered_looks(console, droplet.name, 2)
    with console.http() as http:
        answer = http.get(
            f"/api/v1/toolboxes/{console.toolboxes[droplet.name]}/metrics", params={"range": "1h"}
        ).json()
    cpu_points = answer["series"]["cpu_percent"]
    at_pause = [v for t, v in cpu_points if abs(t - paused.observed_at.timestamp()) < 0.001]
    assert at_pause == [None], cpu_points[-4:]
    assert all(v is not None for _, v in cpu_points[-2:]), cpu_points[-4:]

    page = tab.page
    page.goto(console.page_url(droplet.name, "system"))
    page.click("[data-refresh-toggle]")  # no refresh redrawing the chart while it is read
    expect(page.locator("[data-refresh-status]")).to_have_text("Auto-refresh paused")
    history = page.locator("[data-metrics][data-kind=system]")
    history.locator("[data-range='1h']").click()
    expect(history).to_have_attribute("data-state", "ready")
    expect(history).to_have_attribute("data-range", "1h")
    expect(history.locator("[data-range='1h']")).to_have_attribute("aria-pressed", "true")
    for key in ("cpu_percent", "memory_percent", "disk_percent", "load_1m"):
        figure = chart(page, key)
        expect(figure.locator("canvas")).to_have_count(1)
        assert int(figure.get_attribute("data-points") or 0) >= 5, key
        assert int(figure.get_attribute("data-gaps") or 0) >= 1, key
    cpu = chart(page, "cpu_percent")
    handle = cpu.element_handle()
    around = page.evaluate(GAP, handle)
    assert around, "no null between two values in the CPU series"
    before_previous, before, _, after = around
    # The line is drawn between two answered looks, and not across the unanswered one.
    width = after - before
    lead = min(before - before_previous, width)
    drawn, missing = page.evaluate(
        STROKE_PIXELS,
        [handle, before - lead, after + width / 5, [before - lead / 2, (before + after) / 2]],
    )
    assert drawn > 0 and missing == 0, (drawn, missing)
    page.evaluate("(f) => f._plot.setData(f._plot.data)", handle)  # back to the full range
    # Hover: the legend shows the time and the value under the cursor.
    box = cpu.locator(".u-over").bounding_box()
    assert box is not None
    x = page.evaluate("([f, ts]) => f._plot.valToPos(ts, 'x')", [handle, after])
    page.mouse.move(box["x"] + x, box["y"] + box["height"] / 2)
    values = cpu.locator(".u-legend .u-value")
    expect(values.nth(1)).to_contain_text("%")
    expect(values.nth(0)).not_to_have_text("—")
    page.screenshot(path=screenshots / "laptop-system-history.png", full_page=True)


def test_containers_tab_draws_cpu_and_memory_per_tool(
    tab: Tab, console: Console, screenshots: Path
) -> None:
    answered_looks(console, "toolbox-1", 2)  # the first read of a container has no CPU baseline
    page = tab.page
    page.goto(console.page_url("toolbox-1", "containers"))
    history = page.locator("[data-metrics][data-kind=tools]")
    history.locator("[data-range='1h']").click()
    expect(history).to_have_attribute("data-state", "ready")
    figure = history.locator(f"figure[data-tool='{ECHO}']")
    expect(figure.locator("canvas")).to_have_count(1)
    assert int(figure.get_attribute("data-points") or 0) >= 3
    labels = figure.locator(".u-legend .u-label")
    expect(labels).to_have_text(["Time", "CPU", "Memory"])
    figure.scroll_into_view_if_needed()
    page.screenshot(path=screenshots / "laptop-containers-history.png", full_page=True)
