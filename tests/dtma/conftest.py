"""Fixtures for the dtma role on the sandbox fleet: playbook runs and agent releases."""

from __future__ import annotations

import json
import shutil
import ssl
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from dtma_agent import __version__ as BASE_VERSION

from sandbox.config import PROJECT_ROOT
from sandbox.fleet import Droplet, SandboxInfo
from tests.conftest import json_report_results

AGENT_PORT = 30000
REMOVE_AGENT = (
    "systemctl disable --now dtma.service >/dev/null 2>&1; "
    "rm -rf /opt/dtma /etc/dtma /etc/systemd/system/dtma.service; systemctl daemon-reload"
)
# What `install` looks for: without the unit and the current release the agent is not
# installed; the release directories stay, so reinstalling skips the pip install.
UNINSTALL_AGENT = (
    "systemctl disable --now dtma.service >/dev/null 2>&1; "
    "rm -f /opt/dtma/current /opt/dtma/previous /etc/systemd/system/dtma.service; "
    "systemctl daemon-reload"
)


@dataclass
class PlaybookRun:
    rc: int
    output: str
    stats: dict[str, dict[str, int]]
    results: dict[str, dict[str, Any]]
    # Task results (DESIGN.md "Task results") host by host, and the tasks that were retried
    # (an `until` that needed more than one attempt): what a runner run's events would count.
    task_results: dict[str, int] = field(default_factory=dict)
    retried: list[str] = field(default_factory=list)

    def failures(self) -> list[str]:
        """Messages of the failed tasks, host by host."""
        found = []
        start = self.output.find("{")
        report = json.JSONDecoder().raw_decode(self.output[start:])[0] if start >= 0 else {}
        for play in report.get("plays", []):
            for task in play["tasks"]:
                for host, result in task["hosts"].items():
                    if result.get("failed") and not result.get("ignore_errors"):
                        found.append(f"{host}: {result.get('msg', '')}")
        return found


@dataclass
class Release:
    version: str
    repo: Path  # a git repository: agent/ and uv.lock, committed on branch main
    wheelhouse_root: Path

    @property
    def source(self) -> Path:
        return self.repo / "agent"


RunPlaybook = Callable[..., PlaybookRun]


@dataclass
class RecordedRun:
    """One run the `run_playbook` fixture made this session, with what it was asked."""

    playbook: str
    limit: str | None
    extravars: dict[str, Any]
    run: PlaybookRun


def count_task_results(report: dict[str, Any]) -> tuple[dict[str, int], list[str]]:
    """Per host, the results of its tasks in a json callback report, and the names of the
    tasks that took more than one attempt (the runner's task_retry)."""
    counts: dict[str, int] = {}
    retried = []
    for host, name, result in json_report_results(report):
        counts[host] = counts.get(host, 0) + 1
        if int(result.get("attempts", 1)) > 1:
            retried.append(f"{host}: {name}")
    return counts, retried


@pytest.fixture(scope="session")
def recorded_runs() -> list[RecordedRun]:
    """Every run of `run_playbook` this session, in order: tests that assert a property of
    an action's run (its task result count) read it from a run another test already made."""
    return []


@pytest.fixture(scope="session")
def run_playbook(
    sandbox: SandboxInfo,
    ansible_env: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
    recorded_runs: list[RecordedRun],
) -> RunPlaybook:
    """Run playbooks/<name> as an operator would, reading the outcome from the json callback."""
    vars_dir = tmp_path_factory.mktemp("dtma-extravars")
    env = {
        **ansible_env,
        "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json",
        "ANSIBLE_SHOW_CUSTOM_STATS": "1",
        "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1",
    }

    def run(
        playbook: str,
        limit: str | None = None,
        timeout: float = 600,
        verbose: bool = False,
        **extravars: Any,
    ) -> PlaybookRun:
        vars_file = vars_dir / f"{len(list(vars_dir.iterdir()))}.json"
        vars_file.write_text(json.dumps(extravars))
        command = [
            str(PROJECT_ROOT / ".venv" / "bin" / "ansible-playbook"),
            "-i",
            str(sandbox.inventory),
            str(PROJECT_ROOT / "playbooks" / playbook),
            "-e",
            f"@{vars_file}",
        ]
        if limit:
            command += ["-l", limit]
        run_env = env
        if verbose:  # -vvv output does not mix with the json callback: only the text is kept
            command.append("-vvv")
            run_env = {**env, "ANSIBLE_STDOUT_CALLBACK": "default"}
        done = subprocess.run(
            command, cwd=PROJECT_ROOT, env=run_env, capture_output=True, text=True, timeout=timeout
        )
        if verbose:
            return PlaybookRun(done.returncode, done.stdout + done.stderr, {}, {})
        start = done.stdout.find("{")
        report = json.loads(done.stdout[start:]) if start >= 0 else {}
        results = report.get("global_custom_stats", {}).get("dtma_result", {})
        counts, retried = count_task_results(report)
        outcome = PlaybookRun(
            done.returncode,
            done.stdout + done.stderr,
            report.get("stats", {}),
            results,
            counts,
            retried,
        )
        recorded_runs.append(RecordedRun(playbook, limit, extravars, outcome))
        return outcome

    return run


def docker_exec(droplet: Droplet, command: str) -> str:
    done = subprocess.run(
        ["docker", "exec", droplet.container, "sh", "-c", command],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done.stdout.strip()


def main_pid(droplet: Droplet) -> int:
    return int(docker_exec(droplet, "systemctl show -p MainPID --value dtma.service") or 0)


def unit_type(droplet: Droplet) -> str:
    """The Type= systemd runs dtma.service with (notify from agent 1.3.0 on)."""
    return docker_exec(droplet, "systemctl show -p Type --value dtma.service")


def certificate_of(droplet: Droplet) -> str:
    """The agent's TLS certificate on the droplet (PEM; where the role keeps it)."""
    return docker_exec(droplet, "cat /etc/dtma/tls/agent.crt 2>/dev/null")


def pinned(droplet: Droplet) -> ssl.SSLContext | bool:
    """TLS trusting the droplet's own agent certificate alone, as the console pins it
    (the certificate names no address the tests dial: no host name check)."""
    pem = certificate_of(droplet)
    if not pem:
        return False
    context = ssl.create_default_context(cadata=pem)
    context.check_hostname = False
    return context


def agent_url(droplet: Droplet, path: str) -> str:
    return f"https://{droplet.address}:{AGENT_PORT}{path}"


def health(droplet: Droplet) -> dict[str, Any] | None:
    try:
        answer = httpx.get(agent_url(droplet, "/health"), timeout=5, verify=pinned(droplet))
    except httpx.TransportError:
        return None
    return answer.json() if answer.status_code == 200 else None


def current_release(droplet: Droplet) -> str:
    return Path(docker_exec(droplet, "readlink /opt/dtma/current")).name


def make_release(
    base: Path,
    version: str,
    wheelhouse_root: Path | None = None,
    broken: bool = False,
    notifies: bool = True,
) -> Release:
    """A git repository holding a copy of agent/ with another version (and, if broken, an
    agent that cannot start; without notifies, one that never tells systemd it is ready, as
    agents before 1.3.0), usable as a source directory or as a git source."""
    repo = base / "repo"
    shutil.copytree(
        PROJECT_ROOT / "agent",
        repo / "agent",
        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "build", "dist"),
    )
    shutil.copy(PROJECT_ROOT / "uv.lock", repo / "uv.lock")
    init = repo / "agent" / "dtma_agent" / "__init__.py"
    init.write_text(init.read_text().replace(f'"{BASE_VERSION}"', f'"{version}"'))
    if broken:
        with (repo / "agent" / "dtma_agent" / "app.py").open("a") as app:
            app.write('\nraise RuntimeError("deliberately broken release")\n')
    if not notifies:
        (repo / "agent" / "dtma_agent" / "notify.py").write_text(
            "def notify(state, environ=None):\n    return False\n"
        )
    git = ["git", "-C", str(repo), "-c", "user.name=dtma-tests", "-c", "user.email=tests@dtma"]
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", version]):
        subprocess.run([*git, *args], check=True, capture_output=True)
    return Release(version, repo, wheelhouse_root or base / "wheelhouse")


@pytest.fixture(scope="session")
def release_wheelhouses(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One wheelhouse root for the test releases (a directory per version): the builder's
    private pip venv in it is made once for all of them, not once per release."""
    return tmp_path_factory.mktemp("release-wheelhouses")


@pytest.fixture(scope="session")
def newer_release(tmp_path_factory: pytest.TempPathFactory, release_wheelhouses: Path) -> Release:
    return make_release(
        tmp_path_factory.mktemp("release-newer"), f"{BASE_VERSION}+test.newer", release_wheelhouses
    )


@pytest.fixture(scope="session")
def legacy_release(tmp_path_factory: pytest.TempPathFactory, release_wheelhouses: Path) -> Release:
    """A release older than readiness notification (1.3.0) whose agent never notifies."""
    return make_release(
        tmp_path_factory.mktemp("release-legacy"),
        "1.2.9+test.legacy",
        release_wheelhouses,
        notifies=False,
    )


@pytest.fixture(scope="session")
def broken_release(tmp_path_factory: pytest.TempPathFactory, release_wheelhouses: Path) -> Release:
    return make_release(
        tmp_path_factory.mktemp("release-broken"),
        f"{BASE_VERSION}+test.broken",
        release_wheelhouses,
        broken=True,
    )


def remove_agent(droplet: Droplet) -> None:
    docker_exec(droplet, REMOVE_AGENT)


def uninstall_agent(droplet: Droplet) -> None:
    docker_exec(droplet, UNINSTALL_AGENT)


@pytest.fixture(scope="session")
def fresh_fleet(sandbox: SandboxInfo) -> SandboxInfo:
    """Every droplet without any trace of the agent, as a new droplet is."""
    for droplet in sandbox.droplets:
        remove_agent(droplet)
    return sandbox


@pytest.fixture(scope="session")
def installed(fresh_fleet: SandboxInfo, run_playbook: RunPlaybook) -> PlaybookRun:
    """The agent installed on every droplet by one playbook run."""
    return run_playbook("dtma_install.yml")


def token_of(droplet: Droplet) -> str:
    """The agent token configured on the droplet (where the role keeps it)."""
    return docker_exec(droplet, "sed -n 's/^DTMA_AGENT_TOKEN=//p' /etc/dtma/dtma.env")
