"""Benchmark: the DTMA agent's GET /status against collecting the same facts over SSH.

Both sides run in the same process, one after the other, against the same sandbox droplet:

- agent: GET http://<droplet>:30000/status with the toolbox's token, keep-alive client
  (what the console's read path does), sequential; then the same with 4 concurrent clients;
- ssh: `systemctl is-active dtma; docker ps -a` over SSH, once with a new connection per
  probe (the fallback probe as it runs cold) and once over a persistent ControlMaster
  connection (its best case).

Prints p50/p99 latency and requests/s per side and the ratios. Loops are bounded by count and
by a time budget; traffic goes only to the sandbox's loopback addresses.

    .venv/bin/python bench/bench_agent.py [--droplet toolbox-1] [--requests 500]

(with the DTMA_SANDBOX_* variables of the sandbox to use).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

from sandbox import fleet
from sandbox.config import PROJECT_ROOT, SandboxConfig

AGENT_PORT = 30000
SSH_PROBE = "systemctl is-active dtma.service; docker ps -a --format '{{.Names}} {{.State}}'"
TIME_BUDGET_S = 60.0
# Where the agent's token lives on the droplet (the dtma role keeps it there).
READ_TOKEN = ["sed", "-n", "s/^DTMA_AGENT_TOKEN=//p", "/etc/dtma/dtma.env"]


@dataclass
class Measure:
    name: str
    samples: int
    p50_ms: float
    p99_ms: float
    per_second: float


def measure(name: str, call: Callable[[], None], count: int, budget_s: float) -> Measure:
    latencies: list[float] = []
    started = time.perf_counter()
    for _ in range(count):
        begin = time.perf_counter()
        call()
        latencies.append(time.perf_counter() - begin)
        if time.perf_counter() - started > budget_s:
            break
    elapsed = time.perf_counter() - started
    return summarize(name, latencies, elapsed)


def summarize(name: str, latencies: list[float], elapsed: float) -> Measure:
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return Measure(
        name=name,
        samples=len(ordered),
        p50_ms=round(statistics.median(ordered) * 1000, 2),
        p99_ms=round(p99 * 1000, 2),
        per_second=round(len(ordered) / elapsed, 1),
    )


def measure_concurrent(
    name: str, url: str, token: str, workers: int, per_worker: int, budget_s: float
) -> Measure:
    latencies: list[float] = []
    lock = threading.Lock()
    deadline = time.perf_counter() + budget_s

    def work() -> None:
        with httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=10) as client:
            for _ in range(per_worker):
                begin = time.perf_counter()
                client.get(url).raise_for_status()
                with lock:
                    latencies.append(time.perf_counter() - begin)
                if time.perf_counter() > deadline:
                    return

    started = time.perf_counter()
    threads = [threading.Thread(target=work) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return summarize(name, latencies, time.perf_counter() - started)


def ensure_agent(info: fleet.SandboxInfo, droplet: str) -> str:
    """Install the agent on the droplet (idempotent) and return its token, as an operator would."""
    done = subprocess.run(
        [
            str(PROJECT_ROOT / ".venv" / "bin" / "ansible-playbook"),
            "-i",
            str(info.inventory),
            str(PROJECT_ROOT / "playbooks" / "dtma_install.yml"),
            "-l",
            droplet,
        ],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if done.returncode != 0:
        sys.exit(f"installing the agent on {droplet} failed:\n{done.stdout[-2000:]}")
    container = next(d.container for d in info.droplets if d.name == droplet)
    read = subprocess.run(
        ["docker", "exec", container, *READ_TOKEN], capture_output=True, text=True, check=True
    )
    return read.stdout.strip()


def ssh_command(info: fleet.SandboxInfo, address: str, control: Path | None) -> list[str]:
    command = [
        "ssh",
        "-i",
        str(info.operator_key),
        "-o",
        f"UserKnownHostsFile={info.known_hosts}",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        "BatchMode=yes",
    ]
    if control is not None:
        command += ["-o", "ControlMaster=auto", "-o", f"ControlPath={control}"]
        command += ["-o", "ControlPersist=60"]
    return [*command, f"root@{address}", SSH_PROBE]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--droplet", default="toolbox-1")
    parser.add_argument("--requests", type=int, default=500, help="agent requests (sequential)")
    parser.add_argument("--ssh-probes", type=int, default=20, help="SSH probes per variant")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()

    info = fleet.info(SandboxConfig.from_env())
    droplet = info.droplet(args.droplet)
    with tempfile.TemporaryDirectory(prefix="dtma-bench-") as scratch:
        token = ensure_agent(info, droplet.name)
        url = f"http://{droplet.address}:{AGENT_PORT}/status"
        with httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=10) as client:
            client.get(url).raise_for_status()  # warm the connection and the agent

            def read_status() -> None:
                client.get(url).raise_for_status()

            agent = measure("agent GET /status", read_status, args.requests, TIME_BUDGET_S)
        agent_parallel = measure_concurrent(
            "agent GET /status x4", url, token, 4, args.requests // 4, TIME_BUDGET_S
        )

        def probe(control: Path | None) -> Callable[[], None]:
            command = ssh_command(info, droplet.address, control)
            return lambda: subprocess.run(command, capture_output=True, check=True, timeout=30)

        ssh_cold = measure("ssh probe, new connection", probe(None), args.ssh_probes, TIME_BUDGET_S)
        control = Path(scratch) / "cm.sock"
        probe(control)()  # open the master connection
        ssh_warm = measure(
            "ssh probe, ControlMaster", probe(control), args.ssh_probes, TIME_BUDGET_S
        )
        subprocess.run(
            ["ssh", "-o", f"ControlPath={control}", "-O", "exit", f"root@{droplet.address}"],
            capture_output=True,
        )

    results = [agent, agent_parallel, ssh_cold, ssh_warm]
    ratios = {
        "ssh_cold_p50 / agent_p50": round(ssh_cold.p50_ms / agent.p50_ms, 1),
        "ssh_controlmaster_p50 / agent_p50": round(ssh_warm.p50_ms / agent.p50_ms, 1),
        "agent_req_s / ssh_cold_req_s": round(agent.per_second / ssh_cold.per_second, 1),
    }
    if args.json:
        print(json.dumps({"results": [asdict(r) for r in results], "ratios": ratios}, indent=2))
        return 0
    print(f"droplet {droplet.name} at {droplet.address}")
    print(f"{'':28} {'samples':>8} {'p50 ms':>9} {'p99 ms':>9} {'per s':>9}")
    for r in results:
        print(f"{r.name:28} {r.samples:>8} {r.p50_ms:>9} {r.p99_ms:>9} {r.per_second:>9}")
    for name, value in ratios.items():
        print(f"{name}: {value}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
