"""Fixtures for monitoring: a console serving on loopback against the session sandbox, its
agents installed with this console's tokens, a webhook receiver, and helpers that drive the
monitor directly (no timer) and read ground truth from the droplets with `docker exec`."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import threading
import time
import uuid
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.orm import Session, sessionmaker

from api import migrate
from api.app import create_app
from api.context import Context
from api.db import session_scope
from api.models import Toolbox
from api.monitoring import Monitor
from api.services import users
from api.settings import Settings
from sandbox.fleet import SandboxInfo
from tests.api.server import live_server
from tests.sealing import session_secrets

# No background monitoring loop in any test app of this session: tests drive the cycle
# themselves. (Set here because conftest modules load before any test runs; the lead may
# move this line to tests/conftest.py.)
os.environ.setdefault("DTMA_MONITOR_INTERVAL", "0")

T = TypeVar("T")


# -- webhook receiver ------------------------------------------------------------------------
@dataclass
class Received:
    path: str
    body: dict[str, Any]
    at: float


@dataclass
class WebhookReceiver:
    """A local HTTP server recording every JSON POST. Paths choose its behaviour:
    /ok answers 200, /flaky answers 500 twice per alert event then 200, /down always 500,
    /slow waits 30 s before answering."""

    url: str
    received: list[Received] = field(default_factory=list)
    _flaky: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def bodies(self, path: str = "/ok") -> list[dict[str, Any]]:
        with self.lock:
            return [r.body for r in self.received if r.path == path]

    def events_for(self, alert_id: str, path: str = "/ok") -> list[str]:
        return [b["event"] for b in self.bodies(path) if b["alert"]["id"] == alert_id]


@pytest.fixture(scope="session")
def webhook_receiver() -> Iterator[WebhookReceiver]:
    receiver: WebhookReceiver

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            path = urlsplit(self.path).path
            length = int(self.headers.get("content-length", "0"))
            body = json.loads(self.rfile.read(length) or b"{}")
            with receiver.lock:
                receiver.received.append(Received(path, body, time.monotonic()))
                key = f"{path}:{(body.get('alert') or {}).get('id')}:{body.get('event')}"
                tries = receiver._flaky[key] = receiver._flaky.get(key, 0) + 1
            if path == "/slow":
                time.sleep(30)
            failing = path == "/down" or (path == "/flaky" and tries <= 2)
            self.send_response(500 if failing else 200)
            self.send_header("content-length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *_args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    receiver = WebhookReceiver(url=f"http://127.0.0.1:{server.server_address[1]}")
    thread = threading.Thread(target=server.serve_forever, name="webhook-receiver", daemon=True)
    thread.start()
    yield receiver
    server.shutdown()
    server.server_close()


# -- the console -----------------------------------------------------------------------------
@dataclass
class Console:
    url: str
    app: FastAPI
    admin: dict[str, str]  # request headers

    @property
    def context(self) -> Context:
        context: Context = self.app.state.context
        return context

    @property
    def monitor(self) -> Monitor:
        monitor: Monitor = self.app.state.context.monitor
        return monitor

    def http(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=self.admin, timeout=600)

    def call(self, coroutine: Coroutine[Any, Any, T], timeout: float = 600) -> T:
        """Run `coroutine` on the service's own event loop and wait for its result."""
        future = asyncio.run_coroutine_threadsafe(coroutine, self.monitor.loop)
        return future.result(timeout)

    def token(self, name: str, *, admin: bool = False) -> dict[str, str]:
        with session_scope(self.context.sessions) as session:
            _, token = users.create_token(session, name, admin=admin)
        return {"Authorization": f"Bearer {token}"}


def console_settings(
    sandbox: SandboxInfo, database: Path, webhooks: list[str], **extra: Any
) -> Settings:
    values: dict[str, Any] = {
        "database_url": f"sqlite:///{database}",
        "do_api_url": sandbox.api_url,
        "do_api_token": sandbox.api_token,
        "inventory": sandbox.inventory,
        "ssh_key_file": sandbox.operator_key,
        "known_hosts_file": sandbox.known_hosts,
        "monitor_interval": 0,
        "agent_timeout": 2.0,
        "ssh_probe_timeout": 5.0,
        "recovery_backoff_seconds": 0,
        "webhook_backoff_seconds": 0.05,
        "alert_webhooks": webhooks,
        **extra,
    }
    return Settings(**values)


@pytest.fixture(scope="session")
def console(
    sandbox: SandboxInfo,
    webhook_receiver: WebhookReceiver,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Console]:
    """The console serving on loopback, its toolboxes imported from the sandbox and every
    droplet's agent installed with the token this console keeps for it."""
    database = tmp_path_factory.mktemp("monitoring") / "console.db"
    settings = console_settings(sandbox, database, [f"{webhook_receiver.url}/ok"])
    app = create_app(settings)
    with live_server(app) as url:
        with session_scope(app.state.context.sessions) as session:
            _, token = users.create_token(session, "monitor-admin", admin=True)
        console = Console(url, app, {"Authorization": f"Bearer {token}"})
        with console.http() as http:
            imported = http.post("/api/v1/toolboxes/sync")
            assert imported.status_code == 200, imported.text
            install_agents(http, [t["id"] for t in imported.json()["toolboxes"]])
        yield console


def install_agents(http: httpx.Client, toolbox_ids: list[str]) -> None:
    """dtma_install.yml on every toolbox at once (one run each), all verified."""
    runs = []
    for toolbox_id in toolbox_ids:
        started = http.post(f"/api/v1/toolboxes/{toolbox_id}/dtma/install", params={"wait": False})
        assert started.status_code == 202, started.text
        runs.append(started.json()["run_id"])
    for run_id in runs:
        run = wait_for_run(http, run_id)
        assert run["status"] == "successful", run


def wait_for_run(http: httpx.Client, run_id: str, timeout: float = 600) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = http.get(f"/api/v1/runs/{run_id}").json()
        if run["status"] not in ("queued", "running"):
            return dict(run)
        time.sleep(0.5)
    raise AssertionError(f"run {run_id} did not end within {timeout} s")


@pytest.fixture(scope="session")
def toolboxes(console: Console) -> dict[str, dict[str, Any]]:
    """The imported toolboxes by droplet name."""
    with console.http() as http:
        return {t["name"]: t for t in http.get("/api/v1/toolboxes").json()}


def when(value: str) -> datetime:
    """A timestamp as the API writes it."""
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


# -- ground truth from the droplets ----------------------------------------------------------
def docker_on(container: str, *args: str, check: bool = True) -> str:
    done = subprocess.run(
        ["docker", "exec", container, *args], capture_output=True, text=True, timeout=120
    )
    if check and done.returncode != 0:
        raise AssertionError(f"docker exec {container} {' '.join(args)}: {done.stderr}")
    return done.stdout


def managed_containers(container: str) -> dict[str, str]:
    """{name: state} of the tool instances as the droplet's own Docker engine lists them."""
    listed = docker_on(
        container, "docker", "ps", "-a", "--filter", "label=dtma.managed=true",
        "--format", "{{.Names}}\t{{.State}}",
    )  # fmt: skip
    return dict(line.split("\t", 1) for line in listed.splitlines() if line)


def deploy_tool(http: httpx.Client, toolbox_id: str, name: str, image: str, **spec: Any) -> None:
    deployed = http.post(
        f"/api/v1/toolboxes/{toolbox_id}/tools", json={"name": name, "image": image, **spec}
    )
    assert deployed.status_code == 200, deployed.text


def remove_tool(http: httpx.Client, toolbox_id: str, name: str) -> None:
    removed = http.delete(f"/api/v1/toolboxes/{toolbox_id}/tools/{name}")
    assert removed.status_code == 200, removed.text


@pytest.fixture(scope="session")
def echo_everywhere(console: Console, toolboxes: dict[str, dict[str, Any]]) -> str:
    """An echo tool instance on every toolbox, so that syncs have something to compare."""
    with console.http() as http:
        runs = []
        for toolbox in toolboxes.values():
            started = http.post(
                f"/api/v1/toolboxes/{toolbox['id']}/tools",
                params={"wait": False},
                json={"name": "echo", "image": "dtma-tool-echo:1.0"},
            )
            assert started.status_code == 202, started.text
            runs.append(started.json()["run_id"])
        for run_id in runs:
            assert wait_for_run(http, run_id)["status"] == "successful"
    return "echo"


# -- without the sandbox: a migrated database on each engine ---------------------------------
@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    from tests.api.postgres import postgres_cluster

    with postgres_cluster() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def engine_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'console.db'}"
    from tests.api.postgres import create_database

    server = request.getfixturevalue("postgres_server")
    return create_database(server, f"m_{uuid.uuid4().hex[:16]}")


@pytest.fixture
def sqlite_context(tmp_path: Path) -> Iterator[Context]:
    """A migrated SQLite database and its context (no service running)."""
    context = Context.build(Settings(database_url=f"sqlite:///{tmp_path / 'console.db'}"))
    migrate.upgrade(context.engine)
    context.open_vault()
    yield context
    context.close()


def add_toolbox(sessions: sessionmaker[Session], name: str, owner_id: str | None = None) -> str:
    with session_scope(sessions) as session:
        toolbox = Toolbox(
            droplet_id=abs(hash(name)) % 10**9, name=name, address="127.0.0.1", owner_id=owner_id,
        )  # fmt: skip
        session_secrets().seal_into(toolbox, Toolbox.agent_token_ciphertext, "t" * 32)
        session.add(toolbox)
        session.flush()
        return toolbox.id
