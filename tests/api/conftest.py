"""Fixtures for the console API: databases on both engines, apps, users and tokens."""

from __future__ import annotations

import shutil
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.orm import Session

from api import migrate
from api.app import create_app
from api.context import Context
from api.db import make_engine, session_scope
from api.secret_box import SecretBox
from api.services import users
from api.settings import Settings
from sandbox.config import SandboxConfig
from sandbox.emulator import Emulator, _Handler
from sandbox.fleet import SandboxInfo
from tests.api.console import (
    Console,
    agent_token,
    file_sha256,
    new_console,
    operator_install,
    served_sha256,
    wait_until,
)
from tests.api.postgres import create_database, postgres_cluster
from tests.api.server import free_port, live_server

JWT_ISSUER = "https://project.example.test/auth/v1"
JWT_AUDIENCE = "authenticated"


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    with postgres_cluster() as url:
        yield url


@pytest.fixture(scope="session")
def migrated_templates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Migrated databases that each test copies (much faster than migrating each time)."""
    return {}


def _template(
    engine_name: str, templates: dict[str, str], request: pytest.FixtureRequest, tmp_root: Path
) -> str:
    if engine_name not in templates:
        if engine_name == "sqlite":
            url = f"sqlite:///{tmp_root / 'template.db'}"
        else:
            url = create_database(request.getfixturevalue("postgres_server"), "dtma_template")
        engine = make_engine(Settings(database_url=url))
        migrate.upgrade(engine)
        engine.dispose()
        templates[engine_name] = url
    return templates[engine_name]


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh database with no tables, on each engine."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'console.db'}"
    server = request.getfixturevalue("postgres_server")
    return create_database(server, f"t_{uuid.uuid4().hex[:16]}")


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    migrated_templates: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> str:
    """A fresh database at the newest schema, on each engine."""
    template = _template(request.param, migrated_templates, request, tmp_path_factory.getbasetemp())
    if request.param == "sqlite":
        target = tmp_path / "console.db"
        shutil.copyfile(template.removeprefix("sqlite:///"), target)
        return f"sqlite:///{target}"
    server = request.getfixturevalue("postgres_server")
    return create_database(server, f"t_{uuid.uuid4().hex[:16]}", template="dtma_template")


@pytest.fixture
def settings(database_url: str) -> Settings:
    """Everything these tests depend on is set here, whatever the shell exports."""
    return Settings(
        database_url=database_url,
        jwt_secret="test-jwt-secret-0123456789abcdef",
        jwt_issuer=JWT_ISSUER,
        jwt_audience=JWT_AUDIENCE,
        do_api_url="http://127.0.0.1:9/v2",  # nothing listens on the discard port
        do_api_token=None,
        ssh_key_file=None,
        known_hosts_file=None,
        monitor_interval=0,
    )


@pytest.fixture
def app(settings: Settings) -> FastAPI:
    return create_app(settings)


@pytest.fixture
def client(app: FastAPI) -> Iterator[httpx.Client]:
    """Real HTTP to the app served by uvicorn on a loopback port."""
    with live_server(app) as base_url, httpx.Client(base_url=base_url, timeout=30) as http:
        yield http


@pytest.fixture
def context(app: FastAPI, client: httpx.Client) -> Context:
    context: Context = app.state.context
    return context


@pytest.fixture
def secrets(context: Context) -> SecretBox:
    """Seals with the test app's own master keys (what it unseals with)."""
    return context.secrets


@pytest.fixture
def db(context: Context) -> Iterator[Session]:
    with session_scope(context.sessions) as session:
        yield session


def make_token(context: Context, name: str, *, admin: bool = False) -> tuple[str, str]:
    """(user id, token) for a new or existing user."""
    with session_scope(context.sessions) as session:
        user, token = users.create_token(session, name, admin=admin)
        return user.id, token


@pytest.fixture
def admin(context: Context) -> dict[str, str]:
    user_id, token = make_token(context, "root", admin=True)
    return {"id": user_id, "token": token, "auth": f"Bearer {token}"}


@pytest.fixture
def alice(context: Context) -> dict[str, str]:
    user_id, token = make_token(context, "alice")
    return {"id": user_id, "token": token, "auth": f"Bearer {token}"}


@pytest.fixture
def bob(context: Context) -> dict[str, str]:
    user_id, token = make_token(context, "bob")
    return {"id": user_id, "token": token, "auth": f"Bearer {token}"}


# -- the console against the sandbox fleet (tests marked `sandbox`) -------------------------
@pytest.fixture(scope="session")
def console(sandbox: SandboxInfo, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    """`dtma-console serve` on SQLite, toolboxes synced, an admin token, and the agent
    installed on every droplet with the console's own per-toolbox tokens."""
    workdir = tmp_path_factory.mktemp("console")
    served = new_console(sandbox, workdir, f"sqlite:///{workdir / 'console.db'}")
    created = served.cli("token", "create", "--user", "root", "--admin")
    assert created.returncode == 0, created.stderr
    served.token = created.stdout.strip().splitlines()[-1]
    synced = served.cli("sync")
    assert synced.returncode == 0, synced.stderr
    served.start()
    try:
        with served.http() as http:
            started = [
                http.post(f"/api/v1/toolboxes/{toolbox['id']}/dtma/install", params={"wait": False})
                for toolbox in http.get("/api/v1/toolboxes").json()
            ]
            for response in started:
                assert response.status_code == 202, response.text
            for response in started:
                run = wait_for_run(http, response.json()["run_id"])
                assert run["success"], run["error"]
        yield served
    finally:
        served.stop()


def wait_for_run(http: httpx.Client, run_id: str, timeout: float = 600) -> dict[str, Any]:
    def ended() -> dict[str, Any] | None:
        run: dict[str, Any] = http.get(f"/api/v1/runs/{run_id}").json()
        return None if run["status"] == "running" else run

    return cast(dict[str, Any], wait_until(ended, timeout, f"run {run_id} to end"))


@pytest.fixture(scope="session")
def toolboxes(console: Console) -> dict[str, dict[str, Any]]:
    """The console's toolboxes by name."""
    with console.http() as http:
        return {t["name"]: t for t in http.get("/api/v1/toolboxes").json()}


@dataclass(frozen=True)
class OperatorReinstall:
    """One operator's plain `dtma_install.yml` over every console-managed droplet, as the
    README has it, and what each droplet held just before and just after it: the agent's
    token, its certificate file, and the certificate port 30000 served after the run."""

    tokens_before: dict[str, str]
    tokens_after: dict[str, str]
    certs_before: dict[str, str]
    certs_after: dict[str, str]
    served_after: dict[str, str]


@pytest.fixture(scope="session")
def operator_reinstall(
    console: Console, sandbox: SandboxInfo, ansible_env: dict[str, str]
) -> OperatorReinstall:
    """Made once a session: what it leaves on the droplets (same tokens, same certificates)
    is asserted by each test that takes it (test_sandbox_agent_token.py, ..._agent_tls.py),
    so one run serves both (an install costs a playbook run of every role task)."""
    tokens = {d.name: agent_token(d.container) for d in sandbox.droplets}
    certs = {d.name: file_sha256(d) for d in sandbox.droplets}
    operator_install(sandbox, ansible_env)
    return OperatorReinstall(
        tokens_before=tokens,
        tokens_after={d.name: agent_token(d.container) for d in sandbox.droplets},
        certs_before=certs,
        certs_after={d.name: file_sha256(d) for d in sandbox.droplets},
        served_after={d.name: served_sha256(d) for d in sandbox.droplets},
    )


# -- the DigitalOcean API emulator, in process, with seeded droplets (no containers) ------
@dataclass
class SeededEmulator:
    url: str
    token: str
    emulator: Emulator

    def seed(self, droplets: list[dict[str, Any]]) -> None:
        with self.emulator.state.lock:
            self.emulator.state.droplets = {d["id"]: d for d in droplets}
            self.emulator.state.save()


def seeded_droplet(index: int, tags: list[str]) -> dict[str, Any]:
    return {
        "id": 500000000 + index,
        "name": f"toolbox-{index}",
        "status": "active",
        "tags": tags,
        "region": {"slug": "fra1", "name": "Frankfurt 1"},
        "networks": {"v4": [{"ip_address": f"127.0.99.{index % 250 + 1}", "type": "public"}]},
        "_index": index,
    }


@pytest.fixture
def do_emulator(tmp_path: Path) -> Iterator[SeededEmulator]:
    port = free_port()
    config = SandboxConfig(state_dir=tmp_path, net="127.0.99", api_port=port, prefix="unit-")
    emulator = Emulator(config, "emulator-token-0123456789", image=None)
    handler = type("Handler", (_Handler,), {"emulator": emulator})
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield SeededEmulator(f"http://127.0.0.1:{port}/v2", emulator.token, emulator)
    server.shutdown()
    server.server_close()
