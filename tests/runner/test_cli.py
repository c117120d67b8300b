"""`dtma-console run …` as an operator uses it: the sandbox inventory, events, exit codes."""

from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner, Result

from runner.cli import run_command
from sandbox import fleet
from tests.runner.helpers import docker_inspect

pytestmark = pytest.mark.sandbox


def _cli() -> typer.Typer:
    """`run` mounted the way api/cli.py mounts it on `dtma-console`."""
    app = typer.Typer()
    app.command("run")(run_command)
    app.command("noop", hidden=True)(lambda: None)  # two commands: `run` stays a subcommand
    return app


def _run(sandbox: fleet.SandboxInfo, *args: str) -> Result:
    return CliRunner().invoke(_cli(), ["run", *args, "--inventory", str(sandbox.inventory)])


def test_run_json_prints_a_result_that_matches_the_container(
    sandbox: fleet.SandboxInfo, echo_instance: str
) -> None:
    ran = _run(sandbox, "tool_restart.yml", "--toolbox", "toolbox-1",
               "-e", f"tool_instance_name={echo_instance}", "--json")  # fmt: skip
    assert ran.exit_code == 0, ran.stderr
    result = json.loads(ran.stdout)
    container = sandbox.droplet("toolbox-1").container
    started_at = docker_inspect(container, echo_instance, "{{.State.StartedAt}}")
    assert result["success"] is True and result["status"] == "successful"
    assert result["data"]["tool_result"]["started_at"] == started_at
    assert result["action"] == "tool.restart"
    events = [json.loads(line) for line in ran.stderr.splitlines()]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert events[-1]["type"] == "run_end" and events[-1]["data"]["success"] is True


def test_run_exits_1_with_the_reason_when_the_run_fails(sandbox: fleet.SandboxInfo) -> None:
    ran = _run(sandbox, "tool_restart.yml", "-t", "toolbox-1", "-e", "tool_instance_name=nope")
    assert ran.exit_code == 1
    assert ran.stdout.startswith("FAILED: tool.restart failed on toolbox-1: ")
    assert "tool instance 'nope' not found on toolbox-1" in ran.stdout
    failed_task = "Check that the tool instance exists and is a DTMA tool instance"
    assert f"FAILED      toolbox-1 | {failed_task}" in ran.stderr


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ("tool_instance_action=remove", "tool_instance_action"),
        ("tool_instance_name={{ lookup('env', 'HOME') }}", "tool_instance_name"),
        ("no-equals-sign", "extravars"),
    ],
)
def test_run_exits_2_naming_the_refused_field(
    sandbox: fleet.SandboxInfo, extra: str, named: str
) -> None:
    ran = _run(sandbox, "tool_restart.yml", "-t", "toolbox-1", "-e", extra)
    assert ran.exit_code == 2
    assert ran.stderr.startswith(f"error: {named}: ")
    assert ran.stdout == ""


def test_run_with_the_default_inventory_and_no_token_says_how_to_aim_at_the_sandbox() -> None:
    ran = CliRunner(env={"DTMA_INVENTORY": None, "DO_API_TOKEN": None}).invoke(
        _cli(), ["run", "dtma_status.yml", "-t", "toolbox-1"]
    )
    assert ran.exit_code == 2
    assert "the DigitalOcean inventory" in ran.stderr and "could not be read" in ran.stderr
    assert "source .data/demo.env" in ran.stderr
    assert "No inventory was parsed" not in ran.stderr


def test_run_check_says_nothing_was_changed(sandbox: fleet.SandboxInfo, echo_instance: str) -> None:
    container = sandbox.droplet("toolbox-1").container
    started_at = docker_inspect(container, echo_instance, "{{.State.StartedAt}}")
    ran = _run(sandbox, "tool_restart.yml", "-t", "toolbox-1",
               "-e", f"tool_instance_name={echo_instance}", "--check", "--json")  # fmt: skip
    result = json.loads(ran.stdout)
    assert result["message"].startswith("Check mode: tool.restart changed nothing on toolbox-1")
    assert "restarted" not in result["message"] and result["data"]["check_mode"] is True
    assert docker_inspect(container, echo_instance, "{{.State.StartedAt}}") == started_at
