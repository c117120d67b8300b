"""The tool playbooks on a sandbox droplet, every outcome checked from outside the droplet
with `docker exec <droplet> docker inspect`."""

from __future__ import annotations

from typing import Any

import pytest

from sandbox import fleet
from tests.tools.conftest import ECHO_PORT
from tests.tools.helpers import (
    Play,
    PlaybookRun,
    droplet_exec,
    fetch_inside,
    inspect,
    remove_containers,
)

pytestmark = pytest.mark.sandbox


def test_deploy_runs_the_echo_tool_and_its_page_answers_inside_the_droplet(
    toolbox: fleet.Droplet, deployed_echo: PlaybookRun, echo_spec: dict[str, Any]
) -> None:
    container = inspect(toolbox.container, "tt-echo")
    assert container is not None
    assert container["State"]["Running"] is True
    assert container["Config"]["Image"] == "dtma-tool-echo:1.0"
    assert container["Config"]["Labels"]["dtma.managed"] == "true"
    assert container["Config"]["Labels"]["dtma.instance"] == "tt-echo"
    assert container["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
    assert container["HostConfig"]["PortBindings"] == {
        "8080/tcp": [{"HostIp": "0.0.0.0", "HostPort": str(ECHO_PORT)}]
    }
    assert "TT_GREETING=hello" in container["Config"]["Env"]
    assert "dtma echo tool" in fetch_inside(toolbox.container, ECHO_PORT)

    published = deployed_echo.tool_result
    assert published is not None
    assert published["instance"] == "tt-echo"
    assert published["container_id"] == container["Id"]
    assert published["image"] == "dtma-tool-echo:1.0"
    assert published["state_after"] == "running"
    assert published["started_at"] == container["State"]["StartedAt"]
    assert "hello" not in str(published)  # env values are never published


def test_a_second_deploy_with_the_same_spec_changes_nothing(
    play: Play, toolbox: fleet.Droplet, deployed_echo: PlaybookRun, echo_spec: dict[str, Any]
) -> None:
    before = inspect(toolbox.container, "tt-echo")
    packages_before = droplet_exec(toolbox.container, "stat", "-c", "%Y", "/var/lib/dpkg/status")
    again = play("tool_deploy.yml", toolbox.name, echo_spec)
    again.assert_ok()
    after = inspect(toolbox.container, "tt-echo")
    assert again.changed(toolbox.name) == 0
    # docker_engine ran as part of the deploy and installed nothing.
    packages_after = droplet_exec(toolbox.container, "stat", "-c", "%Y", "/var/lib/dpkg/status")
    assert packages_after.stdout == packages_before.stdout != ""
    assert before is not None and after is not None
    assert after["Id"] == before["Id"]
    assert after["State"]["StartedAt"] == before["State"]["StartedAt"]
    assert again.tool_result is not None and again.tool_result["state_before"] == "running"


def test_restart_moves_started_at(
    play: Play, toolbox: fleet.Droplet, deployed_echo: PlaybookRun
) -> None:
    before = inspect(toolbox.container, "tt-echo")
    restarted = play("tool_restart.yml", toolbox.name, {"tool_instance_name": "tt-echo"})
    restarted.assert_ok()
    after = inspect(toolbox.container, "tt-echo")
    assert before is not None and after is not None
    assert after["State"]["Running"] is True
    assert after["State"]["StartedAt"] != before["State"]["StartedAt"]
    assert after["Id"] == before["Id"]
    assert restarted.tool_result is not None
    assert restarted.tool_result["started_at"] == after["State"]["StartedAt"]
    assert restarted.changed(toolbox.name) == 1


def test_stop_leaves_it_exited_and_start_brings_it_back(
    play: Play, toolbox: fleet.Droplet, deployed_echo: PlaybookRun
) -> None:
    stopped = play("tool_stop.yml", toolbox.name, {"tool_instance_name": "tt-echo"})
    stopped.assert_ok()
    after_stop = inspect(toolbox.container, "tt-echo")
    assert after_stop is not None
    assert after_stop["State"]["Status"] == "exited"
    assert stopped.tool_result is not None
    assert (stopped.tool_result["state_before"], stopped.tool_result["state_after"]) == (
        "running",
        "exited",
    )

    stopped_again = play("tool_stop.yml", toolbox.name, {"tool_instance_name": "tt-echo"})
    stopped_again.assert_ok()
    assert stopped_again.changed(toolbox.name) == 0

    started = play("tool_start.yml", toolbox.name, {"tool_instance_name": "tt-echo"})
    started.assert_ok()
    after_start = inspect(toolbox.container, "tt-echo")
    assert after_start is not None and after_start["State"]["Running"] is True
    assert "dtma echo tool" in fetch_inside(toolbox.container, ECHO_PORT)


def test_logs_return_the_request_lines_in_order(
    play: Play, toolbox: fleet.Droplet, deployed_echo: PlaybookRun
) -> None:
    fetch_inside(toolbox.container, ECHO_PORT)
    logs = play(
        "tool_logs.yml",
        toolbox.name,
        {"tool_instance_name": "tt-echo", "tool_instance_logs_tail": 5},
    )
    logs.assert_ok()
    assert logs.tool_result is not None
    lines = logs.tool_result["lines"]
    assert len(lines) in range(1, 6)
    assert [line["at"] for line in lines] == sorted(line["at"] for line in lines)
    assert any(line["stream"] == "stderr" and "url:/" in line["text"] for line in lines)
    assert logs.changed(toolbox.name) == 0


def test_list_shows_the_managed_instances_only(
    play: Play, toolbox: fleet.Droplet, deployed_echo: PlaybookRun
) -> None:
    listed = play("tool_list.yml", toolbox.name)
    listed.assert_ok()
    assert listed.tool_result is not None
    by_name = {i["instance"]: i for i in listed.tool_result["instances"]}
    echo = inspect(toolbox.container, "tt-echo")
    assert echo is not None
    assert by_name["tt-echo"]["container_id"] == echo["Id"]
    assert by_name["tt-echo"]["state"] == echo["State"]["Status"]
    assert by_name["tt-echo"]["ports"] == [f"0.0.0.0:{ECHO_PORT}->8080/tcp"]


def test_remove_leaves_nothing(play: Play, toolbox: fleet.Droplet, unique_name: str) -> None:
    deployed = play(
        "tool_deploy.yml",
        toolbox.name,
        {"tool_instance_name": unique_name, "tool_instance_image": "dtma-tool-echo:1.0"},
    )  # fmt: skip
    deployed.assert_ok()
    assert inspect(toolbox.container, unique_name) is not None

    removed = play("tool_remove.yml", toolbox.name, {"tool_instance_name": unique_name})
    removed.assert_ok()
    assert inspect(toolbox.container, unique_name) is None
    assert removed.tool_result is not None
    assert removed.tool_result["state_after"] == "absent"


def test_a_health_check_is_waited_for_and_an_unhealthy_upgrade_is_rolled_back(
    play: Play, toolbox: fleet.Droplet, unique_name: str
) -> None:
    probe = ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/"]
    spec = {
        "tool_instance_name": unique_name,
        "tool_instance_image": "dtma-tool-echo:1.0",
        "tool_instance_healthcheck": {"test": probe, "interval": "1s", "retries": 2},
    }
    try:
        healthy = play("tool_deploy.yml", toolbox.name, spec)
        healthy.assert_ok()
        container = inspect(toolbox.container, unique_name)
        assert container is not None and container["State"]["Health"]["Status"] == "healthy"
        assert play("tool_deploy.yml", toolbox.name, spec).changed(toolbox.name) == 0

        # An upgrade whose health check never passes is rolled back to the healthy container.
        failing = {
            **spec,
            "tool_instance_healthcheck": {"test": ["CMD", "false"], "interval": "1s", "retries": 1},
        }
        unhealthy = play("tool_deploy.yml", toolbox.name, failing)
        assert unhealthy.rc != 0
        assert unhealthy.error is not None
        assert unhealthy.error.startswith(
            f"rolled back to dtma-tool-echo:1.0: the deploy of tool instance '{unique_name}' on "
            f"{toolbox.name} did not verify: expected it running 'dtma-tool-echo:1.0' and healthy"
        )
        assert "health unhealthy" in unhealthy.error
        assert unhealthy.tool_result is not None and unhealthy.tool_result["rolled_back"] is True
        restored = inspect(toolbox.container, unique_name)
        assert restored is not None and restored["State"]["Health"]["Status"] == "healthy"
        assert restored["Config"]["Healthcheck"]["Test"] == probe
    finally:
        remove_containers(toolbox.container, unique_name)
