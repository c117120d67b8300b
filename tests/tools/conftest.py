"""Fixtures for the tool_instance tests: run the tool playbooks as an operator would, and read
the truth from outside with `docker exec <droplet> docker inspect`."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sandbox import fleet
from sandbox.config import PROJECT_ROOT
from tests.tools.helpers import (
    Play,
    PlaybookRun,
    RecordedRun,
    parse_json_report,
    remove_containers,
)

# Generous: the machine is shared with other suites on 2 cores.
PLAYBOOK_TIMEOUT = 420
# Host ports the tests publish on droplets; far from what other suites use.
ECHO_PORT = 28080


@pytest.fixture(scope="session")
def recorded_runs() -> list[RecordedRun]:
    """Every run of `play` this session, in order: tests that assert a property of an
    action's run (its task result count) read it from a run another test already made."""
    return []


@pytest.fixture(scope="session")
def play(
    sandbox: fleet.SandboxInfo,
    ansible_env: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
    recorded_runs: list[RecordedRun],
) -> Play:
    """Run playbooks/<name> against the sandbox, limited to `host`, with JSON extra vars."""
    varsdir = tmp_path_factory.mktemp("tool-extravars")

    def run(
        playbook: str, host: str | None, extravars: dict[str, Any] | None = None,
        extra_args: tuple[str, ...] = (),
    ) -> PlaybookRun:  # fmt: skip
        varsfile = varsdir / f"{uuid.uuid4().hex}.json"
        varsfile.write_text(json.dumps(extravars or {}))
        limit = ["-l", host] if host else []
        completed = subprocess.run(
            [str(PROJECT_ROOT / ".venv/bin/ansible-playbook"), "-i", str(sandbox.inventory),
             str(PROJECT_ROOT / "playbooks" / playbook), *limit, "-e", f"@{varsfile}",
             *extra_args],
            cwd=PROJECT_ROOT,
            env={
                **ansible_env,
                "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json",
                "ANSIBLE_SHOW_CUSTOM_STATS": "1",
            },
            capture_output=True,
            text=True,
            timeout=PLAYBOOK_TIMEOUT,
        )  # fmt: skip
        try:
            outcome = parse_json_report(completed.stdout, completed.returncode, completed.stderr)
        except json.JSONDecodeError:  # ansible stopped before the play (e.g. bad inventory)
            failed = [completed.stderr.strip()[-2000:]]
            outcome = PlaybookRun(completed.returncode, {}, None, failed, completed.stderr)
        recorded_runs.append(RecordedRun(playbook, host, extravars or {}, extra_args, outcome))
        return outcome

    return run


@pytest.fixture(scope="session")
def toolbox(sandbox: fleet.SandboxInfo) -> fleet.Droplet:
    """The droplet most tool tests act on."""
    return sandbox.droplets[0]


@pytest.fixture(scope="session")
def echo_spec() -> dict[str, Any]:
    return {
        "tool_instance_name": "tt-echo",
        "tool_instance_image": "dtma-tool-echo:1.0",
        "tool_instance_ports": [{"host_port": ECHO_PORT, "container_port": 8080}],
        "tool_instance_env": {"TT_GREETING": "hello"},
    }


@pytest.fixture(scope="session")
def deployed_echo(
    play: Play, toolbox: fleet.Droplet, echo_spec: dict[str, Any]
) -> Iterator[PlaybookRun]:
    """The echo tool deployed once per session (as tt-echo); removed at the end."""
    remove_containers(toolbox.container, echo_spec["tool_instance_name"])
    deployed = play("tool_deploy.yml", toolbox.name, echo_spec)
    deployed.assert_ok()
    yield deployed
    remove_containers(toolbox.container, echo_spec["tool_instance_name"])


@pytest.fixture
def unique_name() -> str:
    return f"tt-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="session")
def scratch_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tool-scratch")
