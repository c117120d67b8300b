"""Every button does what it says, verified on the droplet; failures show the real error."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest
from playwright.sync_api import Locator, Page, expect

from sandbox.fleet import SandboxInfo
from tests.web.conftest import ECHO, RUN_TIMEOUT, Console, Tab, docker_state, in_droplet

pytestmark = pytest.mark.sandbox

RUN_MS = RUN_TIMEOUT * 1000


def run_ids(page: Page) -> set[str]:
    ids = page.locator("#action-log .run[data-run]").evaluate_all(
        "cards => cards.map(card => card.dataset.run)"
    )
    return set(ids)


def new_card(page: Page, before: set[str]) -> Locator:
    """The action log's card for the run started after `before` was taken."""
    exclude = "".join(f":not([data-run='{run_id}'])" for run_id in before)
    card = page.locator(f"#action-log .run{exclude}").first
    expect(card).to_be_visible()
    return card


def finished(card: Locator) -> str:
    expect(card).not_to_have_attribute("data-status", "running", timeout=RUN_MS)
    return card.get_attribute("data-status") or ""


def test_stop_and_start_a_tool(tab: Tab, console: Console, sandbox: SandboxInfo) -> None:
    page = tab.page
    container = sandbox.droplet("toolbox-1").container
    page.goto(console.page_url("toolbox-1", "containers"))
    row = page.locator(f"tr[data-tool='{ECHO}']")
    expect(row).to_have_attribute("data-state", "running")

    before = run_ids(page)
    row.locator("[data-action=stop]").click()
    card = new_card(page, before)
    expect(card.locator(".what")).to_have_text(f"Stop {ECHO}")
    # The run's events stream in while it runs.
    expect(card.locator(".run-events li").first).to_be_visible()
    # While the run holds the toolbox every button waits; a post that slips through
    # anyway (sent here directly) gets the console's refusal.
    expect(row.locator("[data-action=restart]")).to_be_disabled()
    csrf = page.evaluate("JSON.parse(document.body.getAttribute('hx-headers'))['X-CSRF-Token']")
    toolbox = console.toolboxes["toolbox-1"]
    refused = page.request.post(
        f"{console.url}/toolboxes/{toolbox}/tools/{ECHO}/restart", headers={"X-CSRF-Token": csrf}
    )
    assert refused.status == 409, refused.text()
    assert "busy with run" in refused.text()
    assert finished(card) == "successful"
    expect(card.locator(".run-message")).to_contain_text("stopped")
    expect(row).to_have_attribute("data-state", "exited", timeout=15_000)
    state = docker_state(container, ECHO)
    assert state is not None and state["Running"] is False and state["Status"] == "exited"
    expect(row.locator("[data-action=stop]")).to_be_disabled()
    expect(row.locator("[data-action=start]")).to_be_enabled()
    expect(row.locator("[data-action=restart]")).to_be_enabled()

    before = run_ids(page)
    row.locator("[data-action=start]").click()
    card = new_card(page, before)
    assert finished(card) == "successful"
    expect(row).to_have_attribute("data-state", "running", timeout=15_000)
    state = docker_state(container, ECHO)
    assert state is not None and state["Running"] is True
    expect(row.locator("[data-action=start]")).to_be_disabled()


def test_logs_are_tailed_live_paused_and_downloaded(
    tab: Tab, console: Console, sandbox: SandboxInfo
) -> None:
    page = tab.page
    container = sandbox.droplet("toolbox-1").container
    page.goto(console.page_url("toolbox-1", "logs") + f"&tool={ECHO}")
    view = page.locator("[data-log-view]")
    state = page.locator("[data-log-state]")
    expect(state).to_have_text("Live")
    expect(view).to_contain_text("echo tool: serving /www")

    def request_marker() -> str:
        marker = f"web-marker-{uuid.uuid4().hex[:10]}"
        done = in_droplet(
            container, "docker", "exec", ECHO, "wget", "-q", "-O", "/dev/null",
            f"http://127.0.0.1:8080/{marker}",
        )  # fmt: skip
        # busybox httpd answers 404 for an unknown path and still logs the request.
        assert "No such container" not in done.stderr, done.stderr
        return marker

    live = request_marker()
    expect(view).to_contain_text(live, timeout=20_000)

    page.click("[data-log-pause]")
    held = request_marker()
    expect(state).to_have_text(re.compile(r"^Paused · \d+ new line"), timeout=20_000)
    expect(view).not_to_contain_text(held)
    page.click("[data-log-pause]")
    expect(view).to_contain_text(held)
    expect(state).to_have_text("Live")

    href = page.locator("[data-log-download]").get_attribute("href")
    assert href is not None and href.endswith(f"/{ECHO}/logs.txt?tail=100")
    download = page.request.get(f"{console.url}{href}")
    assert download.status == 200
    assert "attachment" in download.headers["content-disposition"]
    assert live in download.text() and held in download.text()


def test_the_deploy_form_reports_bad_fields_and_starts_nothing(
    tab: Tab, console: Console, sandbox: SandboxInfo
) -> None:
    page = tab.page
    container = sandbox.droplet("toolbox-2").container
    page.goto(console.page_url("toolbox-2", "containers"))
    before = run_ids(page)
    form = page.locator("#deploy-form")
    form.locator("summary").click()
    form.locator("#deploy-name").fill("Bad Name!")
    form.locator("#deploy-ports").fill("8080-80")
    form.locator("#deploy-command").fill("sh -c {{ lookup('pipe','id') }}")
    form.locator("button[type=submit]").click()
    expect(page.locator("[data-field=name] .error")).to_contain_text("lowercase letters")
    expect(page.locator("[data-field=image] .error")).to_have_text("an image is required")
    expect(page.locator("[data-field=ports] .error")).to_contain_text("'8080-80'")
    expect(page.locator("[data-field=name]")).to_have_class("field invalid")
    # What was typed stays, so it can be corrected.
    expect(page.locator("#deploy-name")).to_have_value("Bad Name!")

    page.locator("#deploy-name").fill("wt-template")
    page.locator("#deploy-image").fill("dtma-tool-echo:1.0")
    page.locator("#deploy-ports").fill("")
    page.locator("#deploy-form button[type=submit]").click()
    expect(page.locator("[data-field=command] .error")).to_contain_text("templating characters")
    assert run_ids(page) == before
    assert docker_state(container, "wt-template") is None


def test_deploy_then_delete_a_tool_from_the_browser(
    tab: Tab, console: Console, sandbox: SandboxInfo
) -> None:
    page = tab.page
    container = sandbox.droplet("toolbox-2").container
    page.goto(console.page_url("toolbox-2", "containers"))
    before = run_ids(page)
    page.locator("#deploy-form summary").click()
    page.locator("#deploy-name").fill("wt-hello")
    page.locator("#deploy-image").fill("dtma-tool-echo:1.0")
    page.locator("#deploy-ports").fill("28482:8080")
    page.locator("#deploy-env").fill("GREETING=hello from the browser")
    page.locator("#deploy-form button[type=submit]").click()
    card = new_card(page, before)
    expect(card.locator(".what")).to_contain_text("Deploy wt-hello")
    assert finished(card) == "successful"
    row = page.locator("tr[data-tool='wt-hello']")
    expect(row).to_have_attribute("data-state", "running", timeout=15_000)
    state = docker_state(container, "wt-hello")
    assert state is not None and state["Running"] is True
    # The environment reached the container and never the page.
    env = in_droplet(
        container, "docker", "inspect", "-f", "{{json .Config.Env}}", "wt-hello"
    ).stdout
    assert "GREETING=hello from the browser" in env
    assert "hello from the browser" not in page.content()

    page.once("dialog", lambda dialog: dialog.dismiss())
    before = run_ids(page)
    row.locator("[data-action=remove]").click()
    page.wait_for_timeout(1_000)
    assert run_ids(page) == before, "a dismissed confirmation started a run"
    assert docker_state(container, "wt-hello") is not None

    page.once("dialog", lambda dialog: dialog.accept())
    row.locator("[data-action=remove]").click()
    card = new_card(page, before)
    assert finished(card) == "successful"
    expect(row).to_have_count(0, timeout=15_000)
    assert docker_state(container, "wt-hello") is None


def test_a_failing_action_shows_the_real_error_in_red(
    tab: Tab, console: Console, sandbox: SandboxInfo, screenshots: Path
) -> None:
    """An image the toolbox does not have and cannot pull: the run fails, and the action
    log shows the error the run itself recorded, in red."""
    page = tab.page
    container = sandbox.droplet("toolbox-2").container
    page.goto(console.page_url("toolbox-2", "containers"))
    before = run_ids(page)
    page.locator("#deploy-form summary").click()
    page.locator("#deploy-name").fill("wt-missing")
    page.locator("#deploy-image").fill("dtma-tool-missing:9.9")
    page.locator("#deploy-form button[type=submit]").click()
    card = new_card(page, before)
    assert finished(card) == "failed"
    run_id = card.get_attribute("data-run")
    with console.http() as http:
        run = http.get(f"/api/v1/runs/{run_id}").json()
    assert run["success"] is False and run["error"], run
    error = card.locator(".run-error")
    expect(error).to_have_text(run["error"])
    assert "dtma-tool-missing" in run["error"]
    colour = error.evaluate("element => getComputedStyle(element).color")
    assert colour == "rgb(185, 28, 28)", colour  # --bad
    expect(card.locator(".badge")).to_have_text("failed")
    page.screenshot(path=screenshots / "laptop-failed-action.png", full_page=True)
    assert docker_state(container, "wt-missing") is None
    expect(page.locator("tr[data-tool='wt-missing']")).to_have_count(0)
