"""Fixtures for runner/ tests: requests the way api/ makes them, against the sandbox.

The runs use an inventory like production's: the DigitalOcean plugin with its token from
the environment (`RunRequest.env`), the SSH key handed over in the request (ssh-agent
pipe) and host keys pinned from the request's known_hosts. The sandbox's own inventory,
which names a key file and a known_hosts file, is used only by the CLI test, as an
operator would use it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from runner import RunRequest
from sandbox import fleet
from sandbox.config import PROJECT_ROOT

TEST_PLAYBOOKS = Path(__file__).parent / "playbooks"


@pytest.fixture(autouse=True)
def runs_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test's private data dirs in its own directory (DTMA_RUNS_DIR)."""
    path = tmp_path / "runs"
    monkeypatch.setenv("DTMA_RUNS_DIR", str(path))
    monkeypatch.delenv("DTMA_KEEP_RUN_DIRS", raising=False)
    return path


@pytest.fixture(scope="session")
def api_inventory(sandbox: fleet.SandboxInfo, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sandbox inventory without its token, key file and known_hosts file.

    The token comes from DO_API_TOKEN, which the run gets from `RunRequest.env`; the
    plugin reads no environment variable by itself, hence the lookup.
    """
    directory = tmp_path_factory.mktemp("inventory")
    options = yaml.safe_load(sandbox.inventory.read_text())
    options["oauth_token"] = "{{ lookup('ansible.builtin.env', 'DO_API_TOKEN') }}"
    (directory / "digitalocean.yml").write_text(yaml.safe_dump(options, sort_keys=False))
    group_vars = directory / "group_vars" / "all"
    group_vars.mkdir(parents=True)
    shared = PROJECT_ROOT / "inventory" / "group_vars" / "all" / "connection.yml"
    (group_vars / "connection.yml").write_text(shared.read_text())
    return directory / "digitalocean.yml"


@pytest.fixture(scope="session")
def make_request(sandbox: fleet.SandboxInfo, api_inventory: Path) -> Callable[..., RunRequest]:
    """RunRequest with the sandbox's secrets and pins, as api/ would build it."""
    defaults: dict[str, Any] = {
        "inventory": api_inventory,
        "ssh_private_key": sandbox.operator_key.read_text(),
        "known_hosts": sandbox.known_hosts.read_text(),
        "env": {"DO_API_TOKEN": sandbox.api_token},
        "timeout": 300,
    }

    def make(playbook: str, hosts: list[str], **overrides: Any) -> RunRequest:
        if playbook in ("probe.yml", "syntax_error.yml", "secret_output.yml"):
            overrides.setdefault("playbook_dir", TEST_PLAYBOOKS)
        return RunRequest(playbook=playbook, hosts=hosts, **{**defaults, **overrides})

    return make


@pytest.fixture(scope="session")
def echo_instance(
    sandbox: fleet.SandboxInfo, make_request: Callable[..., RunRequest]
) -> Iterator[str]:
    """Tool instance `echo` deployed on toolbox-1 (through the runner itself)."""
    from runner import run_playbook

    request = make_request(
        "tool_deploy.yml",
        ["toolbox-1"],
        extravars={"tool_instance_name": "echo", "tool_instance_image": "dtma-tool-echo:1.0"},
    )
    result = run_playbook(request)
    assert result.success, result.error
    yield "echo"
