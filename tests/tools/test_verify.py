"""Verified means it stays up: deploy, start and restart of a tool that does not keep running
fail with what was seen, and an upgrade that does not verify is rolled back. The truth comes
from `docker exec <droplet> docker inspect`."""

from __future__ import annotations

from typing import Any

import pytest

from sandbox import fleet
from tests.tools.helpers import Play, droplet_docker, fetch_inside, inspect, remove_containers

pytestmark = pytest.mark.sandbox

CRASH_LINE = "crashy tool: fatal error, exiting with status 3"
UPGRADE_PORT = 28090


def test_a_crash_looping_tool_fails_deploy_start_and_restart(
    play: Play, toolbox: fleet.Droplet, unique_name: str
) -> None:
    # Exits with status 3 at once; Docker restarts it again and again (unless-stopped).
    spec = {
        "tool_instance_name": unique_name,
        "tool_instance_image": "dtma-tool-crashy:1.0",
        "tool_instance_env": {"CRASHY_LINES": "0"},
    }
    try:
        deployed = play("tool_deploy.yml", toolbox.name, spec)
        assert deployed.rc != 0
        assert deployed.error is not None
        assert (
            f"the deploy of tool instance '{unique_name}' on {toolbox.name} did not verify: "
            "expected it running 'dtma-tool-crashy:1.0', unchanged for 3 s, found "
        ) in deployed.error
        assert "restart count " in deployed.error and "last log lines:" in deployed.error
        assert CRASH_LINE in deployed.error
        assert "The container was stopped so that it is not restarted" in deployed.error
        assert deployed.tool_result is not None
        assert deployed.tool_result["verified"] is False
        assert deployed.tool_result["left_stopped"] is True
        held = inspect(toolbox.container, unique_name)
        assert held is not None and held["State"]["Status"] == "exited"  # stopped, not looping
        assert held["Config"]["Labels"]["dtma.settle_seconds"] == "3"
        assert held["Config"]["Labels"]["dtma.env_keys"] == "CRASHY_LINES"
        assert CRASH_LINE in droplet_docker(toolbox.container, "logs", unique_name).stderr

        for action in ("start", "restart"):
            acted = play(f"tool_{action}.yml", toolbox.name, {"tool_instance_name": unique_name})
            assert acted.rc != 0, action
            assert acted.error is not None
            assert (
                f"the {action} of tool instance '{unique_name}' on {toolbox.name} did not verify"
            ) in acted.error
            assert "restart count " in acted.error and CRASH_LINE in acted.error
            looping = inspect(toolbox.container, unique_name)
            assert looping is not None
            assert looping["RestartCount"] > 0 or looping["State"]["Status"] != "running"
    finally:
        remove_containers(toolbox.container, unique_name)


def test_a_tool_that_exits_after_a_second_without_restart_policy_fails(
    play: Play, toolbox: fleet.Droplet, unique_name: str
) -> None:
    spec = {
        "tool_instance_name": unique_name,
        "tool_instance_image": "dtma-tool-crashy:1.0",
        "tool_instance_env": {"CRASHY_LINES": "1"},
        "tool_instance_restart_policy": "no",
    }
    try:
        deployed = play("tool_deploy.yml", toolbox.name, spec)
        assert deployed.rc != 0
        assert deployed.error is not None
        assert "did not verify" in deployed.error
        assert "state exited, exit code 3" in deployed.error
        # The value of CRASHY_LINES ("1") is masked in the log lines.
        assert "crashy tool: working (********/********)" in deployed.error
        container = inspect(toolbox.container, unique_name)
        assert container is not None and container["State"]["Status"] == "exited"
        assert container["State"]["ExitCode"] == 3 and container["RestartCount"] == 0
    finally:
        remove_containers(toolbox.container, unique_name)


def _upgrade_spec(name: str, image: str, **more: Any) -> dict[str, Any]:
    return {
        "tool_instance_name": name,
        "tool_instance_image": image,
        "tool_instance_ports": [{"host_port": UPGRADE_PORT, "container_port": 8080}],
        **more,
    }


def test_an_upgrade_that_does_not_verify_is_rolled_back_and_a_good_one_replaces_it(
    play: Play, toolbox: fleet.Droplet, unique_name: str
) -> None:
    previous = f"{unique_name}.previous"
    try:
        play(
            "tool_deploy.yml", toolbox.name, _upgrade_spec(unique_name, "dtma-tool-echo:1.0")
        ).assert_ok()
        before = inspect(toolbox.container, unique_name)
        assert before is not None

        crashing = _upgrade_spec(
            unique_name, "dtma-tool-crashy:1.0", tool_instance_env={"CRASHY_LINES": "0"}
        )
        upgraded = play("tool_deploy.yml", toolbox.name, crashing)
        assert upgraded.rc != 0
        assert upgraded.error is not None
        assert upgraded.error.startswith("rolled back to dtma-tool-echo:1.0: the deploy of ")
        assert "did not verify" in upgraded.error and CRASH_LINE in upgraded.error
        assert upgraded.tool_result is not None
        assert (
            upgraded.tool_result["rolled_back"] is True
            and upgraded.tool_result["verified"] is False
        )
        assert upgraded.tool_result["image"] == "dtma-tool-echo:1.0"
        assert upgraded.tool_result["failed_image"] == "dtma-tool-crashy:1.0"
        restored = inspect(toolbox.container, unique_name)
        assert restored is not None and restored["Id"] == before["Id"]
        assert restored["State"]["Status"] == "running"
        assert restored["Config"]["Image"] == "dtma-tool-echo:1.0"
        assert inspect(toolbox.container, previous) is None
        assert "dtma echo tool" in fetch_inside(toolbox.container, UPGRADE_PORT)

        # A good upgrade: another image reference (a tag of the echo image) and environment.
        tagged = droplet_docker(
            toolbox.container, "tag", "dtma-tool-echo:1.0", "dtma-tool-echo:1.1"
        )
        assert tagged.returncode == 0, tagged.stderr
        good = _upgrade_spec(unique_name, "dtma-tool-echo:1.1", tool_instance_env={"TT": "2"})
        replaced = play("tool_deploy.yml", toolbox.name, good)
        replaced.assert_ok()
        after = inspect(toolbox.container, unique_name)
        assert after is not None and after["Id"] != before["Id"]
        assert after["State"]["Status"] == "running"
        assert after["Config"]["Image"] == "dtma-tool-echo:1.1"
        assert inspect(toolbox.container, previous) is None  # no leftover container
        assert replaced.tool_result is not None
        assert (
            replaced.tool_result["verified"] is True and "rolled_back" not in replaced.tool_result
        )
        assert "dtma echo tool" in fetch_inside(toolbox.container, UPGRADE_PORT)
    finally:
        remove_containers(toolbox.container, unique_name, previous)
        droplet_docker(toolbox.container, "rmi", "dtma-tool-echo:1.1")
