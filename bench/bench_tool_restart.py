"""Median latency of restarting a tool instance: `playbooks/tool_restart.yml` through
`ansible-playbook` vs a raw `ssh root@droplet docker restart <container>`.

Measured side by side in one run on the sandbox, alternating, so the ratio holds on a noisy
shared machine. A third column, raw restart plus a `docker inspect` in the same SSH call, is
the cheapest honest equivalent of what the playbook does (validate, find, restart, read back,
verify StartedAt moved, publish). Every round checks from outside the droplet that the
container's StartedAt really moved. Brings the sandbox up if needed; stays on loopback.

    .venv/bin/python bench/bench_tool_restart.py        (BENCH_ROUNDS, default 10)
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from sandbox import fleet
from sandbox.config import PROJECT_ROOT, SandboxConfig

ROUNDS = max(1, min(int(os.environ.get("BENCH_ROUNDS", "10")), 100))
INSTANCE = "bench-echo"
STEP_TIMEOUT = 120


def _run(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(
        command, capture_output=True, text=True, env=env, cwd=PROJECT_ROOT, timeout=STEP_TIMEOUT
    )
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{command[0]} failed ({done.returncode}): {done.stdout[-2000:]}")
    return elapsed


def _started_at(container: str) -> str:
    inspected = subprocess.run(
        ["docker", "exec", container, "docker", "inspect", "-f", "{{.State.StartedAt}}", INSTANCE],
        capture_output=True, text=True, check=True, timeout=STEP_TIMEOUT,
    )  # fmt: skip
    return inspected.stdout.strip()


def _verified(container: str, action: Callable[[], float]) -> float:
    """Time `action` and check from outside the droplet that the instance really restarted."""
    before = _started_at(container)
    elapsed = action()
    if _started_at(container) == before:
        raise RuntimeError(f"{INSTANCE} did not restart: StartedAt is still {before}")
    return elapsed


def main() -> None:
    config = SandboxConfig.from_env()
    sandbox = fleet.up(config, 3)
    droplet = sandbox.droplet("toolbox-1")
    env = {**os.environ, "ANSIBLE_CONFIG": str(PROJECT_ROOT / "ansible.cfg")}
    playbook = str(PROJECT_ROOT / ".venv/bin/ansible-playbook")
    inventory = ["-i", str(sandbox.inventory), "-l", droplet.name]

    with tempfile.TemporaryDirectory() as scratch:
        spec = Path(scratch) / "deploy.json"
        spec.write_text(
            json.dumps(
                {"tool_instance_name": INSTANCE, "tool_instance_image": "dtma-tool-echo:1.0"}
            )
        )
        _run([playbook, *inventory, "playbooks/tool_deploy.yml", "-e", f"@{spec}"], env)

    restart_playbook = [
        playbook, *inventory, "playbooks/tool_restart.yml", "-e", f"tool_instance_name={INSTANCE}",
    ]  # fmt: skip
    raw = fleet.ssh_command(config, droplet.address, "docker", "restart", INSTANCE)
    read_back = f"docker inspect -f '{{{{.State.StartedAt}}}}' {INSTANCE}"
    raw_inspect = fleet.ssh_command(
        config, droplet.address, f"docker restart {INSTANCE} >/dev/null && {read_back}"
    )
    columns: dict[str, list[float]] = {"playbook": [], "raw": [], "raw+inspect": []}
    commands = {"playbook": restart_playbook, "raw": raw, "raw+inspect": raw_inspect}
    try:
        for command in commands.values():  # warm caches and the ControlPersist master
            _verified(droplet.container, lambda command=command: _run(command, env))
        for _ in range(ROUNDS):
            for name, command in commands.items():
                columns[name].append(
                    _verified(droplet.container, lambda command=command: _run(command, env))
                )
    finally:
        subprocess.run(
            ["docker", "exec", droplet.container, "docker", "rm", "-f", INSTANCE],
            capture_output=True,
        )

    medians = {name: statistics.median(times) for name, times in columns.items()}
    print(f"rounds: {ROUNDS} (alternating, each restart verified) on {droplet.name}")
    print(f"tool_restart.yml via ansible-playbook   median {medians['playbook'] * 1000:8.1f} ms")
    print(f"ssh docker restart                      median {medians['raw'] * 1000:8.1f} ms")
    print(f"ssh docker restart + docker inspect     median {medians['raw+inspect'] * 1000:8.1f} ms")
    print(f"ratio playbook / raw ssh restart: {medians['playbook'] / medians['raw']:.2f}x")


if __name__ == "__main__":
    main()
