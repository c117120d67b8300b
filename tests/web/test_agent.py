"""The Overview tab when the agent is down (data from SSH) or the droplet does not answer
(stale cache), and the agent's Restart button bringing it back."""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import expect

from sandbox.fleet import SandboxInfo
from tests.web.conftest import RUN_TIMEOUT, Console, Tab, in_droplet

pytestmark = pytest.mark.sandbox

# Long enough for an agent read to fail and the SSH probe to answer (or time out).
BANNER_MS = 60_000


def agent_active(container: str) -> bool:
    done = in_droplet(container, "systemctl", "is-active", "dtma.service")
    return done.stdout.strip() == "active"


def wait_until_agent_answers(console: Console, droplet: str) -> None:
    """Read the toolbox through the console until its agent answers, so that the next test
    finds it recorded as up again."""
    deadline = time.monotonic() + 120
    with console.http() as http:
        while time.monotonic() < deadline:
            status = http.get(f"/api/v1/toolboxes/{console.toolboxes[droplet]}/dtma/status")
            if status.status_code == 200 and status.json()["source"] == "agent":
                return
            time.sleep(1)
    raise AssertionError(f"the agent of {droplet} did not answer again")


@pytest.fixture
def agent_stopped(sandbox: SandboxInfo, console: Console) -> Iterator[str]:
    """toolbox-3 with its agent stopped by hand; started again afterwards if the test
    did not."""
    container = sandbox.droplet("toolbox-3").container
    stopped = in_droplet(container, "systemctl", "stop", "dtma.service")
    assert stopped.returncode == 0, stopped.stderr
    assert not agent_active(container)
    yield container
    if not agent_active(container):
        in_droplet(container, "systemctl", "start", "dtma.service")
    wait_until_agent_answers(console, "toolbox-3")


def test_agent_down_is_shown_with_ssh_data_and_restart_brings_it_back(
    tab: Tab, console: Console, agent_stopped: str, screenshots: Path
) -> None:
    page = tab.page
    page.goto(console.page_url("toolbox-3"))
    banner = page.locator("#overview .banner[data-source=ssh]")
    expect(banner).to_be_visible(timeout=BANNER_MS)
    expect(banner).to_contain_text("The agent did not answer")
    expect(banner).to_contain_text("SSH probe at")
    expect(page.locator("#toolbox-summary [data-status]")).to_have_text("Agent down")
    page.screenshot(path=screenshots / "laptop-agent-down.png", full_page=True)

    page.once("dialog", lambda dialog: dialog.dismiss())
    page.click("[data-action=dtma-restart]")
    page.wait_for_timeout(1_000)
    expect(page.locator("#action-log .run[data-status=running]")).to_have_count(0)
    assert not agent_active(agent_stopped)

    page.once("dialog", lambda dialog: dialog.accept())
    page.click("[data-action=dtma-restart]")
    card = page.locator("#action-log .run").first
    expect(card.locator(".what")).to_have_text("Restart agent")
    expect(card).not_to_have_attribute("data-status", "running", timeout=RUN_TIMEOUT * 1000)
    expect(card).to_have_attribute("data-status", "successful")
    assert agent_active(agent_stopped)
    expect(page.locator("#overview .banner")).to_have_count(0, timeout=BANNER_MS)
    expect(page.locator("#toolbox-summary [data-status]")).to_have_text("Agent up")


@pytest.fixture
def droplet_paused(sandbox: SandboxInfo, console: Console) -> Iterator[str]:
    """toolbox-3's container frozen: neither its agent nor its sshd answer."""
    container = sandbox.droplet("toolbox-3").container
    subprocess.run(["docker", "pause", container], check=True, capture_output=True)
    yield container
    subprocess.run(["docker", "unpause", container], check=True, capture_output=True)
    wait_until_agent_answers(console, "toolbox-3")


def test_an_unreachable_droplet_shows_the_stale_cache_and_when(
    tab: Tab, console: Console, droplet_paused: str, screenshots: Path
) -> None:
    page = tab.page
    page.goto(console.page_url("toolbox-3", "system"))
    banner = page.locator("#system .banner[data-source=cache]")
    expect(banner).to_be_visible(timeout=BANNER_MS)
    expect(banner).to_contain_text("Stale data")
    expect(banner).to_contain_text("observed at")
    expect(banner).to_contain_text("ssh:")  # why SSH did not answer either
    # The last known numbers are still shown, under the banner.
    expect(page.locator("[data-metric=memory] meter")).to_be_visible()
    expect(page.locator("#toolbox-summary [data-status]")).to_have_text(
        re.compile(r"^Unreachable \(showing data from \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC\)$")
    )
    page.screenshot(path=screenshots / "laptop-stale-cache.png", full_page=True)
