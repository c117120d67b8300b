"""The Runs and Audit pages as people use them, on the session sandbox: reached from the
navigation, filtered (and a filter that does not parse shown next to the form, 422), a run's
stored event log and a live run followed from the Runs page, secrets never on the Audit page,
and a user who is not an admin seeing only their own toolbox's runs and entries."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from api.services import run_store
from tests.web.conftest import LAPTOP, RUN_TIMEOUT, Console, Tab, sign_in, wait_for_run

pytestmark = pytest.mark.sandbox

SLOW = "wt-history"  # deployed with a long settle window: live for ~20 s
SECRET = "hist-secret-5ba1e9"
RUN_MS = RUN_TIMEOUT * 1000


@pytest.fixture(scope="module")
def slow_deploy(console: Console) -> Iterator[str]:
    """A deploy on toolbox-2 (with a secret in its environment) that runs for a while; its run
    id. The tool is removed when the module ends."""
    toolbox = console.toolboxes["toolbox-2"]
    body = {"name": SLOW, "image": "dtma-tool-echo:1.0", "env": {"WT_TOKEN": SECRET},
            "settle_seconds": 15}  # fmt: skip
    with console.http() as http:
        started = http.post(f"/api/v1/toolboxes/{toolbox}/tools", params={"wait": False}, json=body)
        assert started.status_code == 202, started.text
        run_id = str(started.json()["run_id"])
        yield run_id
        wait_for_run(http, run_id)
        removed = http.delete(f"/api/v1/toolboxes/{toolbox}/tools/{SLOW}")
        assert removed.status_code == 200, removed.text


def api_runs(http: httpx.Client, **params: Any) -> list[dict[str, Any]]:
    answer = http.get("/api/v1/runs", params={"limit": 500, **params})
    assert answer.status_code == 200, answer.text
    return list(answer.json())


def shown(page: Page, selector: str, attribute: str) -> list[str]:
    return list(page.locator(selector).evaluate_all(f"rows => rows.map(r => r.{attribute})"))


def test_runs_page_follows_a_live_run_filters_and_opens_a_stored_log(
    tab: Tab, console: Console, slow_deploy: str
) -> None:
    page = tab.page
    # From the navigation, which reaches every page.
    nav = page.locator("nav[aria-label=Main] a")
    expect(nav).to_have_text(["Toolboxes", "Rollouts", "Runs", "Alerts", "Audit", "Registries"])
    page.locator("nav[aria-label=Main] a[href='/runs']").click()
    page.wait_for_url(f"{console.url}/runs")
    expect(page.locator("nav[aria-label=Main] a[aria-current=page]")).to_have_text("Runs")

    # The live run, newest first, opens its live log (the run's SSE stream) ...
    row = page.locator(f"tr[data-run='{slow_deploy}']")
    expect(page.locator("#run-rows tr[data-run]").first).to_have_attribute("data-run", slow_deploy)
    expect(row).to_have_attribute("data-status", re.compile("^(queued|running)$"))
    row.locator("[data-open-run]").click()
    page.wait_for_url(f"{console.url}/runs/{slow_deploy}")
    card = page.locator(f"#run-{slow_deploy}")
    expect(card).to_have_attribute("data-events", f"/runs/{slow_deploy}/events")
    expect(card.locator(".run-events li").first).to_be_visible()
    expect(page.locator("#run-log")).to_have_count(0)
    # ... and, when it ends, its result and stored event log, in place.
    expect(page.locator("#run-log")).to_be_visible(timeout=RUN_MS)
    expect(card).to_have_attribute("data-status", "successful")
    stored, _ = run_store.stored_events(console.app.state.context.sessions, slow_deploy, 0)
    expect(page.locator("#run-log li")).to_have_count(len(stored))
    expect(page.locator("#run-log")).to_contain_text(f"Run the container of tool instance {SLOW}")

    # Filters: toolbox + action + status, as the API answers them.
    toolbox = console.toolboxes["toolbox-2"]
    page.goto(f"{console.url}/runs")
    page.select_option("#f-toolbox", toolbox)
    page.select_option("#f-action", "tool.deploy")
    page.select_option("#f-status", "successful")
    page.click("[data-testid=filter]")
    page.wait_for_url(f"{console.url}/runs?*status=successful*")
    since = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
    with console.http() as http:
        expected = api_runs(http, toolbox_id=toolbox, action="tool.deploy", status="successful")
        by_admin = api_runs(http, user="web-admin", since=since)
        install = api_runs(http, toolbox_id=toolbox, action="dtma.install")[-1]
    assert slow_deploy in [r["id"] for r in expected]
    expect(page.locator("#run-rows tr[data-run]")).to_have_count(len(expected))
    assert shown(page, "#run-rows tr[data-run]", "dataset.run") == [r["id"] for r in expected]
    # ... by user and time: a user who started nothing, a range that ended before any run.
    page.fill("#f-user", "nobody-here")
    page.click("[data-testid=filter]")
    expect(page.locator("#run-rows [data-empty]")).to_contain_text("match the filter")
    page.goto(f"{console.url}/runs?user=web-admin&until=2020-01-01T00:00")
    expect(page.locator("#run-rows [data-empty]")).to_be_visible()
    page.goto(f"{console.url}/runs?user=web-admin&since={since}")
    assert by_admin
    expect(page.locator("#run-rows tr[data-run]")).to_have_count(min(len(by_admin), 50))

    # A filter that does not parse: 422, said next to the form, no rows.
    answer = page.goto(f"{console.url}/runs?since=yesterday")
    assert answer is not None and answer.status == 422
    expect(page.locator("[data-filter-error=since]")).to_contain_text("since must be a time")
    expect(page.locator("#run-rows tr[data-run]")).to_have_count(0)

    # A stored run's log opens from its row.
    page.goto(f"{console.url}/runs?toolbox={toolbox}&action=dtma.install")
    page.locator(f"tr[data-run='{install['id']}'] [data-open-run]").click()
    page.wait_for_url(f"{console.url}/runs/{install['id']}")
    expect(page.locator("#run-log li").first).to_be_visible()
    assert page.locator(f"#run-{install['id']}").get_attribute("data-events") is None


def test_audit_page_filters_and_never_shows_a_secret(
    tab: Tab, console: Console, slow_deploy: str
) -> None:
    page = tab.page
    page.goto(f"{console.url}/toolboxes")
    page.locator("nav[aria-label=Main] a[href='/audit']").click()
    page.wait_for_url(f"{console.url}/audit")
    expect(page.locator("nav[aria-label=Main] a[aria-current=page]")).to_have_text("Audit")
    page.select_option("#f-action", "tool.deploy")
    page.select_option("#f-toolbox", console.toolboxes["toolbox-2"])
    page.fill("#f-user", "web-admin")
    page.click("[data-testid=filter]")
    page.wait_for_url(f"{console.url}/audit?*action=tool.deploy*")
    entry = page.locator("#audit-rows tr[data-audit]").filter(
        has=page.locator(f"a[href='/runs/{slow_deploy}']")
    )
    expect(entry).to_have_count(1)
    expect(entry.locator("[data-params]")).to_contain_text(SLOW)
    expect(entry.locator("[data-params]")).to_contain_text("<redacted>")
    assert SECRET not in page.content()
    for action in shown(page, "#audit-rows tr[data-audit]", "dataset.action"):
        assert action == "tool.deploy"
    with console.http() as http:
        listed = http.get("/api/v1/audit", params={"action": "tool.deploy", "limit": 500})
        assert listed.status_code == 200 and SECRET not in listed.text

    answer = page.goto(f"{console.url}/audit?until=2020-01-01T00:00&since=2021-01-01T00:00")
    assert answer is not None and answer.status == 422
    expect(page.locator("[data-filter-error=until]")).to_contain_text("until must not be before")


def test_a_user_sees_only_the_runs_and_audit_of_their_own_toolbox(
    browser: Browser, console: Console, slow_deploy: str
) -> None:
    owned = console.toolboxes["toolbox-3"]
    token = console.token("history-owner")
    with console.http() as http:
        assert http.patch(f"/api/v1/toolboxes/{owned}", json={"owner": "history-owner"}).is_success
    context = browser.new_context(viewport=LAPTOP)
    try:
        page = context.new_page()
        sign_in(page, console, token)
        page.goto(f"{console.url}/runs")
        with httpx.Client(
            base_url=console.url, headers={"Authorization": f"Bearer {token}"}
        ) as own:
            theirs = api_runs(own)
            audit = own.get("/api/v1/audit", params={"limit": 500}).json()
        assert theirs and {r["toolbox_id"] for r in theirs} == {owned}
        expect(page.locator("#run-rows tr[data-run]")).to_have_count(len(theirs))
        assert set(shown(page, "#run-rows tr[data-run]", "dataset.toolbox")) == {"toolbox-3"}
        expect(page.locator(f"tr[data-run='{slow_deploy}']")).to_have_count(0)
        # Someone else's run is not found, as in the API.
        answer = page.goto(f"{console.url}/runs/{slow_deploy}")
        assert answer is not None and answer.status == 404

        page.goto(f"{console.url}/audit")
        assert audit and all(e["toolbox_id"] == owned or e["actor"] == "history-owner"
                             for e in audit)  # fmt: skip
        expect(page.locator("#audit-rows tr[data-audit]")).to_have_count(len(audit))
        # The admin's change of owner is about this toolbox: it is there.
        expect(page.locator("#audit-rows tr[data-action='toolbox.update']")).not_to_have_count(0)
        expect(page.locator(f"#audit-rows a[href='/runs/{slow_deploy}']")).to_have_count(0)
    finally:
        context.close()
        with console.http() as http:
            http.patch(f"/api/v1/toolboxes/{owned}", json={"owner": None})
