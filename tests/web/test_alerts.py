"""The Alerts page as a person uses it, on the session sandbox: a real alert (a memory
threshold any droplet exceeds, judged by the monitor's sync), reached from the toolbox
list's alert count, filtered, acknowledged with a comment (kept with who and when); a tool
that exited behind the console's back, repaired by the monitor, links to its recovery run;
and the toolbox page's maintenance button."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from playwright.sync_api import expect

from api.monitoring.service import Monitor
from sandbox.fleet import SandboxInfo
from tests.web.conftest import ECHO, Console, Tab, docker_state, in_droplet

pytestmark = pytest.mark.sandbox


def monitor_cycle(console: Console, toolbox_id: str) -> list[str]:
    """One monitoring cycle on the service's own loop, waiting for its repairs."""
    monitor: Monitor = console.app.state.context.monitor
    future = asyncio.run_coroutine_threadsafe(
        monitor.run_cycle([toolbox_id], wait=True), monitor.loop
    )
    return future.result(600).recovery_runs


def thresholds(console: Console, toolbox_id: str, **values: Any) -> None:
    with console.http() as http:
        patched = http.patch(f"/api/v1/toolboxes/{toolbox_id}/monitoring", json=values)
        assert patched.status_code == 200, patched.text


def test_alerts_page_filters_acknowledges_and_links_to_the_toolbox(
    tab: Tab, console: Console
) -> None:
    page = tab.page
    toolbox_id = console.toolboxes["toolbox-2"]
    thresholds(console, toolbox_id, memory_threshold=0.5, threshold_checks=1)
    try:
        with console.http() as http:
            assert http.post("/api/v1/toolboxes/sync").status_code == 200
            [alert] = http.get(
                "/api/v1/alerts",
                params={"toolbox_id": toolbox_id, "state": "open", "check": "memory"},
            ).json()
        # From the list: the toolbox's alert count leads to its alerts.
        page.goto(f"{console.url}/toolboxes")
        expect(page.locator("nav[aria-label=Main] a[href='/alerts']")).to_have_text("Alerts")
        row = page.locator("tr[data-toolbox='toolbox-2']")
        expect(row.locator("td[data-alerts]")).not_to_have_text("0")
        row.locator("[data-alerts-link]").click()
        page.wait_for_url(f"{console.url}/alerts?toolbox={toolbox_id}")
        expect(page.locator("nav[aria-label=Main] a[aria-current=page]")).to_have_text("Alerts")
        found = page.locator(f"tr[data-alert='{alert['id']}']")
        expect(found).to_have_attribute("data-severity", "warning")
        expect(found.locator("td[data-label=Alert]")).to_contain_text("memory")
        expect(page.locator("#alert-rows tr[data-alert]")).to_have_count(
            len(http_alerts(console, toolbox_id, "open"))
        )

        # Filters: critical only hides it; warning + the memory check shows only it.
        page.select_option("#f-severity", "critical")
        page.select_option("#f-check", "memory")
        page.click("[data-testid=filter]")
        expect(page.locator("#alert-rows [data-empty]")).to_be_visible()
        page.select_option("#f-severity", "warning")
        page.click("[data-testid=filter]")
        expect(page.locator("#alert-rows tr[data-alert]")).to_have_count(1)
        expect(found).to_be_visible()

        # Acknowledge with a comment: who, when and what are kept, through the API too.
        found.locator("input[name=comment]").fill("looking at the memory")
        found.locator("[data-action=acknowledge]").click()
        expect(found.locator("[data-ack]")).to_contain_text("web-admin")
        expect(found.locator("[data-ack-comment]")).to_have_text("looking at the memory")
        expect(found.locator("[data-action=acknowledge]")).to_have_count(0)
        with console.http() as http:
            acked = http.get(f"/api/v1/alerts/{alert['id']}").json()
            assert acked["acknowledged_by"] == "web-admin" and acked["acknowledged_at"]
            assert acked["ack_comment"] == "looking at the memory"
            twice = http.post(f"/api/v1/alerts/{alert['id']}/acknowledge", json={"comment": "x"})
            assert twice.status_code == 409, twice.text  # the first acknowledgement stays
            assert twice.json()["error"]["code"] == "alert_acknowledged"
        page.reload()
        expect(found.locator("[data-ack-comment]")).to_have_text("looking at the memory")

        found.locator("[data-toolbox-link]").click()
        page.wait_for_url(f"{console.url}/toolboxes/{toolbox_id}")
    finally:
        thresholds(console, toolbox_id, memory_threshold=None, threshold_checks=None)
        with console.http() as http:
            assert http.post("/api/v1/toolboxes/sync").status_code == 200
    page.goto(f"{console.url}/alerts?state=resolved&toolbox={toolbox_id}&check=memory")
    expect(page.locator(f"tr[data-alert='{alert['id']}']")).to_have_attribute(
        "data-state", "resolved"
    )


def http_alerts(console: Console, toolbox_id: str, state: str) -> list[dict[str, Any]]:
    with console.http() as http:
        found: list[dict[str, Any]] = http.get(
            "/api/v1/alerts", params={"toolbox_id": toolbox_id, "state": state}
        ).json()
    return found


def test_a_repaired_tool_links_from_its_alert_to_the_recovery_run(
    tab: Tab, console: Console, sandbox: SandboxInfo
) -> None:
    droplet = sandbox.droplet("toolbox-1")
    toolbox_id = console.toolboxes["toolbox-1"]
    stopped = in_droplet(droplet.container, "docker", "stop", ECHO)  # behind the console's back
    assert stopped.returncode == 0, stopped.stderr
    [run_id] = monitor_cycle(console, toolbox_id)
    state = docker_state(droplet.container, ECHO)
    assert state is not None and state["Status"] == "running"

    page = tab.page
    page.goto(f"{console.url}/alerts?state=all&toolbox={toolbox_id}&check=tool_exited:{ECHO}")
    row = page.locator("#alert-rows tr[data-alert]").first
    expect(row).to_have_attribute("data-state", "resolved")
    expect(row.locator("[data-recovery]")).to_contain_text("succeeded")
    row.locator("[data-run-link]").click()
    page.wait_for_url(f"{console.url}/runs/{run_id}")
    card = page.locator(f"#run-{run_id}")
    expect(card).to_have_attribute("data-status", "successful")
    expect(card).to_contain_text(ECHO)


def test_the_maintenance_button_starts_and_ends_a_window(tab: Tab, console: Console) -> None:
    page = tab.page
    toolbox_id = console.toolboxes["toolbox-3"]
    page.goto(console.page_url("toolbox-3"))
    card = page.locator("[data-maintenance-card]")
    card.locator("#mw-minutes").select_option("30")
    card.locator("#mw-reason").fill("disk swap")
    card.locator("[data-action=maintenance-start]").click()
    expect(page.locator("#maintenance-result .banner")).to_contain_text("In maintenance.")
    expect(card.locator("[data-maintenance]")).to_contain_text("until")
    expect(card).to_contain_text("disk swap")
    with console.http() as http:
        active = http.get(f"/api/v1/toolboxes/{toolbox_id}/maintenance").json()["active"]
    assert active["reason"] == "disk swap" and active["created_by"] == "web-admin"
    page.goto(f"{console.url}/toolboxes")
    expect(page.locator("tr[data-toolbox='toolbox-3'] [data-maintenance]")).to_contain_text(
        "maintenance until"
    )
    page.goto(console.page_url("toolbox-3"))
    page.locator("[data-action=maintenance-end]").click()
    expect(page.locator("#maintenance-result .banner")).to_contain_text("Maintenance ended.")
    expect(page.locator("[data-action=maintenance-start]")).to_be_visible()
    with console.http() as http:
        assert http.get(f"/api/v1/toolboxes/{toolbox_id}/maintenance").json()["active"] is None
