"""Where ansible-playbook's time goes before its first task, and the task results per action.

Part 1, side by side (alternating, BENCH_ROUNDS rounds, default 5, medians):
  - interpreter start (`python -c pass`) and Ansible's imports (`import ansible.cli.playbook`);
  - the DigitalOcean inventory: `ansible-inventory --list` listing the emulator live, and from
    the console's cache (runner/inventory.py's derived copy, which lists nothing);
  - `playbooks/tool_restart.yml` on toolbox-1 through ansible-playbook, timed by a bench-only
    callback (bench/callback_plugins/dtma_timeline.py): process start -> playbook loaded
    (imports, CLI, inventory, playbook and role parsing), -> first task, the argument-spec
    validation task, and -> end; each with every bundled collection on the path ("as is") and
    with only the collections the roles use ("lean", ANSIBLE_COLLECTIONS_PATH).
Part 2: task results (DESIGN.md) of each tool action and of dtma_restart/status through the
runner, as the console runs them.

    .venv/bin/python bench/bench_runner_startup.py        (BENCH_ROUNDS, default 5)
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from runner import RunEvent, RunRequest, run_playbook
from runner.inventory import InventoryCache
from sandbox import fleet
from sandbox.config import PROJECT_ROOT, SandboxConfig

ROUNDS = max(1, min(int(os.environ.get("BENCH_ROUNDS", "5")), 50))
BIN = Path(sys.executable).parent
COLLECTIONS = PROJECT_ROOT / ".venv/lib/python3.11/site-packages/ansible_collections"
# What roles/, playbooks/ and inventory/ use (tests read ansible.posix.json too).
USED = ("community/docker", "community/general", "community/digitalocean", "ansible/posix")
TASK_RESULTS = {"task_ok", "task_changed", "task_failed", "task_skipped", "task_unreachable"}
INSTANCE = "bench-startup"


def _lean_collections(scratch: Path) -> Path:
    root = scratch / "collections"
    for name in USED:
        link = root / "ansible_collections" / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(COLLECTIONS / name)
    return root


def _wall(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=PROJECT_ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"{command[:3]} failed: {done.stderr[-1500:]}")
    return time.perf_counter() - started


def _timeline(command: list[str], env: dict[str, str], scratch: Path) -> dict[str, float]:
    marks_file = scratch / "timeline.json"
    _wall(command, {**env, "DTMA_TIMELINE": str(marks_file)})
    marks = json.loads(marks_file.read_text())
    start = marks["process"]
    return {
        "to playbook loaded": marks["playbook"] - start,
        "to first task": marks["first_task"] - start,
        "argument-spec task": marks["first_role_task"] - marks["first_task"],
        "whole run": marks["end"] - start,
    }


def _task_results(request: RunRequest) -> tuple[int, bool]:
    events: list[RunEvent] = []
    result = run_playbook(request, events.append)
    return sum(event.type in TASK_RESULTS for event in events), result.success


def main() -> None:
    config = SandboxConfig.from_env()
    sandbox = fleet.up(config, 1)
    host = "toolbox-1"
    base_env = {**os.environ, "ANSIBLE_CONFIG": str(PROJECT_ROOT / "ansible.cfg")}
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        lean = {"ANSIBLE_COLLECTIONS_PATH": str(_lean_collections(scratch)),
                "ANSIBLE_COLLECTIONS_SCAN_SYS_PATH": "False"}  # fmt: skip
        timeline_env = {
            **base_env,
            "ANSIBLE_CALLBACK_PLUGINS": str(PROJECT_ROOT / "bench" / "callback_plugins"),
            "ANSIBLE_CALLBACKS_ENABLED": "dtma_timeline",
        }
        cached = InventoryCache(sandbox.inventory, scratch / "cache", PROJECT_ROOT / "ansible.cfg")
        cached.refresh({})
        deploy = [str(BIN / "ansible-playbook"), "-i", str(sandbox.inventory), "-l", host,
                  "playbooks/tool_deploy.yml", "-e", f"tool_instance_name={INSTANCE}",
                  "-e", "tool_instance_image=dtma-tool-echo:1.0"]  # fmt: skip
        _wall(deploy, base_env)
        restart = [str(BIN / "ansible-playbook"), "-i", str(sandbox.inventory), "-l", host,
                   "playbooks/tool_restart.yml",
                   "-e", f"tool_instance_name={INSTANCE}"]  # fmt: skip
        walls: dict[str, Callable[[], float]] = {
            "python -c pass": lambda: _wall([sys.executable, "-c", "pass"], base_env),
            "import ansible.cli.playbook": lambda: _wall(
                [sys.executable, "-c", "import ansible.cli.playbook"], base_env
            ),
            "ansible-inventory, DO live": lambda: _wall(
                [str(BIN / "ansible-inventory"), "-i", str(sandbox.inventory), "--list"], base_env
            ),
            "ansible-inventory, console cache": lambda: _wall(
                [str(BIN / "ansible-inventory"), "-i", str(cached.inventory), "--list"], base_env
            ),
        }
        wall_times: dict[str, list[float]] = {name: [] for name in walls}
        phases: dict[str, dict[str, list[float]]] = {"as is": {}, "lean": {}}
        for _ in range(ROUNDS):
            for name, measure in walls.items():
                wall_times[name].append(measure())
            for variant, extra in (("as is", {}), ("lean", lean)):
                marks = _timeline(restart, {**timeline_env, **extra}, scratch)
                for phase, seconds in marks.items():
                    phases[variant].setdefault(phase, []).append(seconds)

        counts = {}
        request = {"inventory": sandbox.inventory, "timeout": 300}
        for playbook, extravars in (
            ("tool_restart.yml", {"tool_instance_name": INSTANCE}),
            ("tool_stop.yml", {"tool_instance_name": INSTANCE}),
            ("tool_start.yml", {"tool_instance_name": INSTANCE}),
            ("tool_logs.yml", {"tool_instance_name": INSTANCE}),
            ("tool_list.yml", {}),
            ("tool_remove.yml", {"tool_instance_name": INSTANCE}),
        ):
            counts[playbook] = _task_results(
                RunRequest(playbook=playbook, hosts=[host], extravars=extravars, **request)
            )
        for playbook in ("dtma_status.yml", "dtma_restart.yml"):
            counts[playbook] = _task_results(RunRequest(playbook=playbook, hosts=[host], **request))

    load = os.getloadavg()
    print(f"rounds: {ROUNDS} (alternating); load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    for name, times in wall_times.items():
        print(f"{name:40s} median {statistics.median(times) * 1000:8.0f} ms")
    header = f"{'tool_restart.yml via ansible-playbook':40s} {'as is':>10s} {'lean':>10s}"
    print(f"{header} {'lean/as is':>11s}")
    for phase in phases["as is"]:
        base = statistics.median(phases["as is"][phase])
        thin = statistics.median(phases["lean"][phase])
        print(f"  {phase:38s} {base * 1000:8.0f} ms {thin * 1000:7.0f} ms {thin / base:10.2f}x")
    print("task results through the runner (ok, changed, failed, skipped, unreachable):")
    for playbook, (count, success) in counts.items():
        print(f"  {playbook:24s} {count:3d}{'' if success else '  (run failed!)'}")


if __name__ == "__main__":
    main()
