"""Runs past one machine: tool restarts per minute with 1 vs 2 Celery workers, and event
lag (the worker's event time -> an SSE client of the other console) in celery and local
mode, side by side in one run.

On the sandbox (3 toolboxes): redis-server and a throw-away PostgreSQL cluster on
loopback, the database migrated with `dtma-console db upgrade`, two consoles in celery
mode, an echo tool deployed on every toolbox. Then BENCH_RESTARTS (default 30) tool
restarts spread over the toolboxes (one at a time per toolbox: the lock) with 1 worker,
then with 2 (each `--concurrency 1`), each run's events followed over SSE from the console
that did not start it; then the same restarts on a local-mode console (SQLite) for its
event lag. Printed: runs/min per worker count and their ratio; lag p50/p95 per mode.

    .venv/bin/python bench/bench_distributed.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from api.vault.crypto import generate_master_key
from api.vault.master import write_key_file
from sandbox import fleet
from sandbox.config import SandboxConfig
from tests.api.console import CLI, Console, console_env
from tests.api.postgres import create_database, postgres_cluster
from tests.distributed.conftest import Process

RESTARTS = max(3, min(int(os.environ.get("BENCH_RESTARTS", "30")), 300))
PORT_BASE = int(os.environ.get("BENCH_PORT_BASE", "20950"))  # + 0..5 on 127.0.0.1
TOOL = "bench-dist-echo"
TOOLBOXES = ("toolbox-1", "toolbox-2", "toolbox-3")


def _wait(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise RuntimeError(f"timed out waiting for {what}")


def _follow(http: httpx.Client, run_id: str) -> list[float]:
    """Seconds from each event's time (stamped where it happened) to its arrival here."""
    lags = []
    with http.stream("GET", f"/api/v1/runs/{run_id}/events") as response:
        for line in response.iter_lines():
            if line.startswith("data: ") and '"seq"' in line:
                event = json.loads(line.removeprefix("data: "))
                at = datetime.fromisoformat(event["at"]).timestamp()
                lags.append(time.time() - at)
            elif line.startswith("event: end"):
                break
    return lags


def _ended(http: httpx.Client, run_id: str) -> dict[str, Any] | None:
    run: dict[str, Any] = http.get(f"/api/v1/runs/{run_id}").json()
    return None if run["status"] in ("queued", "running") else run


def _restarts(
    starter: Console, follower: Console, ids: dict[str, str]
) -> tuple[float, list[float]]:
    """RESTARTS restarts over the toolboxes, one thread per toolbox; elapsed s and lags."""
    lags: list[float] = []
    failures: list[str] = []
    per_toolbox = [RESTARTS // 3 + (1 if i < RESTARTS % 3 else 0) for i in range(3)]

    def work(name: str, count: int) -> None:
        with starter.http() as start, follower.http() as follow:
            for _ in range(count):
                path = f"/api/v1/toolboxes/{ids[name]}/tools/{TOOL}/restart"
                started = start.post(path, params={"wait": False})
                if started.status_code != 202:
                    failures.append(started.text)
                    return
                run_id = started.json()["run_id"]
                lags.extend(_follow(follow, run_id))
                run = _wait(lambda r=run_id: _ended(start, r), 600, f"run {run_id}")
                if not run["success"]:
                    failures.append(str(run["error"]))

    threads = [
        threading.Thread(target=work, args=(n, c))
        for n, c in zip(TOOLBOXES, per_toolbox, strict=True)
    ]
    began = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - began
    if failures:
        raise RuntimeError(f"restarts failed: {failures[:3]}")
    return elapsed, lags


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    config = SandboxConfig.from_env()
    sandbox = fleet.up(config, 3)
    workdir = Path(tempfile.mkdtemp(prefix="bench-dist-"))
    # One master key for every console and worker, outside their data directory.
    key_file = Path(tempfile.mkdtemp(prefix="bench-dist-key-")) / "master.key"
    write_key_file(key_file, generate_master_key(), exclusive=True)
    redis_port, pg_port = PORT_BASE, PORT_BASE + 1
    redis = subprocess.Popen(
        ["redis-server", "--bind", "127.0.0.1", "--port", str(redis_port), "--save", "",
         "--appendonly", "no", "--dir", str(workdir)],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    results: dict[str, Any] = {}
    try:
        with postgres_cluster(pg_port) as server:
            database = create_database(server, "bench")
            env = {
                **console_env(sandbox, workdir, database, PORT_BASE + 2),
                "DTMA_MASTER_KEY_FILE": str(key_file),
                "DTMA_EXECUTOR": "celery",
                "DTMA_BROKER_URL": f"redis://127.0.0.1:{redis_port}/0",
            }
            subprocess.run([str(CLI), "db", "upgrade"], env=env, check=True, capture_output=True)
            apis = [
                Console({**env, "DTMA_PORT": str(PORT_BASE + 2 + i)}, workdir / f"api-{i}.log")
                for i in range(2)
            ]
            token = apis[0].cli("token", "create", "--user", "bench", "--admin").stdout.split()[-1]
            workers = [
                Process(f"w{i}", ["worker", "--concurrency", "1"], env, workdir / f"w{i}.log")
                for i in range(2)
            ]
            local = Console(
                {
                    **console_env(
                        sandbox,
                        workdir / "local",
                        f"sqlite:///{workdir / 'local.db'}",
                        PORT_BASE + 4,
                    ),
                    "DTMA_MASTER_KEY_FILE": str(key_file),
                },
                workdir / "local.log",
            )
            (workdir / "local").mkdir()
            try:
                for api in apis:
                    api.token = token
                    api.start()
                workers[0].start()
                with apis[0].http() as http:
                    http.post("/api/v1/toolboxes/sync").raise_for_status()
                    ids = {t["name"]: t["id"] for t in http.get("/api/v1/toolboxes").json()}
                    for name in TOOLBOXES:
                        http.post(
                            f"/api/v1/toolboxes/{ids[name]}/tools",
                            json={"name": TOOL, "image": "dtma-tool-echo:1.0"},
                        ).raise_for_status()
                for count in (1, 2):
                    if count == 2:
                        workers[1].start()
                        time.sleep(5)  # let it connect to the broker
                    elapsed, lags = _restarts(apis[0], apis[1], ids)
                    results[f"celery {count} worker(s)"] = (RESTARTS * 60 / elapsed, lags)
                local.token = local.cli(
                    "token", "create", "--user", "bench", "--admin"
                ).stdout.split()[-1]
                local.start()
                with local.http() as http:
                    http.post("/api/v1/toolboxes/sync").raise_for_status()
                    local_ids = {t["name"]: t["id"] for t in http.get("/api/v1/toolboxes").json()}
                elapsed, lags = _restarts(local, local, local_ids)
                results["local"] = (RESTARTS * 60 / elapsed, lags)
                with apis[0].http() as http:
                    for name in TOOLBOXES:
                        http.delete(f"/api/v1/toolboxes/{ids[name]}/tools/{TOOL}")
            finally:
                local.stop()
                for api in apis:
                    api.stop()
                for worker in workers:
                    worker.stop()
    finally:
        redis.terminate()
        redis.wait()

    print(f"{RESTARTS} tool restarts over {len(TOOLBOXES)} toolboxes")
    print(f"{'mode':<22} {'runs/min':>9} {'lag p50 ms':>11} {'lag p95 ms':>11} {'events':>7}")
    for mode, (rate, lags) in results.items():
        p50, p95 = _pct(lags, 0.5) * 1000, _pct(lags, 0.95) * 1000
        print(f"{mode:<22} {rate:>9.2f} {p50:>11.0f} {p95:>11.0f} {len(lags):>7}")
    one, two = results["celery 1 worker(s)"][0], results["celery 2 worker(s)"][0]
    print(f"2 workers / 1 worker: {two / one:.2f}x runs/min")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
