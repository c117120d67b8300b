"""runner/ overhead: `tool_restart.yml` through runner (sync) vs plain `ansible-playbook` vs a
raw `ssh docker restart`, and event normalisation throughput.

Part 1 (sandbox, toolbox-1): the three are run alternating, BENCH_ROUNDS rounds (default 7,
at most 50) after one warm-up each, and every restart is verified from outside the droplet
(the container's StartedAt moved). ansible-playbook uses the sandbox inventory as an operator
would; runner gets the request api/ builds: SSH key through ssh-agent, host keys pinned,
DigitalOcean token in the run's environment. Printed: medians, runner / ansible-playbook
(goal <= 1.05) and runner - ssh (goal < 1 s). With `--mitogen DIR` (a directory holding the
`mitogen` package, e.g. `uv pip install --target DIR mitogen`), a fourth column runs
ansible-playbook with the mitogen_linear strategy.

Part 2 (no sandbox): a synthetic run of 50 hosts x 20 tasks, built from the raw events of a
real recorded run (tests/runner/data/), normalised and folded into a ConsoleResult with a
Redactor holding a private key and a token; events per second, median of BENCH_NORM_ROUNDS
(default 10).

    .venv/bin/python bench/bench_runner.py [--normalise-only] [--mitogen DIR]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import resource
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from runner import RunRequest, run_playbook
from runner.events import EventNormaliser
from runner.redact import Redactor
from runner.result import ResultBuilder
from sandbox import fleet
from sandbox.config import PROJECT_ROOT, SandboxConfig

ROUNDS = max(1, min(int(os.environ.get("BENCH_ROUNDS", "7")), 50))
NORM_ROUNDS = max(1, min(int(os.environ.get("BENCH_NORM_ROUNDS", "10")), 100))
INSTANCE = "bench-runner-echo"
STEP_TIMEOUT = 180
RECORDED = PROJECT_ROOT / "tests" / "runner" / "data" / "probe_two_hosts.json"


# -- part 1: one restart, three ways ---------------------------------------------------------
def _command(command: list[str], env: dict[str, str]) -> Callable[[], None]:
    def run() -> None:
        done = subprocess.run(
            command, capture_output=True, text=True, env=env, cwd=PROJECT_ROOT,
            timeout=STEP_TIMEOUT,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"{command[0]} failed ({done.returncode}): {done.stdout[-2000:]}")

    return run


def _runner(request: RunRequest) -> Callable[[], None]:
    def run() -> None:
        result = run_playbook(request)
        if not result.success:
            raise RuntimeError(f"runner: {result.status}: {result.error}")

    return run


def _started_at(container: str) -> str:
    inspected = subprocess.run(
        ["docker", "exec", container, "docker", "inspect", "-f", "{{.State.StartedAt}}", INSTANCE],
        capture_output=True, text=True, check=True, timeout=STEP_TIMEOUT,
    )  # fmt: skip
    return inspected.stdout.strip()


def _cpu() -> float:
    """CPU seconds of this process and its reaped children: robust on a shared machine."""
    own, children = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _verified(container: str, action: Callable[[], None]) -> tuple[float, float]:
    """(wall, controller CPU) seconds of `action`, after checking it really restarted."""
    before = _started_at(container)
    started, cpu = time.perf_counter(), _cpu()
    action()
    elapsed, cpu = time.perf_counter() - started, _cpu() - cpu
    if _started_at(container) == before:
        raise RuntimeError(f"{INSTANCE} did not restart: StartedAt is still {before}")
    return elapsed, cpu


def _api_inventory(sandbox: fleet.SandboxInfo, directory: Path) -> Path:
    """The sandbox inventory as production has it: token from DO_API_TOKEN, no key file."""
    options = yaml.safe_load(sandbox.inventory.read_text())
    options["oauth_token"] = "{{ lookup('ansible.builtin.env', 'DO_API_TOKEN') }}"
    (directory / "digitalocean.yml").write_text(yaml.safe_dump(options, sort_keys=False))
    (directory / "group_vars" / "all").mkdir(parents=True)
    shared = PROJECT_ROOT / "inventory" / "group_vars" / "all" / "connection.yml"
    (directory / "group_vars" / "all" / "connection.yml").write_text(shared.read_text())
    return directory / "digitalocean.yml"


def bench_restart(mitogen: Path | None) -> None:
    config = SandboxConfig.from_env()
    sandbox = fleet.up(config, 3)
    droplet = sandbox.droplet("toolbox-1")
    env = {**os.environ, "ANSIBLE_CONFIG": str(PROJECT_ROOT / "ansible.cfg")}
    with tempfile.TemporaryDirectory() as scratch:
        request_fields: dict[str, Any] = {
            "hosts": [droplet.name],
            "inventory": _api_inventory(sandbox, Path(scratch)),
            "ssh_private_key": sandbox.operator_key.read_text(),
            "known_hosts": sandbox.known_hosts.read_text(),
            "env": {"DO_API_TOKEN": sandbox.api_token},
        }
        deploy = RunRequest(
            playbook="tool_deploy.yml",
            extravars={"tool_instance_name": INSTANCE, "tool_instance_image": "dtma-tool-echo:1.0"},
            **request_fields,
        )
        _runner(deploy)()
        playbook = [
            str(PROJECT_ROOT / ".venv/bin/ansible-playbook"), "-i", str(sandbox.inventory),
            "-l", droplet.name, "playbooks/tool_restart.yml",
            "-e", f"tool_instance_name={INSTANCE}",
        ]  # fmt: skip
        ways: dict[str, Callable[[], None]] = {
            "ansible-playbook": _command(playbook, env),
            "runner": _runner(
                RunRequest(
                    playbook="tool_restart.yml",
                    extravars={"tool_instance_name": INSTANCE},
                    **request_fields,
                )
            ),
            "ssh docker restart": _command(
                fleet.ssh_command(config, droplet.address, "docker", "restart", INSTANCE), env
            ),
        }
        if mitogen is not None:
            mitogen_env = {
                **env,
                "ANSIBLE_STRATEGY_PLUGINS": str(
                    mitogen / "ansible_mitogen" / "plugins" / "strategy"
                ),
                "ANSIBLE_STRATEGY": "mitogen_linear",
            }
            ways["ansible-playbook + mitogen"] = _command(playbook, mitogen_env)
        times: dict[str, list[float]] = {name: [] for name in ways}
        cpus: dict[str, list[float]] = {name: [] for name in ways}
        try:
            for action in ways.values():  # warm caches and the ControlPersist masters
                _verified(droplet.container, action)
            for _ in range(ROUNDS):
                for name, action in ways.items():
                    elapsed, cpu = _verified(droplet.container, action)
                    times[name].append(elapsed)
                    cpus[name].append(cpu)
        finally:
            subprocess.run(
                ["docker", "exec", droplet.container, "docker", "rm", "-f", INSTANCE],
                capture_output=True,
            )
    medians = {name: statistics.median(values) for name, values in times.items()}
    cpu = {name: statistics.median(values) for name, values in cpus.items()}
    print(f"rounds: {ROUNDS} (alternating, each restart verified) on {droplet.name}, "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")  # fmt: skip
    for name, median in medians.items():
        spread = f"{min(times[name]) * 1000:.0f}-{max(times[name]) * 1000:.0f}"
        print(f"  {name:<28} median {median * 1000:8.1f} ms  (range {spread} ms)  "
              f"controller CPU {cpu[name] * 1000:7.1f} ms")  # fmt: skip
    ratio = medians["runner"] / medians["ansible-playbook"]
    overhead = medians["runner"] - medians["ssh docker restart"]
    print(f"runner / ansible-playbook: {ratio:.3f}x wall, "
          f"{cpu['runner'] / cpu['ansible-playbook']:.3f}x CPU (goal <= 1.05)")  # fmt: skip
    print(f"runner - ssh docker restart: {overhead * 1000:.0f} ms (goal < 1000 ms)")
    if mitogen is not None:
        mito = medians["ansible-playbook + mitogen"] / medians["ansible-playbook"]
        mito_cpu = cpu["ansible-playbook + mitogen"] / cpu["ansible-playbook"]
        print(f"ansible-playbook + mitogen / ansible-playbook: {mito:.3f}x wall, "
              f"{mito_cpu:.3f}x CPU")  # fmt: skip


# -- part 2: event normalisation throughput --------------------------------------------------
def synthetic_run(hosts: int = 50, tasks: int = 20) -> list[dict[str, Any]]:
    """Raw events of a run of `tasks` tasks on `hosts` hosts, shaped like a real recording."""
    recorded = json.loads(RECORDED.read_text())

    def template(kind: str) -> dict[str, Any]:
        return next(e for e in recorded if e["event"] == kind and e["event_data"].get("res", 1))

    play = next(e for e in recorded if e["event"] == "playbook_on_play_start")
    task_start = template("playbook_on_task_start")
    host_start, host_ok, stats = (
        template("runner_on_start"), template("runner_on_ok"), template("playbook_on_stats"),
    )  # fmt: skip
    names = [f"toolbox-{n}" for n in range(1, hosts + 1)]
    events: list[dict[str, Any]] = [copy.deepcopy(play)]
    for number in range(tasks):
        task = f"Synthetic task {number}"
        start = copy.deepcopy(task_start)
        start["event_data"]["task"] = task
        events.append(start)
        for kind in (host_start, host_ok):
            for host in names:
                event = copy.deepcopy(kind)
                event["event_data"].update(host=host, task=task)
                events.append(event)
    final = copy.deepcopy(stats)
    for column in ("ok", "changed", "failures", "dark", "skipped", "processed"):
        final["event_data"][column] = {host: tasks if column == "ok" else 0 for host in names}
    events.append(final)
    return events


def bench_normalise() -> None:
    raw = synthetic_run()
    key = "-----BEGIN OPENSSH PRIVATE KEY-----\n" + "QUJD" * 16 + "\n" + "REVG" * 16 + "\n"
    secrets = [key + "-----END OPENSSH PRIVATE KEY-----\n", "dop_v1_" + "ab" * 32]
    rates = []
    for _ in range(NORM_ROUNDS):
        normaliser = EventNormaliser("bench", Redactor(secrets))
        builder = ResultBuilder(
            run_id="bench", action="bench", toolbox_id=None, playbook="bench.yml",
            hosts=[f"toolbox-{n}" for n in range(1, 51)], timeout=600,
        )  # fmt: skip
        started = time.perf_counter()
        for event in raw:
            normalised = normaliser.normalise(event)
            if normalised is not None:
                builder.add(normalised)
        now = datetime.now(UTC)
        result = builder.build(ending="finished", rc=0, started_at=now, finished_at=now)
        rates.append(len(raw) / (time.perf_counter() - started))
        if not result.success or len(result.tasks) != 50 * 20:
            raise RuntimeError(f"synthetic run misread: {result.status}, {len(result.tasks)} tasks")
    print(f"event normalisation: {len(raw)} raw events (50 hosts x 20 tasks), "
          f"{NORM_ROUNDS} rounds")  # fmt: skip
    print(f"  median {statistics.median(rates):,.0f} events/s (incl. redaction and result)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--normalise-only", action="store_true", help="skip the sandbox part")
    parser.add_argument("--mitogen", type=Path, help="directory holding the mitogen package")
    args = parser.parse_args()
    if not args.normalise_only:
        bench_restart(args.mitogen)
    bench_normalise()


if __name__ == "__main__":
    main()
