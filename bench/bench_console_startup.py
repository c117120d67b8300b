"""What a `dtma-console` process costs before it does its work: CPU seconds (user + system)
of `import api.cli`, `dtma-console --help`, `dtma-console token --help`, `token create` on a
database at head, and `serve` up to its first answered /healthz (on a database at head and on
a new one, which it migrates), with the wall time to that answer.

Side by side with an earlier source tree when BENCH_BASELINE names one (for example
`mkdir /tmp/base && git archive <commit> | tar -x -C /tmp/base`): both run on this
worktree's .venv (PYTHONPATH picks the tree), alternating, BENCH_ROUNDS rounds (default 5),
medians. The load average is printed before and after. The console listens on
BENCH_PORT (default 24090), 127.0.0.1 only.

    .venv/bin/python bench/bench_console_startup.py
"""

from __future__ import annotations

import http.client
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROUNDS = max(1, min(int(os.environ.get("BENCH_ROUNDS", "5")), 50))
PORT = int(os.environ.get("BENCH_PORT", "24090"))
BIN = Path(sys.executable).parent
TREE = Path(__file__).resolve().parent.parent
TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_of(command: list[str], env: dict[str, str], cwd: Path) -> float:
    """User + system CPU seconds of a command that exits (GNU time, as operators see it)."""
    done = subprocess.run(
        ["/usr/bin/time", "-f", "%U %S", *command],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
    )
    user, system = done.stderr.strip().splitlines()[-1].split()
    return float(user) + float(system)


def _process_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def _healthz_answers() -> bool:
    connection = http.client.HTTPConnection("127.0.0.1", PORT, timeout=1)
    try:
        connection.request("GET", "/healthz")
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()


def _serve(env: dict[str, str], cwd: Path) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of `dtma-console serve` up to its first /healthz answer."""
    started = time.monotonic()
    process = subprocess.Popen(
        [str(BIN / "dtma-console"), "serve", "--port", str(PORT)],
        env=env,
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        while not _healthz_answers():
            if process.poll() is not None:
                raise RuntimeError(f"dtma-console serve exited with {process.returncode}")
            time.sleep(0.02)
        return _process_cpu(process.pid), time.monotonic() - started
    finally:
        process.terminate()
        process.wait(timeout=60)


def _env(tree: Path, scratch: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(tree),
        "DTMA_DATABASE_URL": f"sqlite:///{scratch / 'console.db'}",
        "DTMA_MASTER_KEY": "sZ0mPpcY0vYQhZ3oO5m6oS2Zl8m8lW1Zr6n3V0fLk9E=",
        "DTMA_MONITOR_INTERVAL": "0",
        "DTMA_RUNS_DIR": str(scratch / "runs"),
        "DTMA_LOG_LEVEL": "WARNING",
    }


def _round(tree: Path, scratch: Path, results: defaultdict[str, list[float]]) -> None:
    env = _env(tree, scratch)
    cli = str(BIN / "dtma-console")
    # In the scratch directory: `python -c` puts the working directory first on sys.path.
    run = [sys.executable, "-c", "import api.cli"]
    results["import api.cli"].append(_cpu_of(run, env, scratch))
    results["dtma-console --help"].append(_cpu_of([cli, "--help"], env, scratch))
    results["dtma-console token --help"].append(_cpu_of([cli, "token", "--help"], env, scratch))
    results["token create (db at head)"].append(
        _cpu_of([cli, "token", "create", "--user", "bench"], env, scratch)
    )
    cpu, wall = _serve(env, scratch)
    results["serve to /healthz, db at head: CPU"].append(cpu)
    results["serve to /healthz, db at head: wall"].append(wall)
    fresh = {**env, "DTMA_DATABASE_URL": f"sqlite:///{scratch / 'fresh.db'}"}
    cpu, wall = _serve(fresh, scratch)
    (scratch / "fresh.db").unlink()
    results["serve to /healthz, new db: CPU"].append(cpu)
    results["serve to /healthz, new db: wall"].append(wall)


def main() -> None:
    baseline = os.environ.get("BENCH_BASELINE")
    trees = {"before": Path(baseline).resolve()} if baseline else {}
    trees["now"] = TREE
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    results = {name: defaultdict[str, list[float]](list) for name in trees}
    with tempfile.TemporaryDirectory() as tmp:
        for name, tree in trees.items():
            scratch = Path(tmp) / name
            scratch.mkdir(mode=0o700)
            # The database at head before the rounds: `token create` and `serve` find it so.
            subprocess.run(
                [str(BIN / "dtma-console"), "db", "upgrade"],
                env=_env(tree, scratch), cwd=scratch, check=True, capture_output=True,
            )  # fmt: skip
        for _ in range(ROUNDS):
            for name, tree in trees.items():
                _round(tree, Path(tmp) / name, results[name])
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"medians of {ROUNDS} alternating rounds, seconds")
    print(f"{'':40}" + "".join(f"{name:>10}" for name in trees))
    for measure in results["now"]:
        row = [statistics.median(results[name][measure]) for name in trees]
        print(f"{measure:40}" + "".join(f"{value:10.2f}" for value in row))


if __name__ == "__main__":
    main()
