"""The Deploy form's health check, settle time, limits, volumes, labels and log rotation:
problems the server finds are shown at their fields (nothing starts), and a good form deploys
exactly what it says."""

from __future__ import annotations

import json

import pytest
from playwright.sync_api import expect

from sandbox.fleet import SandboxInfo
from tests.web.conftest import Console, Tab, docker_state, in_droplet
from tests.web.test_actions import finished, new_card, run_ids

pytestmark = pytest.mark.sandbox

SECOND = 1_000_000_000  # Docker keeps durations in nanoseconds


def test_deploy_with_a_health_check_settle_time_and_limits(
    tab: Tab, console: Console, sandbox: SandboxInfo
) -> None:
    page = tab.page
    container = sandbox.droplet("toolbox-2").container
    page.goto(console.page_url("toolbox-2", "containers"))
    before = run_ids(page)
    page.locator("#deploy-form summary").click()
    # The browser gets the role's bounds.
    expect(page.locator("#deploy-settle_seconds")).to_have_attribute("max", "120")
    expect(page.locator("#deploy-health_interval")).to_have_attribute("min", "1")
    page.locator("#deploy-name").fill("wt-health")
    page.locator("#deploy-image").fill("dtma-tool-echo:1.0")
    page.locator("#deploy-memory").fill("1k")
    page.locator("#deploy-health_command").fill("wget -q -O /dev/null http://127.0.0.1:8080/")
    # Within the browser's bounds, but the first result would come too late to verify.
    page.locator("#deploy-health_interval").fill("30")
    page.locator("#deploy-health_timeout").fill("10")
    page.locator("#deploy-volumes").fill("/etc:/host-etc")
    page.locator("#deploy-labels").fill("dtma.managed=false")
    page.locator("#deploy-log_max_size").fill("5g")
    page.locator("#deploy-form button[type=submit]").click()
    expect(page.locator("[data-field=volumes] .error")).to_contain_text("never a host path")
    expect(page.locator("[data-field=labels] .error")).to_contain_text("the console's own")
    expect(page.locator("[data-field=log_max_size] .error")).to_contain_text("at most 1g")
    expect(page.locator("#deploy-volumes")).to_have_value("/etc:/host-etc")
    expect(page.locator("[data-field=memory] .error")).to_contain_text("at least 6m")
    expect(page.locator("[data-field=health_interval] .error")).to_contain_text(
        "the first result would come after"
    )
    expect(page.locator("#deploy-health_interval")).to_have_value("30")
    assert run_ids(page) == before
    assert docker_state(container, "wt-health") is None

    page.locator("#deploy-memory").fill("64m")
    page.locator("#deploy-cpus").fill("0.5")
    page.locator("#deploy-settle_seconds").fill("1")
    page.locator("#deploy-health_interval").fill("1")
    page.locator("#deploy-health_timeout").fill("2")
    page.locator("#deploy-health_retries").fill("2")
    page.locator("#deploy-volumes").fill("wt-health-data:/data\nwt-health-conf:/conf:ro")
    page.locator("#deploy-labels").fill("com.example.team=ops")
    page.locator("#deploy-log_max_size").fill("2m")
    page.locator("#deploy-log_max_file").fill("4")
    page.locator("#deploy-form button[type=submit]").click()
    card = new_card(page, before)
    expect(card.locator(".what")).to_contain_text("Deploy wt-health")
    try:
        assert finished(card) == "successful"
        inspected = json.loads(
            in_droplet(container, "docker", "inspect", "--type", "container", "wt-health").stdout
        )[0]
        assert inspected["HostConfig"]["LogConfig"] == {
            "Type": "json-file",
            "Config": {"max-size": "2m", "max-file": "4"},
        }
        assert {(m["Name"], m["Destination"], m["RW"]) for m in inspected["Mounts"]} == {
            ("wt-health-data", "/data", True),
            ("wt-health-conf", "/conf", False),
        }
        assert inspected["Config"]["Labels"]["com.example.team"] == "ops"
        assert inspected["State"]["Health"]["Status"] == "healthy"
        check = inspected["Config"]["Healthcheck"]
        assert check["Test"] == ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/"]
        assert (check["Interval"], check["Timeout"], check["Retries"]) == (SECOND, 2 * SECOND, 2)
        assert inspected["Config"]["Labels"]["dtma.settle_seconds"] == "1"
        assert inspected["HostConfig"]["Memory"] == 64 * 1024 * 1024
        assert inspected["HostConfig"]["NanoCpus"] == SECOND // 2
    finally:
        with console.http() as http:
            http.delete(f"/api/v1/toolboxes/{console.toolboxes['toolbox-2']}/tools/wt-health")
        in_droplet(container, "docker", "volume", "rm", "wt-health-data", "wt-health-conf")
