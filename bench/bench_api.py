"""The console's overhead: a tool restart through the HTTP API vs plain `ansible-playbook`
of the same playbook, and `GET .../dtma/status` latency and throughput.

Runs on the sandbox (toolbox-1): starts `dtma-console serve` on a temporary SQLite
database, syncs, installs the agent with the console's token and deploys an echo tool.

Part 1: BENCH_ROUNDS (default 5, at most 30) alternating rounds, after one warm-up each, of
`POST /api/v1/toolboxes/{id}/tools/{name}/restart` (waits for the verified result) and
`ansible-playbook playbooks/tool_restart.yml -l toolbox-1` with the sandbox inventory; each
restart is checked from outside (the container's StartedAt moved). Printed: medians and
api / ansible-playbook (goal <= 1.05).

Part 2: the agent's own `GET /status` (p50, p99), then BENCH_REQUESTS (default 300)
sequential `GET .../dtma/status` through the console (p50, p99), then the same number
spread over 8 and 32 concurrent clients (requests/s), twice: live (every read asks the
agent: DTMA_READ_FRESH_SECONDS=0) and fresh-cached (the console restarted with a 60 s
window: every read after the first reuses the last live answer, `cached: true`). Every
answer must come from the agent. Clients are http.client on kept-alive connections, each
concurrent one a process of its own: the benchmark's clients share the 2 cores with the
console, so their CPU is printed beside the console's (read from the console process's own
counters: unlike latency, it does not depend on what else the machine is doing). The
console runs as an operator runs it: `dtma-console serve`, default log level (one request
log line per request).

BENCH_PARTS=reads runs part 2 only.

    .venv/bin/python bench/bench_api.py
"""

from __future__ import annotations

import http.client
import json
import multiprocessing
import os
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import psutil
from bench_agent import AGENT_PORT, agent_access  # bench/ is on sys.path (run as a script)

from api.vault.crypto import generate_master_key
from api.vault.master import write_key_file
from sandbox import fleet
from sandbox.config import PROJECT_ROOT, SandboxConfig

ROUNDS = max(1, min(int(os.environ.get("BENCH_ROUNDS", "5")), 30))
PARTS = set(os.environ.get("BENCH_PARTS", "restart,reads").split(","))
REQUESTS = max(10, min(int(os.environ.get("BENCH_REQUESTS", "300")), 10_000))
CONCURRENCY = (8, 32)
INSTANCE = "bench-api-echo"
CLI = Path(sys.executable).parent / "dtma-console"
STEP_TIMEOUT = 600


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _console_env(sandbox: fleet.SandboxInfo, workdir: Path) -> dict[str, str]:
    key_file = workdir / "master.key"  # beside the data directory, not in it
    if not key_file.exists():
        write_key_file(key_file, generate_master_key(), exclusive=True)
    return {
        **os.environ,
        "DTMA_DATABASE_URL": f"sqlite:///{workdir / 'data' / 'console.db'}",
        "DTMA_PORT": str(_free_port()),
        "DTMA_DO_API_URL": sandbox.api_url,
        "DTMA_DO_API_TOKEN": sandbox.api_token,
        "DTMA_SSH_KEY_FILE": str(sandbox.operator_key),
        "DTMA_KNOWN_HOSTS_FILE": str(sandbox.known_hosts),
        "DTMA_INVENTORY": str(sandbox.inventory),
        "DTMA_MASTER_KEY_FILE": str(key_file),
        "DTMA_RUNS_DIR": str(workdir / "runs"),
        "DTMA_MONITOR_INTERVAL": "0",
        "DTMA_READ_FRESH_SECONDS": "0",
    }


def _cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [str(CLI), *args], env=env, capture_output=True, text=True, timeout=STEP_TIMEOUT
    )
    if done.returncode != 0:
        raise RuntimeError(f"dtma-console {' '.join(args)}: {done.stderr[-2000:]}")
    return done.stdout.strip()


def _serve(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [str(CLI), "serve"], env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{env['DTMA_PORT']}/healthz"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the console exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError("the console did not answer /healthz")


def _ok(response: httpx.Response) -> dict[str, Any]:
    if response.status_code != 200:
        raise RuntimeError(f"{response.request.url}: {response.status_code} {response.text[:2000]}")
    body: dict[str, Any] = response.json()
    return body


def _started_at(container: str) -> str:
    return subprocess.run(
        ["docker", "exec", container, "docker", "inspect", "-f", "{{.State.StartedAt}}", INSTANCE],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.strip()


def _timed_restart(container: str, restart: Callable[[], None]) -> float:
    before = _started_at(container)
    started = time.perf_counter()
    restart()
    elapsed = time.perf_counter() - started
    if _started_at(container) <= before:
        raise RuntimeError("the restart did not move the container's StartedAt")
    return elapsed


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def main() -> None:
    sandbox = fleet.up(SandboxConfig.from_env(), 1)
    droplet = sandbox.droplet("toolbox-1")
    with tempfile.TemporaryDirectory(prefix="dtma-bench-api-") as tmp:
        workdir = Path(tmp)
        env = _console_env(sandbox, workdir)
        token = _cli(env, "token", "create", "--user", "bench", "--admin").splitlines()[-1]
        _cli(env, "sync")
        process = _serve(env, workdir / "console.log")
        base = f"http://127.0.0.1:{env['DTMA_PORT']}"
        try:
            with httpx.Client(
                base_url=base, timeout=STEP_TIMEOUT, headers={"Authorization": f"Bearer {token}"}
            ) as http:
                listed = http.get("/api/v1/toolboxes").json()
                toolbox = next(t for t in listed if t["name"] == "toolbox-1")
                tools = f"/api/v1/toolboxes/{toolbox['id']}/tools"
                _ok(http.post(f"/api/v1/toolboxes/{toolbox['id']}/dtma/install"))
                if "restart" in PARTS:
                    _ok(http.post(tools, json={"name": INSTANCE, "image": "dtma-tool-echo:1.0"}))
                    try:
                        _restarts(http, tools, droplet.container, sandbox)
                    finally:
                        _ok(http.delete(f"{tools}/{INSTANCE}"))
                if "reads" in PARTS:
                    _agent_alone(sandbox, droplet)
                    port = int(env["DTMA_PORT"])
                    _status(port, token, toolbox["id"], psutil.Process(process.pid), "live")
                    _stop(process)
                    cached_env = {**env, "DTMA_READ_FRESH_SECONDS": "60"}
                    process = _serve(cached_env, workdir / "console.log")
                    server = psutil.Process(process.pid)
                    _status(port, token, toolbox["id"], server, "fresh-cached")
        finally:
            _stop(process)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)


def _restarts(http: httpx.Client, tools: str, container: str, sandbox: fleet.SandboxInfo) -> None:
    playbook_env = {**os.environ, "ANSIBLE_CONFIG": str(PROJECT_ROOT / "ansible.cfg")}
    command = [
        str(Path(sys.executable).parent / "ansible-playbook"),
        "-i",
        str(sandbox.inventory),
        str(PROJECT_ROOT / "playbooks" / "tool_restart.yml"),
        "-l",
        "toolbox-1",
        "-e",
        f"tool_instance_name={INSTANCE}",
    ]

    runner_seconds: list[float] = []

    def via_api() -> None:
        result = _ok(http.post(f"{tools}/{INSTANCE}/restart"))
        runner_seconds.append(result["duration_ms"] / 1000)

    def via_playbook() -> None:
        done = subprocess.run(
            command,
            env=playbook_env,
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=STEP_TIMEOUT,
        )
        if done.returncode != 0:
            raise RuntimeError(f"ansible-playbook failed: {done.stdout[-2000:]}")

    timings: dict[str, list[float]] = {"api": [], "ansible-playbook": []}
    ways = {"api": via_api, "ansible-playbook": via_playbook}
    for way in ways.values():  # warm-up: SSH control masters, caches
        _timed_restart(container, way)
    runner_seconds.clear()
    for _ in range(ROUNDS):
        for name, way in ways.items():
            timings[name].append(_timed_restart(container, way))
    api, playbook = (statistics.median(timings[n]) for n in ("api", "ansible-playbook"))
    api_layer = statistics.median(
        t - r for t, r in zip(timings["api"], runner_seconds, strict=True)
    )
    print(f"tool restart on toolbox-1, median of {ROUNDS} (each verified by StartedAt):")
    print(f"  api (POST .../tools/{INSTANCE}/restart)   {api:7.2f} s")
    print(f"  ansible-playbook tool_restart.yml       {playbook:7.2f} s")
    print(f"  ratio api / ansible-playbook            {api / playbook:7.3f}  (goal <= 1.05)")
    print(
        f"  of which outside the run (HTTP, DB, lock)  {api_layer:7.2f} s "
        "(request time - the run's own duration_ms)"
    )


class _Reader:
    """GET `path` again and again on one kept-alive connection with http.client: a client
    light enough that the console, not the client, is what the 2 cores are spent on."""

    def __init__(
        self, host: str, port: int, path: str, token: str, tls: ssl.SSLContext | None = None
    ) -> None:
        self.path, self.headers = path, {"Authorization": f"Bearer {token}"}
        self.connection: http.client.HTTPConnection = (
            http.client.HTTPSConnection(host, port, context=tls, timeout=30)
            if tls is not None
            else http.client.HTTPConnection(host, port, timeout=30)
        )

    def get(self) -> tuple[float, dict[str, Any]]:
        started = time.perf_counter()
        self.connection.request("GET", self.path, headers=self.headers)
        answer = self.connection.getresponse()
        body = answer.read()
        elapsed = time.perf_counter() - started
        if answer.status != 200:
            raise RuntimeError(f"{self.path}: {answer.status} {body[:2000]!r}")
        parsed: dict[str, Any] = json.loads(body)
        return elapsed, parsed


def _sequential(reader: _Reader, check: Callable[[dict[str, Any]], None]) -> list[float]:
    for _ in range(10):  # warm-up
        check(reader.get()[1])
    latencies = []
    for _ in range(REQUESTS):
        elapsed, body = reader.get()
        check(body)
        latencies.append(elapsed)
    return latencies


def _agent_alone(sandbox: fleet.SandboxInfo, droplet: fleet.Droplet) -> None:
    """The agent's own `GET /status`, asked directly (its token and pinned certificate read
    off the droplet, one kept-alive connection): what a live read through the console is
    compared with."""
    token, tls = agent_access(sandbox, droplet.name)
    reader = _Reader(droplet.address, AGENT_PORT, "/status", token, tls)
    latencies = _sequential(reader, lambda _body: None)
    p50, p99 = _percentile(latencies, 0.5), _percentile(latencies, 0.99)
    print(f"agent alone GET /status, {REQUESTS} sequential requests:")
    print(f"  p50 {p50 * 1000:7.1f} ms   p99 {p99 * 1000:7.1f} ms")


def _cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def _checker(mode: str) -> Callable[[dict[str, Any]], None]:
    cached = mode != "live"

    def check(body: dict[str, Any]) -> None:
        if body["source"] != "agent":
            raise RuntimeError(f"status came from {body['source']}: {body['errors']}")
        if body["cached"] is not cached:
            raise RuntimeError(f"a {mode} read answered cached={body['cached']}")

    return check


def _status(port: int, token: str, toolbox_id: str, server: psutil.Process, mode: str) -> None:
    path = f"/api/v1/toolboxes/{toolbox_id}/dtma/status"
    reader = _Reader("127.0.0.1", port, path, token)
    reader.get()  # the live answer the fresh-cached reads reuse
    cpu_before = _cpu_seconds(server)
    latencies = _sequential(reader, _checker(mode))
    cpu_per_request = (_cpu_seconds(server) - cpu_before) / (REQUESTS + 10)
    p50, p99 = _percentile(latencies, 0.5), _percentile(latencies, 0.99)
    print(f"GET .../dtma/status ({mode}), {REQUESTS} sequential requests:")
    print(
        f"  p50 {p50 * 1000:7.1f} ms   p99 {p99 * 1000:7.1f} ms   console CPU "
        f"{cpu_per_request * 1000:.1f} ms per request"
    )
    for clients in CONCURRENCY:
        cpu_before = _cpu_seconds(server)
        rate, count, client_cpu = _throughput(port, token, path, mode, clients)
        console = (_cpu_seconds(server) - cpu_before) / count
        print(
            f"  {rate:7.1f} requests/s with {clients} concurrent clients   CPU per request: "
            f"console {console * 1000:.1f} ms, this benchmark's clients "
            f"{client_cpu / count * 1000:.1f} ms"
        )


def _client(
    port: int,
    token: str,
    path: str,
    mode: str,
    count: int,
    ready: Any,
    out: multiprocessing.Queue[Any],
) -> None:
    """One concurrent client, in a process of its own (no GIL shared with the others); it
    starts reading when every client is up (`ready`, a barrier)."""
    try:
        reader, check = _Reader("127.0.0.1", port, path, token), _checker(mode)
        ready.wait(timeout=STEP_TIMEOUT)
        started = time.process_time()
        for _ in range(count):
            check(reader.get()[1])
        out.put(("ok", time.process_time() - started))
    except Exception as error:  # reported by the parent; a bench must not hide failures
        out.put(("error", repr(error)))


def _throughput(
    port: int, token: str, path: str, mode: str, clients: int
) -> tuple[float, int, float]:
    """Requests/s of `clients` processes reading at once, how many requests they made and
    the CPU seconds they spent."""
    per_client = max(1, REQUESTS // clients)
    out: multiprocessing.Queue[Any] = multiprocessing.Queue()
    ready = multiprocessing.Barrier(clients + 1)
    workers = [
        multiprocessing.Process(
            target=_client, args=(port, token, path, mode, per_client, ready, out)
        )
        for _ in range(clients)
    ]
    for worker in workers:
        worker.start()
    ready.wait(timeout=STEP_TIMEOUT)  # timed from when every client is up
    started = time.perf_counter()
    reports = [out.get(timeout=STEP_TIMEOUT) for _ in workers]
    elapsed = time.perf_counter() - started
    for worker in workers:
        worker.join()
    errors = [detail for outcome, detail in reports if outcome == "error"]
    if errors:
        raise RuntimeError(f"{len(errors)} concurrent client(s) failed: {errors[0]}")
    return per_client * clients / elapsed, per_client * clients, sum(d for _, d in reports)


if __name__ == "__main__":
    main()
