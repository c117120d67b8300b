"""The distributed mode for real: redis-server and a throw-away PostgreSQL cluster started
by the test session (loopback only), the database migrated with `dtma-console db upgrade`,
two `dtma-console worker` processes and two `dtma-console serve` processes in celery mode,
all on one database and one broker, aimed at the sandbox fleet."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from sandbox.fleet import SandboxInfo
from tests.api.console import CLI, Console, console_env, wait_until
from tests.api.postgres import create_database, postgres_cluster

SLOT = int(os.environ.get("DTMA_TEST_SLOT", "0"))
PORT_BASE = 20000 + 1000 * SLOT + 900  # this slot's range: 20000+1000*S .. +999
REDIS_PORT, PG_PORT, API_PORTS = PORT_BASE, PORT_BASE + 1, (PORT_BASE + 2, PORT_BASE + 3)
LEASE_SECONDS = 6
TOOL = "dist"
TOOLBOXES = ("toolbox-1", "toolbox-2", "toolbox-3")


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = shutil.which("redis-server")
    assert server, "redis-server is missing: scripts/bootstrap.sh installs it"
    workdir = tmp_path_factory.mktemp("redis")
    process = subprocess.Popen(
        [server, "--bind", "127.0.0.1", "--port", str(REDIS_PORT), "--save", "",
         "--appendonly", "no", "--dir", str(workdir), "--protected-mode", "yes"],
        stdout=(workdir / "redis.log").open("wb"),
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    import redis

    client = redis.Redis(host="127.0.0.1", port=REDIS_PORT)
    try:
        wait_until(lambda: _pings(client), 20, "redis-server to answer")
        yield f"redis://127.0.0.1:{REDIS_PORT}/0"
    finally:
        client.close()
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)


def _pings(client: object) -> bool:
    import redis

    try:
        return bool(client.ping())  # type: ignore[attr-defined]
    except redis.RedisError:
        return False


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    with postgres_cluster(PG_PORT) as server:
        yield create_database(server, "dtma_distributed")


@dataclass
class Process:
    """One console or worker process, restartable, stopped by its PID."""

    name: str
    args: list[str]
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> None:
        self.process = subprocess.Popen(
            [str(CLI), *self.args],
            env=self.env,
            stdout=self.log_path.open("ab"),
            stderr=subprocess.STDOUT,
        )

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        self.process = None


@dataclass
class Cluster:
    apis: list[Console]
    workers: list[Process]
    env: dict[str, str]
    toolboxes: dict[str, dict[str, object]] = field(default_factory=dict)

    def worker_owned(self, owner: str | None) -> Process | None:
        for worker in self.workers:
            if (
                worker.process is not None
                and owner is not None
                and owner.endswith(f":{worker.pid}")
            ):
                return worker
        return None


def _worker_ready(worker: Process) -> bool:
    assert worker.process is not None
    if worker.process.poll() is not None:
        raise RuntimeError(f"{worker.name} exited: {worker.log_path.read_text()[-3000:]}")
    return "ready." in worker.log_path.read_text(errors="replace")


@pytest.fixture(scope="session")
def cluster(
    sandbox: SandboxInfo,
    redis_url: str,
    database_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Cluster]:
    workdir = tmp_path_factory.mktemp("distributed")
    env = {
        **console_env(sandbox, workdir, database_url, API_PORTS[0]),
        "DTMA_EXECUTOR": "celery",
        "DTMA_BROKER_URL": redis_url,
        "DTMA_RUN_LEASE_SECONDS": str(LEASE_SECONDS),
    }
    upgraded = subprocess.run(
        [str(CLI), "db", "upgrade"], env=env, capture_output=True, text=True, timeout=120
    )
    assert upgraded.returncode == 0, upgraded.stderr
    assert "migrated" in upgraded.stdout
    apis = [
        Console(env={**env, "DTMA_PORT": str(port)}, log_path=workdir / f"api-{i}.log")
        for i, port in enumerate(API_PORTS)
    ]
    created = apis[0].cli("token", "create", "--user", "root", "--admin")  # makes the master key
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip().splitlines()[-1]
    workers = [
        Process(f"worker-{i}", ["worker", "--concurrency", "2"], env, workdir / f"worker-{i}.log")
        for i in range(2)
    ]
    try:
        for worker in workers:
            worker.start()
        for api in apis:
            api.token = token
            api.start()
        for worker in workers:
            wait_until(lambda w=worker: _worker_ready(w), 60, f"{worker.name} to be ready")
        with apis[0].http() as http:
            synced = http.post("/api/v1/toolboxes/sync")
            assert synced.status_code == 200, synced.text
        found = Cluster(apis, workers, env)
        with apis[1].http() as http:
            found.toolboxes = {t["name"]: t for t in http.get("/api/v1/toolboxes").json()}
        yield found
    finally:
        for api in apis:
            api.stop()
        for worker in workers:
            worker.stop()


def wait_for_end(http: httpx.Client, run_id: str, timeout: float = 300) -> dict[str, object]:
    def ended() -> dict[str, object] | None:
        run: dict[str, object] = http.get(f"/api/v1/runs/{run_id}").json()
        return None if run["status"] in ("queued", "running") else run

    result: dict[str, object] = wait_until(ended, timeout, f"run {run_id} to end")
    return result


def ensure_running(worker: Process) -> None:
    if worker.process is None:
        worker.log_path.write_text("")
        worker.start()
        wait_until(lambda: _worker_ready(worker), 60, f"{worker.name} to be ready")


def _id(cluster: Cluster, name: str) -> str:
    return str(cluster.toolboxes[name]["id"])


@pytest.fixture(scope="session")
def deployed(cluster: Cluster) -> Iterator[list[str]]:
    """The tool deployed on every toolbox (three runs at once, through both consoles)."""
    started = []
    for index, name in enumerate(TOOLBOXES):
        with cluster.apis[index % 2].http() as http:
            response = http.post(
                f"/api/v1/toolboxes/{_id(cluster, name)}/tools",
                json={"name": TOOL, "image": "dtma-tool-echo:1.0"},
                params={"wait": False},
            )
            assert response.status_code == 202, response.text
            started.append(response.json()["run_id"])
    with cluster.apis[0].http() as http:
        for run_id in started:
            run = wait_for_end(http, run_id)
            assert run["success"] is True, run
    yield started
    with cluster.apis[0].http() as http:
        for name in TOOLBOXES:
            http.delete(f"/api/v1/toolboxes/{_id(cluster, name)}/tools/{TOOL}")
