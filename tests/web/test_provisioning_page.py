"""Toolboxes from the console in Chromium: an admin creates one with the New toolbox form
(a refused form first: the API's code and message, nothing created), follows its run live
to success and finds it listed, with its agent and tool on the droplet; then retires it from
its page: a wrong confirmation is refused and starts nothing, the right one destroys the
droplet (gone from the emulator, the container gone) and the toolbox leaves the list.

One provisioning and one retirement on the session's sandbox (the emulator creates a real
droplet container), as tests/fleet/test_provisioning.py does through the API."""

from __future__ import annotations

import re
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import expect

from sandbox.config import SandboxConfig
from sandbox.fleet import SandboxInfo
from tests.web.conftest import Console, Tab, docker_state

pytestmark = pytest.mark.sandbox

RUN_MS = 1_200_000  # an agent install on a loaded machine (see tests/fleet)


@pytest.fixture(scope="module")
def emulator(sandbox: SandboxInfo) -> Iterator[httpx.Client]:
    """The DigitalOcean API as the console sees it: ground truth for droplets."""
    headers = {"Authorization": f"Bearer {sandbox.api_token}"}
    with httpx.Client(base_url=sandbox.api_url, headers=headers, timeout=60) as http:
        yield http


def droplets(emulator: httpx.Client) -> dict[str, int]:
    listed = emulator.get("/droplets", params={"per_page": 200}).json()["droplets"]
    return {droplet["name"]: int(droplet["id"]) for droplet in listed}


@pytest.mark.timeout(1800)  # two whole runs (an agent install among them) on a loaded machine
def test_an_admin_provisions_a_toolbox_from_the_form_and_retires_it(
    tab: Tab,
    console: Console,
    emulator: httpx.Client,
    sandbox_config: SandboxConfig,
    screenshots: Path,
) -> None:
    page = tab.page
    name = f"webprov-{secrets.token_hex(2)}"
    before = droplets(emulator)
    page.goto(f"{console.url}/toolboxes")
    page.click("#provision-form > summary")

    # A refused form: the API's own code and message, the field marked, nothing created.
    bad = {"name": "Web_Prov", "region": "fra1", "size": "s-1vcpu-1gb"}
    for field, value in bad.items():
        page.fill(f"#provision-{field}", value)
    page.click("[data-testid=provision]")
    refusal = page.locator("[data-testid=provision-error]")
    expect(refusal.locator("[data-error-code]")).to_have_text("invalid_input")
    with console.http() as http:
        answer = http.post("/api/v1/toolboxes", json=bad).json()["error"]
    assert answer["code"] == "invalid_input" and answer["field"] == "name"
    expect(refusal).to_contain_text(answer["message"])
    expect(page.locator("[data-field=name].invalid")).to_have_count(1)
    page.screenshot(path=screenshots / "laptop-provision-refused.png", full_page=True)
    assert droplets(emulator) == before

    # The good form, with a tool: the run's page opens and follows it live to success.
    page.fill("#provision-name", name)
    page.fill("#provision-tags", "team-web")
    page.fill("#provision-tool_name", "echo")
    page.fill("#provision-tool_image", "dtma-tool-echo:1.0")
    page.fill("#provision-tool_ports", "8080:8080")
    page.click("[data-testid=provision]")
    page.wait_for_url(re.compile(rf"{re.escape(console.url)}/runs/\w+$"))
    run_id = page.url.rsplit("/", 1)[1]
    container = sandbox_config.container(name)
    try:
        card = page.locator(f"#run-{run_id}")
        expect(card).to_have_attribute("data-events", f"/runs/{run_id}/events")
        expect(card.locator(".run-events li").first).to_be_visible()  # live events
        expect(page.locator("#run-log")).to_be_visible(timeout=RUN_MS)
        expect(card).to_have_attribute("data-status", "successful")
        with console.http() as http:
            run = http.get(f"/api/v1/runs/{run_id}").json()
        assert (run["action"], run["status"]) == ("toolbox.provision", "successful"), run
        expect(page.locator("#run-log")).to_contain_text("Pin the droplet's SSH host keys")
        # Listed, with its agent up; the droplet has the tags and runs the tool.
        page.goto(f"{console.url}/toolboxes")
        row = page.locator(f"tr[data-toolbox={name}]")
        expect(row).to_have_count(1)
        expect(row.locator("[data-status]")).to_have_attribute("data-status", "up", timeout=30_000)
        droplet_id = droplets(emulator)[name]
        droplet = emulator.get(f"/droplets/{droplet_id}").json()["droplet"]
        assert {"dtma", "team-web"} <= set(droplet["tags"])
        echo = docker_state(container, "echo")
        assert echo is not None and echo["Status"] == "running"

        # Retire from its page: a wrong confirmation is refused and starts nothing.
        row.locator("a.row-title").click()
        page.wait_for_url(f"{console.url}/toolboxes/*")
        toolbox_id = page.url.split("/toolboxes/", 1)[1].split("?")[0]
        page.click("#retire-form > summary")
        page.fill("#retire-confirm", "toolbox-1")
        page.click("[data-testid=retire]")
        expect(page.locator("[data-testid=retire-error] [data-error-code]")).to_have_text(
            "invalid_input"
        )
        expect(page.locator("[data-testid=retire-error]")).to_contain_text(name)
        page.screenshot(path=screenshots / "laptop-retire-refused.png", full_page=True)
        with console.http() as http:
            runs = http.get("/api/v1/runs", params={"toolbox_id": toolbox_id}).json()
        assert [r["id"] for r in runs] == [run_id]
        assert name in droplets(emulator)
        # The right one retires it: run successful, droplet and container gone, not listed.
        page.fill("#retire-confirm", name)
        page.click("[data-testid=retire]")
        page.wait_for_url(re.compile(rf"{re.escape(console.url)}/runs/(?!{run_id})\w+$"))
        retire_id = page.url.rsplit("/", 1)[1]
        expect(page.locator("#run-log")).to_be_visible(timeout=RUN_MS)
        expect(page.locator(f"#run-{retire_id}")).to_have_attribute("data-status", "successful")
    except BaseException:
        if name in droplets(emulator):  # leave the shared fleet as it was
            emulator.delete(f"/droplets/{droplets(emulator)[name]}")
        raise
    with console.http() as http:
        retired = http.get(f"/api/v1/runs/{retire_id}").json()
    assert retired["action"] == "toolbox.retire"
    assert retired["result"]["data"]["tools_stopped"] == ["echo"]
    assert emulator.get(f"/droplets/{droplet_id}").status_code == 404
    assert droplets(emulator) == before
    assert subprocess.run(["docker", "inspect", container], capture_output=True).returncode != 0
    page.goto(f"{console.url}/toolboxes")
    expect(page.locator("#toolbox-rows tr[data-toolbox]")).to_have_count(len(console.toolboxes))
    expect(page.locator(f"tr[data-toolbox={name}]")).to_have_count(0)
