"""Benchmark: the DTMA agent's GET /status against collecting the same facts over SSH, and
the agent's memory, an older release beside the current one.

Both sides run in the same process, one after the other, against the same sandbox droplet:

- memory (with --old-ref): the agent of that git ref (e.g. the last 1.2.0 commit) and the
  current source's, each installed by `dtma_redeploy.yml` on the same droplet in alternating
  rounds: VmRSS and RssAnon of the service's main process (/proc/<MainPID>/status) once
  /health answers plus 2 s (idle), after 200 authenticated reads (/status, /system,
  /containers, /health), and the unit's cgroup MemoryCurrent; the load average beside them;
- agent: GET https://<droplet>:30000/status with the toolbox's token and pinned certificate,
  keep-alive client (what the console's read path does), sequential; then with 4 clients;
- ssh: `systemctl is-active dtma; docker ps -a` over SSH, once with a new connection per
  probe (the fallback probe as it runs cold) and once over a persistent ControlMaster
  connection (its best case).

Prints p50/p99 latency and requests/s per side and the ratios. Loops are bounded by count and
by a time budget; traffic goes only to the sandbox's loopback addresses.

    .venv/bin/python bench/bench_agent.py [--droplet toolbox-1] [--requests 500] \
        [--old-ref <git ref of an older agent>] [--rounds 2]

(with the DTMA_SANDBOX_* variables of the sandbox to use).
"""

from __future__ import annotations

import argparse
import json
import os
import ssl
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
READ_CERT = ["cat", "/etc/dtma/tls/agent.crt"]
LOADED_READS = ["/status", "/system", "/containers", "/health"]


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
    name: str,
    url: str,
    token: str,
    verify: ssl.SSLContext,
    workers: int,
    per_worker: int,
    budget_s: float,
) -> Measure:
    latencies: list[float] = []
    lock = threading.Lock()
    deadline = time.perf_counter() + budget_s

    def work() -> None:
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(headers=headers, timeout=10, verify=verify) as client:
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


def playbook(info: fleet.SandboxInfo, name: str, droplet: str, *extra: str) -> None:
    done = subprocess.run(
        [
            str(PROJECT_ROOT / ".venv" / "bin" / "ansible-playbook"),
            "-i",
            str(info.inventory),
            str(PROJECT_ROOT / "playbooks" / name),
            "-l",
            droplet,
            *extra,
        ],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if done.returncode != 0:
        sys.exit(f"{name} on {droplet} failed:\n{done.stdout[-2000:]}")


def on_droplet(container: str, *command: str) -> str:
    read = subprocess.run(
        ["docker", "exec", container, *command], capture_output=True, text=True, check=True
    )
    return read.stdout.strip()


def ensure_agent(info: fleet.SandboxInfo, droplet: str) -> tuple[str, ssl.SSLContext]:
    """Install the agent on the droplet (idempotent), as an operator would; its access."""
    playbook(info, "dtma_install.yml", droplet)
    return agent_access(info, droplet)


def agent_access(info: fleet.SandboxInfo, droplet: str) -> tuple[str, ssl.SSLContext]:
    """The agent's token and a TLS context pinned to its certificate (redeploys keep both)."""
    container = next(d.container for d in info.droplets if d.name == droplet)
    return on_droplet(container, *READ_TOKEN), pinned(on_droplet(container, *READ_CERT))


def pinned(pem: str) -> ssl.SSLContext:
    context = ssl.create_default_context(cadata=pem)
    context.check_hostname = False  # the certificate names the address the droplet sees
    return context


@dataclass
class Memory:
    release: str
    idle_rss_mb: float
    idle_anon_mb: float
    loaded_rss_mb: float
    loaded_anon_mb: float
    cgroup_mb: float
    load_1m: float


def build_old_release(ref: str, scratch: Path) -> tuple[str, Path]:
    """The wheelhouse of the agent at git ref `ref` (its agent/ and uv.lock), and its version."""
    source = scratch / "old-source"
    source.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(PROJECT_ROOT), "archive", ref, "agent", "uv.lock"],
        capture_output=True,
        check=True,
    )
    subprocess.run(["tar", "-x", "-C", str(source)], input=archive.stdout, check=True)
    root = scratch / "old-wheelhouse"
    built = subprocess.run(
        [
            sys.executable,
            str(PROJECT_ROOT / "agent" / "build_wheelhouse.py"),
            "--source",
            str(source / "agent"),
            "--lock",
            str(source / "uv.lock"),
            "--out",
            str(root),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return Path(built.stdout.strip()).name, root


def agent_memory(container: str) -> tuple[float, float]:
    pid = on_droplet(container, "systemctl", "show", "-p", "MainPID", "--value", "dtma.service")
    status = on_droplet(container, "cat", f"/proc/{pid}/status")
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return tuple(round(int(fields[k].split()[0]) / 1024, 1) for k in ("VmRSS", "RssAnon"))  # type: ignore[return-value]


def measure_memory(
    release: str, container: str, base: str, token: str, verify: ssl.SSLContext
) -> Memory:
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=base, headers=headers, timeout=10, verify=verify) as client:
        client.get("/health").raise_for_status()
        time.sleep(2)
        idle = agent_memory(container)
        for index in range(200):
            client.get(LOADED_READS[index % len(LOADED_READS)]).raise_for_status()
    loaded = agent_memory(container)
    cgroup = on_droplet(
        container, "systemctl", "show", "-p", "MemoryCurrent", "--value", "dtma.service"
    )
    return Memory(
        release=release,
        idle_rss_mb=idle[0],
        idle_anon_mb=idle[1],
        loaded_rss_mb=loaded[0],
        loaded_anon_mb=loaded[1],
        cgroup_mb=round(int(cgroup) / 1024 / 1024, 1) if cgroup.isdigit() else -1.0,
        load_1m=round(os.getloadavg()[0], 1),
    )


def compare_memory(
    info: fleet.SandboxInfo, droplet: fleet.Droplet, old_ref: str, rounds: int, scratch: Path
) -> list[Memory]:
    """Old and current release on the same droplet, alternating, each freshly redeployed."""
    old_version, old_root = build_old_release(old_ref, scratch)
    base = f"https://{droplet.address}:{AGENT_PORT}"
    measured = []
    for _ in range(rounds):
        old = ["-e", f"dtma_version={old_version}", "-e", f"dtma_wheelhouse_root={old_root}"]
        for version, extra in ((old_version, old), (None, [])):
            playbook(info, "dtma_redeploy.yml", droplet.name, *extra)
            token, verify = agent_access(info, droplet.name)
            served = httpx.get(f"{base}/health", verify=verify, timeout=10).json()["version"]
            measured.append(measure_memory(served, droplet.container, base, token, verify))
            assert version is None or served == version, (served, version)
    return measured


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
    parser.add_argument("--old-ref", help="git ref of an older agent to compare memory with")
    parser.add_argument("--rounds", type=int, default=2, help="alternating memory rounds")
    args = parser.parse_args()

    info = fleet.info(SandboxConfig.from_env())
    droplet = info.droplet(args.droplet)
    with tempfile.TemporaryDirectory(prefix="dtma-bench-") as scratch:
        memory = []
        token, verify = ensure_agent(info, droplet.name)
        if args.old_ref:  # ends on the current release, freshly redeployed
            memory = compare_memory(info, droplet, args.old_ref, args.rounds, Path(scratch))
        url = f"https://{droplet.address}:{AGENT_PORT}/status"
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(headers=headers, timeout=10, verify=verify) as client:
            client.get(url).raise_for_status()  # warm the connection and the agent

            def read_status() -> None:
                client.get(url).raise_for_status()

            agent = measure("agent GET /status", read_status, args.requests, TIME_BUDGET_S)
        agent_parallel = measure_concurrent(
            "agent GET /status x4", url, token, verify, 4, args.requests // 4, TIME_BUDGET_S
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
    if len({m.release for m in memory}) == 2:
        old, new = memory[0].release, memory[1].release
        idle = {m.release: m.idle_rss_mb for m in memory}  # the last round of each
        ratios[f"idle_rss {new} / {old}"] = round(idle[new] / idle[old], 2)
    if args.json:
        report = {
            "results": [asdict(r) for r in results],
            "memory": [asdict(m) for m in memory],
            "ratios": ratios,
        }
        print(json.dumps(report, indent=2))
        return 0
    print(f"droplet {droplet.name} at {droplet.address}")
    if memory:
        print(f"{'memory (MB)':20} {'idle RSS':>9} {'idle anon':>10} {'200 reads':>10} "
              f"{'anon':>6} {'cgroup':>7} {'load 1m':>8}")  # fmt: skip
        for m in memory:
            print(f"{m.release:20} {m.idle_rss_mb:>9} {m.idle_anon_mb:>10} {m.loaded_rss_mb:>10} "
                  f"{m.loaded_anon_mb:>6} {m.cgroup_mb:>7} {m.load_1m:>8}")  # fmt: skip
    print(f"{'':28} {'samples':>8} {'p50 ms':>9} {'p99 ms':>9} {'per s':>9}")
    for r in results:
        print(f"{r.name:28} {r.samples:>8} {r.p50_ms:>9} {r.p99_ms:>9} {r.per_second:>9}")
    for name, value in ratios.items():
        print(f"{name}: {value}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
