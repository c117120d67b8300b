"""The Rollouts page in Chromium: the target picker counts the matching toolboxes before
the start button appears, the live view follows the run batch by batch without a reload
(SSE), and the final table matches the droplets (their /health, asked from outside)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page

from sandbox.fleet import SandboxInfo
from tests.rollouts.conftest import Console, versions
from tests.web.conftest import browser, chromium, playwright  # noqa: F401  (fixtures)

pytestmark = pytest.mark.sandbox


@pytest.fixture
def page(browser: Browser, console: Console) -> Iterator[Page]:  # noqa: F811
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    opened = context.new_page()
    opened.set_default_timeout(30_000)
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    opened.on("console", lambda m: errors.append(m.text) if "Content Security" in m.text else None)
    opened.goto(f"{console.url}/login")
    opened.fill("#token", console.admin_token)
    opened.click("form.login-card button[type=submit]")
    opened.wait_for_url(f"{console.url}/toolboxes")
    yield opened
    context.close()
    assert not errors, f"errors in the page: {errors}"


def test_a_rollout_started_from_the_page_is_followed_live_to_its_final_table(
    page: Page, console: Console, sandbox: SandboxInfo, releases: dict[str, str]
) -> None:
    page.click("nav >> text=Rollouts")
    page.wait_for_url(f"{console.url}/rollouts")
    page.select_option("#r-action", "dtma.redeploy")
    page.fill("#r-version", releases["newer"])
    page.check("input[name=target][value=toolbox_ids]")
    for name in ("toolbox-4", "toolbox-5"):
        page.check(f"input[name=toolbox_ids][value='{console.toolboxes[name]}']")
    page.fill("#r-batch", "1")
    count = page.locator("[data-testid=match-count]")
    count.filter(has_text="2 toolboxes match").wait_for()
    assert "toolbox-4, toolbox-5" in count.inner_text()
    page.click("[data-testid=start-rollout]")
    page.wait_for_url(f"{console.url}/rollouts/*")
    page.evaluate("window.__notReloaded = true")
    status = page.locator("[data-testid=rollout-status]")
    assert status.inner_text() == "running"
    # Live, in place: a host turns successful once the console read its agent back (at the
    # run's end; until then the droplet-verified rows say they wait for that read).
    page.locator("tr[data-host=toolbox-4][data-state=successful]").wait_for(timeout=300_000)
    status.filter(has_text="successful").wait_for(timeout=300_000)
    assert page.evaluate("window.__notReloaded") is True  # updated in place, over SSE
    rows = {
        row.get_attribute("data-host"): (
            row.locator("td").nth(1).inner_text(), row.get_attribute("data-state")
        )
        for row in page.locator("#rollout-hosts tbody tr").all()
    }  # fmt: skip
    assert rows == {"toolbox-4": ("0", "successful"), "toolbox-5": ("1", "successful")}
    bars = page.locator(".rollout-batches progress")
    assert [(b.get_attribute("value"), b.get_attribute("max")) for b in bars.all()] == [
        ("1", "1"), ("1", "1")
    ]  # fmt: skip
    seen = versions(sandbox)
    assert (seen["toolbox-4"], seen["toolbox-5"]) == (releases["newer"], releases["newer"])
    page.goto(f"{console.url}/rollouts")  # the rollout is listed
    assert page.locator("#rollouts tbody tr").first.locator(".badge").inner_text() == "successful"
