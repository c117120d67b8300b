"""The role accepts every request the API accepts, at the edges of each rule: what the API
sends (after the runner's own argument-spec check) passes the role's validate.yml, run on
the controller alone (nothing else of the role runs, no toolbox is touched)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from api.schemas import role_rules as rules
from api.schemas.actions import DeployTool
from runner.catalog import DEFAULT_PLAYBOOK_DIR, PROJECT_ROOT, load_spec
from runner.extravars import validate_extravars

BOUNDS = rules.TOOL_BOUNDS
CHECK = ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/"]
PLAY = """\
- name: Validate tool_instance inputs only
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Run the role's validation
      ansible.builtin.include_role:
        name: tool_instance
        tasks_from: validate
      vars:
        tool_instance_action: deploy
        tool_instance_require_limit: false
"""


def _edge(side: str) -> dict[str, Any]:
    """A request with every bounded field at its lower or upper edge."""
    pick = (lambda b: b.int_min) if side == "min" else (lambda b: b.int_max)
    window = int(rules.tool_default("verify_timeout"))
    interval = BOUNDS["healthcheck_interval"].int_min if side == "min" else window - 1
    return {
        "name": "a" if side == "min" else "z" * 63,
        "image": "a" if side == "min" else "r" * (rules.IMAGE_MAX_LENGTH - 4) + ":1.0",
        "ports": [
            {
                "host_port": pick(BOUNDS["host_port"]),
                "container_port": pick(BOUNDS["container_port"]),
            }
        ],
        "memory": "6m" if side == "min" else "999999999999g",
        "cpus": rules.CPUS_LIMIT_MIN if side == "min" else BOUNDS["cpus"].max,
        "settle_seconds": pick(BOUNDS["settle_seconds"]),
        "volumes": [
            {"name": "v" if side == "min" else "V" * 128, "target": f"/data{n}", "read_only": True}
            for n in range(1 if side == "min" else BOUNDS["volumes"].int_max)
        ],
        "labels": {
            ("a" if side == "min" else f"com.example.{n}"): "" if side == "min" else "x" * 1000
            for n in range(1 if side == "min" else BOUNDS["labels"].int_max)
        },
        "log_max_size": "1k" if side == "min" else "1g",
        "log_max_file": pick(BOUNDS["log_max_file"]),
        "healthcheck": {
            "test": CHECK,
            "interval_seconds": interval,
            "timeout_seconds": BOUNDS["healthcheck_timeout"].int_min,
            "retries": pick(BOUNDS["healthcheck_retries"]),
            "start_period_seconds": pick(BOUNDS["healthcheck_start_period"]),
        },
    }


@pytest.mark.parametrize("side", ["min", "max"])
def test_the_role_accepts_what_the_api_accepts_at_the_edges(
    side: str, ansible_env: dict[str, str], tmp_path: Path
) -> None:
    spec = DeployTool.model_validate(_edge(side))
    extravars = validate_extravars(
        load_spec(DEFAULT_PLAYBOOK_DIR / "tool_deploy.yml"), spec.extravars()
    )
    (tmp_path / "vars.json").write_text(json.dumps(extravars))
    (tmp_path / "play.yml").write_text(PLAY)
    done = subprocess.run(
        [str(PROJECT_ROOT / ".venv/bin/ansible-playbook"), "-i", "localhost,", "-c", "local",
         str(tmp_path / "play.yml"), "-e", f"@{tmp_path / 'vars.json'}"],
        env={**ansible_env, "ANSIBLE_ROLES_PATH": str(PROJECT_ROOT / "roles")},
        capture_output=True, text=True, timeout=120, cwd=PROJECT_ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "ok=" in done.stdout and "failed=0" in done.stdout
