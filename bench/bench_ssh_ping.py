"""Median latency of a raw `ssh root@droplet true` vs `ansible toolbox-1 -m ping`.

Both are measured side by side in one run on the sandbox, alternating, so the ratio is
meaningful even on a noisy shared machine. Brings the sandbox up if needed.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import time

from sandbox import fleet
from sandbox.config import PROJECT_ROOT, SandboxConfig

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "15"))


def _timed(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, env=env, cwd=PROJECT_ROOT)
    return time.perf_counter() - started


def main() -> None:
    config = SandboxConfig.from_env()
    sandbox = fleet.up(config, 3)
    droplet = sandbox.droplet("toolbox-1")
    env = {**os.environ, "ANSIBLE_CONFIG": str(PROJECT_ROOT / "ansible.cfg")}
    ssh = fleet.ssh_command(config, droplet.address, "true")
    ping = [
        str(PROJECT_ROOT / ".venv/bin/ansible"), droplet.name,
        "-i", str(sandbox.inventory), "-m", "ansible.builtin.ping",
    ]  # fmt: skip
    _timed(ssh, env), _timed(ping, env)  # warm caches and the ControlPersist master
    ssh_times, ping_times = [], []
    for _ in range(ROUNDS):
        ssh_times.append(_timed(ssh, env))
        ping_times.append(_timed(ping, env))
    ssh_median, ping_median = statistics.median(ssh_times), statistics.median(ping_times)
    print(f"rounds: {ROUNDS} (alternating) on {droplet.name} at {droplet.address}")
    print(f"ssh root@droplet true         median {ssh_median * 1000:8.1f} ms")
    print(f"ansible {droplet.name} -m ping  median {ping_median * 1000:8.1f} ms")
    print(f"ratio ansible-ping / ssh: {ping_median / ssh_median:.2f}x")


if __name__ == "__main__":
    main()
