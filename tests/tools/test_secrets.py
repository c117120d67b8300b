"""tool_instance_env values reach the container and nothing else: not the output at -vvv, not
the published tool_result."""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path

import pytest

from sandbox import fleet
from sandbox.config import PROJECT_ROOT
from tests.tools.helpers import Play, inspect, remove_containers

pytestmark = pytest.mark.sandbox


def test_env_values_never_appear_in_output_or_results(
    play: Play,
    toolbox: fleet.Droplet,
    sandbox: fleet.SandboxInfo,
    ansible_env: dict[str, str],
    unique_name: str,
    scratch_dir: Path,
) -> None:
    secret = f"s3cret-{uuid.uuid4().hex}"
    spec = {
        "tool_instance_name": unique_name,
        "tool_instance_image": "dtma-tool-echo:1.0",
        "tool_instance_env": {"TT_API_TOKEN": secret},
    }
    varsfile = scratch_dir / f"{unique_name}.json"
    varsfile.write_text(json.dumps(spec))
    try:
        verbose = subprocess.run(
            [str(PROJECT_ROOT / ".venv/bin/ansible-playbook"), "-vvv", "-i", str(sandbox.inventory),
             str(PROJECT_ROOT / "playbooks/tool_deploy.yml"), "-l", toolbox.name,
             "-e", f"@{varsfile}"],
            cwd=PROJECT_ROOT, env={**ansible_env, "ANSIBLE_SHOW_CUSTOM_STATS": "1"},
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert verbose.returncode == 0, verbose.stdout[-3000:]
        assert secret not in verbose.stdout + verbose.stderr
        container = inspect(toolbox.container, unique_name)
        assert container is not None
        assert f"TT_API_TOKEN={secret}" in container["Config"]["Env"]

        restarted = play("tool_restart.yml", toolbox.name, {"tool_instance_name": unique_name})
        restarted.assert_ok()
        assert secret not in json.dumps(restarted.tool_result)
        assert secret not in " ".join(restarted.failed_messages)
    finally:
        remove_containers(toolbox.container, unique_name)
