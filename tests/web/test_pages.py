"""The toolbox list and the four tabs as a person sees them: content, auto-refresh, and
screenshots of every page on a laptop and on a phone."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Request, expect

from sandbox.fleet import SandboxInfo
from tests.web.conftest import ECHO, ECHO_PORT, LAPTOP, PHONE, Console, Tab, in_droplet, sign_in

pytestmark = pytest.mark.sandbox

# A line of the echo tool's log: its start, or a request it served (busybox httpd -vv).
ECHO_LOG_LINE = re.compile(r"echo tool: serving /www|response:\d{3}")


def test_the_list_shows_the_three_sandbox_toolboxes(
    tab: Tab, console: Console, sandbox: SandboxInfo
) -> None:
    page = tab.page
    rows = page.locator("#toolbox-rows tr[data-toolbox]")
    expect(rows).to_have_count(3)
    for droplet in sandbox.droplets:
        row = page.locator(f"tr[data-toolbox='{droplet.name}']")
        expect(row.locator("td[data-label=Address]")).to_have_text(droplet.address)
        expect(row.locator("td[data-label=Region]")).to_have_text("fra1")
        expect(row.locator("[data-status]")).to_have_text("Agent up")
        expect(row.locator("td[data-label=Version]")).not_to_have_text("—")
        expect(row.locator("td[data-label='Last seen']")).to_contain_text("ago")
        with console.http() as http:
            alerts = http.get(
                "/api/v1/alerts",
                params={"state": "open", "toolbox_id": console.toolboxes[droplet.name]},
            ).json()
        expect(row.locator("td[data-alerts]")).to_have_text(str(len(alerts)))
        states = in_droplet(
            droplet.container, "docker", "ps", "-a", "--filter", "label=dtma.managed=true",
            "--format", "{{.State}}",
        ).stdout.split()  # fmt: skip
        running = sum(state == "running" for state in states)
        expect(row.locator("[data-tools]")).to_have_text(f"{running} / {len(states)}")


def test_the_sync_button_imports_and_reads_every_toolbox(tab: Tab) -> None:
    page = tab.page
    page.click("[data-testid=sync]")
    banner = page.locator("#sync-result .banner")
    expect(banner).to_have_class("banner banner-ok")
    expect(banner).to_contain_text("0 new, 3 updated, 0 removed")
    expect(banner).to_contain_text("3 toolbox(es)")
    expect(banner).to_contain_text("3 up")


def test_auto_refresh_reloads_the_panels_and_can_be_paused(tab: Tab, console: Console) -> None:
    page = tab.page
    page.goto(console.page_url("toolbox-1", "system"))
    refreshes: list[str] = []

    def count(request: Request) -> None:
        if "/tabs/system" in request.url:
            refreshes.append(request.url)

    page.on("request", count)
    page.wait_for_timeout(7_000)  # the test console refreshes every 3 s
    assert len(refreshes) >= 2
    page.click("[data-refresh-toggle]")
    expect(page.locator("[data-refresh-status]")).to_have_text("Auto-refresh paused")
    refreshes.clear()
    page.wait_for_timeout(7_000)
    assert refreshes == []
    # Paused stays paused on the next page (kept in the browser).
    page.goto(console.page_url("toolbox-1", "overview"))
    expect(page.locator("[data-refresh-toggle]")).to_have_attribute("aria-pressed", "true")
    page.click("[data-refresh-toggle]")
    expect(page.locator("[data-refresh-status]")).to_contain_text("Auto-refresh every 3 s")


def test_every_tab_shows_the_toolbox(tab: Tab, console: Console, sandbox: SandboxInfo) -> None:
    page = tab.page
    page.goto(console.page_url("toolbox-1"))
    overview = page.locator("#overview")
    expect(overview.locator(".facts")).to_contain_text("Agent up")
    expect(overview.locator(".facts")).to_contain_text("running")  # the Docker engine
    expect(overview.locator("[data-health]")).to_be_visible()
    expect(overview.locator(".banner")).to_have_count(0)  # the agent answered
    expect(page.locator("[data-action=dtma-restart]")).to_be_enabled()

    page.click("a[data-tab=containers]")
    row = page.locator(f"tr[data-tool='{ECHO}']")
    expect(row).to_have_attribute("data-state", "running")
    expect(row.locator("td[data-label=Image]")).to_have_text("dtma-tool-echo:1.0")
    expect(row.locator("td[data-label=Ports]")).to_contain_text(f"{ECHO_PORT}→8080/tcp")
    expect(row.locator("[data-action=start]")).to_be_disabled()
    expect(row.locator("[data-action=stop]")).to_be_enabled()
    expect(page).to_have_url(console.page_url("toolbox-1", "containers"))

    page.click("a[data-tab=system]")
    for metric in ("cpu", "memory", "disk"):
        meter = page.locator(f"[data-metric={metric}] meter")
        value = float(meter.get_attribute("value") or "nan")
        assert 0 <= value <= 100, (metric, value)
    expect(page.locator("[data-load] .value")).to_have_count(3)

    page.click("a[data-tab=logs]")
    page.locator("#log-tool").select_option(ECHO)
    # The tail of the echo tool's log: its start line, or the requests earlier tests made.
    expect(page.locator("[data-log-view]")).to_contain_text(ECHO_LOG_LINE)


def test_screenshots_of_every_page(browser: Browser, console: Console, screenshots: Path) -> None:
    """Laptop and phone screenshots of the list and of each tab, under test-output/web/."""
    for label, viewport in (("laptop", LAPTOP), ("phone", PHONE)):
        context = browser.new_context(viewport=viewport)
        page = context.new_page()
        page.goto(f"{console.url}/login")
        page.screenshot(path=screenshots / f"{label}-login.png")
        sign_in(page, console)
        expect(page.locator("#toolbox-rows tr[data-toolbox]")).to_have_count(3)
        page.screenshot(path=screenshots / f"{label}-toolboxes.png", full_page=True)
        for name in ("overview", "containers", "system", "logs"):
            tool = f"&tool={ECHO}" if name == "logs" else ""
            page.goto(console.page_url("toolbox-1", name) + tool)
            expect(page.locator(f"[data-tab-panel={name}]")).to_be_visible()
            if name == "logs":
                expect(page.locator("[data-log-view]")).to_contain_text(ECHO_LOG_LINE)
            page.screenshot(path=screenshots / f"{label}-{name}.png", full_page=True)
        # Nothing overflows sideways on the phone: the page fits its width.
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= viewport["width"], (label, width)
        context.close()
    shots = sorted(p.name for p in screenshots.glob("*.png"))
    for label in ("laptop", "phone"):
        for name in ("login", "toolboxes", "overview", "containers", "system", "logs"):
            path = screenshots / f"{label}-{name}.png"
            assert path.stat().st_size > 10_000, (path, shots)
