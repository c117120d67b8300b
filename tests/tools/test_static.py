"""Checks that need no sandbox: ansible-lint on the roles and playbooks, the tool images."""

from __future__ import annotations

import json
import os
import subprocess

from sandbox import tools
from sandbox.config import PROJECT_ROOT

TOOL_PATHS = [
    "roles/docker_engine",
    "roles/tool_instance",
    *sorted(
        str(p.relative_to(PROJECT_ROOT)) for p in (PROJECT_ROOT / "playbooks").glob("tool_*.yml")
    ),
]


def test_ansible_lint_production_profile_passes() -> None:
    linted = subprocess.run(
        [str(PROJECT_ROOT / ".venv/bin/ansible-lint"), "--profile", "production", "--offline",
         "--nocolor", *TOOL_PATHS],
        cwd=PROJECT_ROOT,
        # Syntax checks need an inventory that parses without a DigitalOcean token.
        env={**os.environ, "ANSIBLE_CONFIG": "ansible.cfg", "ANSIBLE_INVENTORY": "localhost,"},
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert linted.returncode == 0, linted.stdout + linted.stderr
    assert len(TOOL_PATHS) == 9


def _run_tool(image: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", "run", "--rm", "--network", "none", *args, image],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_tool_images_are_built_and_labelled_with_their_recipe() -> None:
    assert tools.ensure_tool_images() == ["dtma-tool-echo:1.0", "dtma-tool-crashy:1.0"]
    for tag, tool in tools.TOOL_IMAGES.items():
        labels = subprocess.run(
            ["docker", "image", "inspect", "-f", "{{json .Config.Labels}}", tag],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        assert json.loads(labels.stdout)["dtma.recipe"] == tools.recipe_hash(tool)


def test_the_crashy_tool_logs_and_exits_non_zero() -> None:
    crashed = _run_tool("dtma-tool-crashy:1.0", "-e", "CRASHY_LINES=2", "-e", "CRASHY_EXIT_CODE=7")
    assert crashed.returncode == 7
    assert "crashy tool: working (2/2)" in crashed.stdout
    assert "exiting with status 7" in crashed.stderr


def test_the_echo_tool_serves_its_page_and_logs_the_request() -> None:
    name = "dtma-tools-test-echo"
    subprocess.run(["docker", "rm", "-f", name], capture_output=True)
    started = subprocess.run(
        ["docker", "run", "-d", "--name", name, "--network", "none", "dtma-tool-echo:1.0"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    try:
        page = subprocess.run(
            ["docker", "exec", name, "sh", "-c",
             "for i in 1 2 3 4 5 6 7 8 9 10; do wget -q -O - http://127.0.0.1:8080/ && exit 0;"
             " sleep 0.2; done; exit 1"],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert page.returncode == 0 and "dtma echo tool" in page.stdout
        stopped = subprocess.run(["docker", "stop", "-t", "5", name], capture_output=True)
        assert stopped.returncode == 0
        logs = subprocess.run(["docker", "logs", name], capture_output=True, text=True)
        assert "url:/" in logs.stderr and "response:200" in logs.stderr
        assert "echo tool: stopped" in logs.stdout  # TERM handled: no 10 s kill timeout
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)
