"""The Logs tab with a real tool's log in Chromium: it follows new lines only at the bottom,
keeps the reader's place otherwise and offers "jump to latest", filters by text, and after
a dropped stream (the agent killed mid-stream) or a frozen background page resumes after
the last line shown, each line once."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from playwright.sync_api import Page, expect

from api.web.logs import Cursor, _events
from sandbox.fleet import SandboxInfo
from tests.web.conftest import ECHO, ECHO_PORT, Console, Tab, in_droplet

pytestmark = pytest.mark.sandbox


def requests_to_echo(container: str, tag: str, count: int) -> None:
    """`count` requests to the echo tool: httpd logs each path (`url:/<tag>-007x`)."""
    script = (
        "import urllib.request as u, urllib.error as e\n"
        f"for i in range({count}):\n"
        "    try:\n"
        f"        u.urlopen(f'http://127.0.0.1:{ECHO_PORT}/{tag}-{{i:03d}}x').read()\n"
        "    except e.HTTPError:\n"
        "        pass\n"
    )
    done = in_droplet(container, "python3", "-c", script)
    assert done.returncode == 0, done.stderr


def tags_shown(page: Page) -> Counter[str]:
    text = page.locator("[data-log-view]").inner_text()
    return Counter(re.findall(r"url:/(\w+-\d{3}x)", text))


def at_bottom(page: Page) -> bool:
    return bool(
        page.eval_on_selector(
            "[data-log-view]", "v => v.scrollTop + v.clientHeight >= v.scrollHeight - 24"
        )
    )


def test_the_log_view_keeps_its_place_filters_and_resumes_without_duplicates(
    tab: Tab, console: Console, sandbox: SandboxInfo
) -> None:
    droplet = sandbox.droplet("toolbox-1")
    page = tab.page
    run = uuid.uuid4().hex[:6]  # this run's lines, whatever an earlier run left in the log
    page.goto(console.page_url("toolbox-1", "logs") + f"&tool={ECHO}")
    view = page.locator("[data-log-view]")
    state = page.locator("[data-log-state]")
    jump = page.locator("[data-log-jump]")
    expect(state).to_have_text("Live")

    requests_to_echo(droplet.container, f"fill{run}", 150)  # 300 lines: more than the view shows
    expect(view).to_contain_text(f"url:/fill{run}-149x")
    assert at_bottom(page)  # followed while at the bottom
    expect(jump).to_be_hidden()

    # Scrolled up to read: new lines do not move the view; a button offers the latest.
    page.eval_on_selector("[data-log-view]", "v => { v.scrollTop = 0; }")
    page.wait_for_timeout(200)
    requests_to_echo(droplet.container, f"more{run}", 20)
    expect(jump).to_be_visible()
    expect(jump).to_contain_text("Jump to latest (")
    expect(view).to_contain_text(f"url:/more{run}-019x")
    assert page.eval_on_selector("[data-log-view]", "v => v.scrollTop") == 0
    jump.click()
    assert at_bottom(page)
    expect(jump).to_be_hidden()

    # The text filter shows only matching lines, and lines arriving later are filtered too.
    page.fill("[data-log-filter]", f"more{run}-01")
    expect(page.locator("[data-log-matches]")).to_contain_text("10 of ")
    requests_to_echo(droplet.container, f"late{run}", 3)
    expect(view).to_contain_text(f"url:/late{run}-002x")  # in the DOM, hidden
    visible = page.eval_on_selector_all(
        "[data-log-view] span:not([hidden])", "spans => spans.map(s => s.textContent)"
    )
    assert len(visible) == 10 and all(f"more{run}-01" in line for line in visible), visible
    page.fill("[data-log-filter]", "")
    expect(page.locator("[data-log-matches]")).to_have_text("")

    # The stream drops (the agent is killed; systemd starts it again): the page resumes
    # after the last line it showed.
    killed = in_droplet(droplet.container, "systemctl", "kill", "--signal=SIGKILL", "dtma")
    assert killed.returncode == 0, killed.stderr
    expect(state).not_to_have_text("Live", timeout=15_000)
    deadline = time.monotonic() + 60
    while in_droplet(droplet.container, "systemctl", "is-active", "dtma").stdout.strip() != (
        "active"
    ):
        assert time.monotonic() < deadline, "the agent did not come back"
        time.sleep(0.5)
    expect(state).to_have_text("Live", timeout=30_000)
    requests_to_echo(droplet.container, f"after{run}", 5)
    expect(view).to_contain_text(f"url:/after{run}-004x")

    # A page the browser froze in the background (Chromium's page lifecycle) catches up.
    cdp = page.context.new_cdp_session(page)
    cdp.send("Page.setWebLifecycleState", {"state": "frozen"})
    requests_to_echo(droplet.container, f"frozen{run}", 5)
    cdp.send("Page.setWebLifecycleState", {"state": "active"})
    expect(view).to_contain_text(f"url:/frozen{run}-004x", timeout=30_000)

    shown = tags_shown(page)
    expected = (
        [f"fill{run}-{i:03d}x" for i in range(150)] + [f"more{run}-{i:03d}x" for i in range(20)]
        + [f"late{run}-{i:03d}x" for i in range(3)] + [f"after{run}-{i:03d}x" for i in range(5)]
        + [f"frozen{run}-{i:03d}x" for i in range(5)]
    )  # fmt: skip
    missing = [t for t in expected if shown[t] == 0]
    twice = {t: n for t, n in shown.items() if n > 1}
    assert not missing and not twice, (missing, twice)


def test_a_cursor_resumes_after_the_last_line_sent_even_within_one_nanosecond() -> None:
    stamp = "2026-12-01T10:00:00.000000001Z"
    lines = [f"{stamp} a", f"{stamp} b", "2026-12-01T10:00:00.5Z c", "no timestamp"]

    async def events(after: Cursor | None) -> list[bytes]:
        async def source() -> AsyncIterator[str]:
            for line in lines:
                yield line

        return [event async for event in _events(source(), after)]

    def run(after: Cursor | None) -> list[bytes]:
        # A thread of its own: Playwright's sync API keeps an event loop in this one.
        with ThreadPoolExecutor(1) as pool:
            return pool.submit(asyncio.run, events(after)).result()

    first = run(None)
    assert first[0] == f"id: {stamp}~000000\ndata: a\n\n".encode()
    assert first[2] == b"id: 2026-12-01T10:00:00.500000000Z~000000\ndata: c\n\n"
    cursor = Cursor.parse(f"{stamp}~000001")
    assert cursor is not None and str(cursor) == f"{stamp}~000001"
    assert cursor.since.isoformat() == "2026-12-01T10:00:00+00:00"  # asks a little early
    assert run(cursor) == first[2:]
    assert Cursor.parse("1; DROP") is None and Cursor.parse(None) is None
