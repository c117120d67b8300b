"""Rollouts on a fleet of five sandbox droplets: one console serving on loopback (local
executor, SQLite), every agent installed by it, and two agent releases beside the source
version (a newer one, and a broken one that cannot start), built into the wheelhouse the
dtma role reads (`.wheelhouse/<version>/`) so that `{"version": ...}` reaches them exactly as
an operator's release would."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from dtma_agent import __version__ as BASE_VERSION
from fastapi import FastAPI

from api.app import create_app
from api.db import session_scope
from api.services import users
from api.settings import Settings
from sandbox.config import PROJECT_ROOT, SandboxConfig
from sandbox.fleet import SandboxInfo
from tests.api.server import live_server
from tests.conftest import session_fleet
from tests.dtma.conftest import Release, health, make_release

DROPLETS = 5
RUN_TIMEOUT = 600
WHEELHOUSE = PROJECT_ROOT / ".wheelhouse"


def _port() -> int:
    """A free port in this test slot's range (PROTOCOL.md), else any free one."""
    slot = int(os.environ.get("DTMA_TEST_SLOT", "0") or 0)
    base = 20000 + 1000 * slot + 700
    for port in range(base, base + 100):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {base}..{base + 99}")


@pytest.fixture(scope="session")
def sandbox(sandbox_config: SandboxConfig) -> Iterator[SandboxInfo]:
    """Five droplets (the session default is three)."""
    with session_fleet(sandbox_config, DROPLETS) as info:
        yield info


@dataclass
class Console:
    url: str
    app: FastAPI
    admin_token: str
    toolboxes: dict[str, str]  # droplet name -> toolbox id

    def http(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token or self.admin_token}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=RUN_TIMEOUT)

    def user(self, name: str) -> tuple[str, str]:
        """(user id, token) of a new non-admin user."""
        with session_scope(self.app.state.context.sessions) as session:
            user, token = users.create_token(session, name, admin=False)
            return user.id, token


def wait_for_run(http: httpx.Client, run_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + RUN_TIMEOUT
    while time.monotonic() < deadline:
        run = http.get(f"/api/v1/runs/{run_id}").json()
        if run["status"] not in ("queued", "running"):
            return dict(run)
        time.sleep(0.5)
    raise AssertionError(f"run {run_id} did not end within {RUN_TIMEOUT} s")


def wait_for_rollout(http: httpx.Client, rollout_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + RUN_TIMEOUT
    while time.monotonic() < deadline:
        rollout: dict[str, Any] = http.get(f"/api/v1/rollouts/{rollout_id}").json()
        if rollout["status"] != "running":
            return rollout
        time.sleep(0.5)
    raise AssertionError(f"rollout {rollout_id} did not end within {RUN_TIMEOUT} s")


@pytest.fixture(scope="session")
def console(sandbox: SandboxInfo, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    """The console on loopback, the toolboxes imported, every agent installed by it."""
    database = tmp_path_factory.mktemp("rollouts") / "console.db"
    settings = Settings(
        database_url=f"sqlite:///{database}",
        do_api_url=sandbox.api_url,
        do_api_token=sandbox.api_token,
        inventory=sandbox.inventory,
        ssh_key_file=sandbox.operator_key,
        known_hosts_file=sandbox.known_hosts,
        monitor_interval=0,
        agent_timeout=2.0,
        run_timeout=RUN_TIMEOUT,
        ssh_revoke_bootstrap_key=True,  # a toolbox's own key replaces the operator's
    )
    app = create_app(settings)
    with live_server(app, _port()) as url:
        with session_scope(app.state.context.sessions) as session:
            _, token = users.create_token(session, "rollout-admin", admin=True)
        with httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=RUN_TIMEOUT
        ) as http:
            imported = http.post("/api/v1/toolboxes/sync")
            assert imported.status_code == 200, imported.text
            ids = {t["name"]: t["id"] for t in imported.json()["toolboxes"]}
            started = [
                http.post(f"/api/v1/toolboxes/{i}/dtma/install", params={"wait": False})
                for i in ids.values()
            ]
            for response in started:
                assert response.status_code == 202, response.text
                run = wait_for_run(http, response.json()["run_id"])
                assert run["status"] == "successful", run
        yield Console(url, app, token, ids)


def _build_wheelhouse(release: Release) -> Path:
    done = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "agent" / "build_wheelhouse.py"),
         "--source", str(release.source), "--out", str(WHEELHOUSE)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return WHEELHOUSE / release.version


@pytest.fixture(scope="session")
def releases(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Versions by name (base, newer, broken), the two extra ones in the role's wheelhouse
    for the session (removed at its end)."""
    newer = make_release(tmp_path_factory.mktemp("newer"), f"{BASE_VERSION}+rollout.newer")
    broken = make_release(
        tmp_path_factory.mktemp("broken"), f"{BASE_VERSION}+rollout.broken", broken=True
    )
    built = [_build_wheelhouse(newer), _build_wheelhouse(broken)]
    try:
        yield {"base": BASE_VERSION, "newer": newer.version, "broken": broken.version}
    finally:
        for directory in built:
            shutil.rmtree(directory, ignore_errors=True)


def versions(sandbox: SandboxInfo) -> dict[str, str | None]:
    """What each droplet's agent answers on /health, asked from outside (its published
    port), not from the console."""
    answers = {d.name: health(d) for d in sandbox.droplets}
    return {name: (a or {}).get("version") for name, a in answers.items()}
