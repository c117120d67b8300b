"""Fixtures for the web console: the console serving on loopback against the session
sandbox (agents installed with its tokens, an echo tool deployed), Debian's chromium driven
by Playwright, a signed-in page, and ground truth read with `docker exec <droplet> ...`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from playwright.sync_api import Browser, Page, Playwright, sync_playwright

from api.app import create_app
from api.db import session_scope
from api.services import users
from api.settings import Settings
from sandbox.config import PROJECT_ROOT
from sandbox.fleet import SandboxInfo
from tests.api.server import live_server

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",  # root cannot use chromium's sandbox
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
LAPTOP = {"width": 1366, "height": 860}
PHONE = {"width": 390, "height": 844}
# The tool every test finds running on toolbox-1 (host port far from other suites' ports).
ECHO = "wt-echo"
ECHO_PORT = 28481
RUN_TIMEOUT = 600.0


# -- the browser -----------------------------------------------------------------------------
@pytest.fixture(scope="session")
def chromium() -> Path:
    """Debian's chromium, installed with apt-get when missing (Playwright cannot download
    browsers on these machines)."""
    if not CHROMIUM.exists():
        if shutil.which("apt-get") is None:
            raise RuntimeError(f"{CHROMIUM} is missing and apt-get is not available")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = ["apt-get", "install", "-y", "--no-install-recommends", "chromium"]
        done = subprocess.run(install, capture_output=True, text=True, env=env, timeout=900)
        if done.returncode != 0:  # the package lists may be missing or stale
            subprocess.run(["apt-get", "update"], capture_output=True, env=env, timeout=600)
            done = subprocess.run(install, capture_output=True, text=True, env=env, timeout=900)
        if done.returncode != 0 or not CHROMIUM.exists():
            raise RuntimeError(f"could not install chromium: {done.stderr.strip()[-2000:]}")
    return CHROMIUM


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="session")
def browser(playwright: Playwright, chromium: Path) -> Iterator[Browser]:
    launched = playwright.chromium.launch(
        executable_path=str(chromium), headless=True, args=CHROMIUM_ARGS
    )
    yield launched
    launched.close()


@pytest.fixture(scope="session")
def screenshots() -> Path:
    """test-output/web/ (gitignored): screenshots of every page and tab, laptop and phone."""
    directory = PROJECT_ROOT / "test-output" / "web"
    directory.mkdir(parents=True, exist_ok=True)
    return directory


# -- the console -----------------------------------------------------------------------------
@dataclass
class Console:
    url: str
    app: FastAPI
    admin_token: str
    toolboxes: dict[str, str]  # droplet name -> toolbox id

    def http(self) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.admin_token}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=RUN_TIMEOUT)

    def token(self, name: str, *, admin: bool = False) -> str:
        with session_scope(self.app.state.context.sessions) as session:
            _, token = users.create_token(session, name, admin=admin)
        return token

    def page_url(self, droplet: str, tab: str = "overview") -> str:
        return f"{self.url}/toolboxes/{self.toolboxes[droplet]}?tab={tab}"


def wait_for_run(http: httpx.Client, run_id: str, timeout: float = RUN_TIMEOUT) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = http.get(f"/api/v1/runs/{run_id}").json()
        if run["status"] not in ("queued", "running"):
            return dict(run)
        time.sleep(0.5)
    raise AssertionError(f"run {run_id} did not end within {timeout} s")


def run_all(http: httpx.Client, requests: list[tuple[str, dict[str, Any] | None]]) -> None:
    """Start every (path, body) action at once without waiting, then require each to
    succeed."""
    run_ids = []
    for path, body in requests:
        started = http.post(path, params={"wait": False}, json=body)
        assert started.status_code == 202, started.text
        run_ids.append(started.json()["run_id"])
    for run_id in run_ids:
        run = wait_for_run(http, run_id)
        assert run["status"] == "successful", json.dumps(run, indent=1)[:4000]


@pytest.fixture(scope="session")
def console(sandbox: SandboxInfo, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    """The console serving on loopback: toolboxes imported from the sandbox, every agent
    installed with this console's token, and the echo tool running on toolbox-1."""
    database = tmp_path_factory.mktemp("web") / "console.db"
    settings = Settings(
        database_url=f"sqlite:///{database}",
        do_api_url=sandbox.api_url,
        do_api_token=sandbox.api_token,
        inventory=sandbox.inventory,
        ssh_key_file=sandbox.operator_key,
        known_hosts_file=sandbox.known_hosts,
        monitor_interval=0,
        agent_timeout=2.0,
        ssh_probe_timeout=10.0,
        web_refresh_seconds=3,
    )
    app = create_app(settings)
    with live_server(app) as url:
        with session_scope(app.state.context.sessions) as session:
            _, token = users.create_token(session, "web-admin", admin=True)
        with httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=RUN_TIMEOUT
        ) as http:
            imported = http.post("/api/v1/toolboxes/sync")
            assert imported.status_code == 200, imported.text
            ids = {t["name"]: t["id"] for t in imported.json()["toolboxes"]}
            run_all(http, [(f"/api/v1/toolboxes/{i}/dtma/install", None) for i in ids.values()])
            echo = {
                "name": ECHO,
                "image": "dtma-tool-echo:1.0",
                "ports": [{"host_port": ECHO_PORT, "container_port": 8080}],
            }
            run_all(http, [(f"/api/v1/toolboxes/{ids['toolbox-1']}/tools", echo)])
        yield Console(url, app, token, ids)


# -- a signed-in page ------------------------------------------------------------------------
@dataclass
class Tab:
    """A browser page plus what went wrong in it (script errors and CSP violations fail
    the test)."""

    page: Page
    errors: list[str]


def sign_in(page: Page, console: Console, token: str | None = None) -> None:
    page.goto(f"{console.url}/login")
    page.fill("#token", token or console.admin_token)
    page.click("form.login-card button[type=submit]")
    page.wait_for_url(f"{console.url}/toolboxes")


@pytest.fixture
def tab(browser: Browser, console: Console) -> Iterator[Tab]:
    """A laptop-sized page signed in as the admin."""
    context = browser.new_context(viewport=LAPTOP)
    page = context.new_page()
    page.set_default_timeout(30_000)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    # Everything is served from the console itself: a blocked inline script or style, or
    # a request elsewhere, shows up as a Content-Security-Policy violation.
    page.on(
        "console",
        lambda message: (
            errors.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )
    sign_in(page, console)
    yield Tab(page, errors)
    context.close()
    assert not errors, f"JavaScript errors in the page: {errors}"


# -- ground truth from the droplets ----------------------------------------------------------
def docker_state(container: str, tool: str) -> dict[str, Any] | None:
    """`docker inspect` of a tool's container inside a droplet; None when it does not exist."""
    done = subprocess.run(
        ["docker", "exec", container, "docker", "inspect", "--type", "container", tool],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if done.returncode != 0:
        if "No such" in done.stderr:
            return None
        raise AssertionError(f"docker inspect {tool} in {container}: {done.stderr}")
    state: dict[str, Any] = json.loads(done.stdout)[0]["State"]
    return state


def in_droplet(container: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", "exec", container, *args], capture_output=True, text=True, timeout=120
    )
