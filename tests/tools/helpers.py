"""Helpers for the tool_instance tests: playbook results and the droplet engine's truth."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.conftest import json_report_results


@dataclass
class PlaybookRun:
    """One ansible-playbook run, read from the ansible.posix.json callback."""

    rc: int
    stats: dict[str, dict[str, int]]
    tool_result: dict[str, Any] | None
    failed_messages: list[str] = field(default_factory=list)
    stderr: str = ""
    # Per host: how many task results (DESIGN.md "Task results": one per task it ran, skipped
    # or failed) and the names of the tasks it ran (not skipped), in order.
    task_results: dict[str, int] = field(default_factory=dict)
    ran: dict[str, list[str]] = field(default_factory=dict)

    @property
    def error(self) -> str | None:
        """The message of the task that stopped the run."""
        return self.failed_messages[-1] if self.failed_messages else None

    def changed(self, host: str) -> int:
        return self.stats[host]["changed"]

    def assert_ok(self) -> None:
        assert self.rc == 0, f"playbook failed (rc={self.rc}): {self.error or self.stderr}"


Play = Callable[..., PlaybookRun]


@dataclass
class RecordedRun:
    """One run the `play` fixture made this session, with what it was asked."""

    playbook: str
    host: str | None
    extravars: dict[str, Any]
    extra_args: tuple[str, ...]
    run: PlaybookRun


def parse_json_report(stdout: str, rc: int, stderr: str) -> PlaybookRun:
    """The run from the ansible.posix.json callback's report: per-host stats, the published
    tool_result, messages of the failed tasks in order, and per host its task results."""
    report = json.loads(stdout)
    failed = []
    task_results: dict[str, int] = {}
    ran: dict[str, list[str]] = {}
    for host, name, result in json_report_results(report):
        task_results[host] = task_results.get(host, 0) + 1
        if not result.get("skipped"):
            ran.setdefault(host, []).append(name)
        if result.get("failed"):
            failed.append(str(result.get("msg", "")))
    custom = report.get("global_custom_stats") or {}
    return PlaybookRun(
        rc, report["stats"], custom.get("tool_result"), failed, stderr, task_results, ran
    )


def droplet_exec(container: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run a command inside a droplet container."""
    return subprocess.run(
        ["docker", "exec", container, *args], capture_output=True, text=True, timeout=60
    )


def droplet_docker(container: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`docker …` inside a droplet container's own engine."""
    return droplet_exec(container, "docker", *args)


def fetch_inside(container: str, port: int) -> str:
    """GET http://127.0.0.1:<port>/ from inside the droplet (the droplet's own loopback)."""
    script = (
        "import urllib.request; "
        f"print(urllib.request.urlopen('http://127.0.0.1:{port}/', timeout=5).read().decode())"
    )
    page = droplet_exec(container, "python3", "-c", script)
    assert page.returncode == 0, page.stderr
    return page.stdout


def inspect(container: str, name: str) -> dict[str, Any] | None:
    """`docker inspect` of a container on the droplet's engine; None when it does not exist."""
    found = droplet_docker(container, "inspect", "--type", "container", name)
    if found.returncode != 0:
        assert "No such" in found.stderr, found.stderr
        return None
    return json.loads(found.stdout)[0]


def engine_snapshot(container: str) -> dict[str, Any]:
    """Every container (id, name, state, start time, image) and image ID on the droplet."""
    ids = droplet_docker(container, "ps", "-aq", "--no-trunc").stdout.split()
    containers = []
    if ids:
        listed = droplet_docker(
            container, "inspect", "-f",
            "{{.Id}} {{.Name}} {{.State.Status}} {{.State.StartedAt}} {{.Image}}", *ids,
        )  # fmt: skip
        containers = sorted(listed.stdout.splitlines())
    images = sorted(droplet_docker(container, "images", "-q", "--no-trunc").stdout.split())
    return {"containers": containers, "images": images}


def remove_containers(container: str, *names: str) -> None:
    droplet_docker(container, "rm", "-f", "-v", *names)
