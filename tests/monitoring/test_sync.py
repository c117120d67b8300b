"""Status sync against the sandbox: after every sync the database equals what the droplets'
own Docker engines say, whoever changed them, and a droplet that does not answer delays
nobody but itself."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from sandbox.config import PROJECT_ROOT
from sandbox.fleet import Droplet, SandboxInfo
from tests.monitoring.conftest import Console, docker_on, managed_containers, when

pytestmark = pytest.mark.sandbox


def db_instances(console: Console, toolbox_id: str) -> dict[str, str]:
    with console.http() as http:
        detail = http.get(f"/api/v1/toolboxes/{toolbox_id}").json()
    return {i["name"]: i["state"] for i in detail["tool_instances"] if i["removed_at"] is None}


def test_after_sync_all_every_container_state_in_the_db_equals_docker_ps(
    console: Console,
    sandbox: SandboxInfo,
    toolboxes: dict[str, dict[str, Any]],
    echo_everywhere: str,
) -> None:
    report = console.call(console.monitor.sync_all())
    assert {r.name for r in report.toolboxes} == {d.name for d in sandbox.droplets}
    assert all(r.status == "up" and r.source == "agent" for r in report.toolboxes), report
    compared = 0
    for droplet in sandbox.droplets:
        on_droplet = managed_containers(droplet.container)
        assert db_instances(console, toolboxes[droplet.name]["id"]) == on_droplet, droplet.name
        assert on_droplet.get(echo_everywhere) == "running"
        compared += len(on_droplet)
    assert compared >= len(sandbox.droplets)
    with console.http() as http:
        toolbox = http.get(f"/api/v1/toolboxes/{toolboxes['toolbox-1']['id']}").json()
    assert toolbox["status"] == "up"
    assert toolbox["agent_version"]
    assert toolbox["last_state"]["system"]["source"] == "agent"


def test_containers_started_and_removed_behind_the_consoles_back_show_after_the_next_sync(
    console: Console, sandbox: SandboxInfo, toolboxes: dict[str, dict[str, Any]]
) -> None:
    droplet = sandbox.droplet("toolbox-2")
    toolbox_id = toolboxes[droplet.name]["id"]
    docker_on(
        droplet.container, "docker", "run", "-d", "--name", "sneaky",
        "--label", "dtma.managed=true", "--label", "dtma.instance=sneaky", "dtma-tool-echo:1.0",
    )  # fmt: skip
    try:
        console.call(console.monitor.sync_all())
        assert db_instances(console, toolbox_id).get("sneaky") == "running"
        assert db_instances(console, toolbox_id) == managed_containers(droplet.container)
    finally:
        docker_on(droplet.container, "docker", "rm", "-f", "sneaky")
    console.call(console.monitor.sync_all())
    assert "sneaky" not in db_instances(console, toolbox_id)
    assert db_instances(console, toolbox_id) == managed_containers(droplet.container)
    with console.http() as http:
        detail = http.get(f"/api/v1/toolboxes/{toolbox_id}").json()
    sneaky = next(i for i in detail["tool_instances"] if i["name"] == "sneaky")
    assert sneaky["state"] == "removed" and sneaky["removed_at"] is not None


@pytest.fixture
def paused_droplet(sandbox: SandboxInfo) -> Iterator[Droplet]:
    """toolbox-3 frozen: TCP connections open, nothing ever answers (a hung droplet)."""
    droplet = sandbox.droplet("toolbox-3")
    subprocess.run(["docker", "pause", droplet.container], check=True, capture_output=True)
    try:
        yield droplet
    finally:
        subprocess.run(["docker", "unpause", droplet.container], check=True, capture_output=True)


def test_one_unreachable_droplet_does_not_delay_the_others_beyond_its_timeout(
    console: Console, toolboxes: dict[str, dict[str, Any]], paused_droplet: Droplet
) -> None:
    settings = console.context.settings
    report = console.call(console.monitor.sync_all())
    by_name = {r.name: r for r in report.toolboxes}
    hung = by_name[paused_droplet.name]
    assert hung.status == "unreachable" and hung.source == "none"
    assert hung.error and "agent:" in hung.error and "ssh:" in hung.error
    assert hung.duration_ms >= settings.agent_timeout * 1000
    # Bounded by the agent timeout plus the SSH probe's.
    assert report.duration_ms < (settings.agent_timeout + 2 * settings.ssh_probe_timeout + 2) * 1000
    others = [r for name, r in by_name.items() if name != paused_droplet.name]
    assert others and all(r.status == "up" for r in others), others
    assert all(r.duration_ms < settings.agent_timeout * 1000 for r in others), others
    # The others were written while the hung one was still being waited for.
    hung_ended = report.started_at + timedelta(milliseconds=hung.duration_ms)
    with console.http() as http:
        for other in others:
            row = http.get(f"/api/v1/toolboxes/{other.toolbox_id}").json()
            assert row["status"] == "up"
            written = when(row["updated_at"])
            assert written < hung_ended - timedelta(seconds=1), (written, hung_ended)
        hung_row = http.get(f"/api/v1/toolboxes/{toolboxes[paused_droplet.name]['id']}").json()
    assert hung_row["status"] == "unreachable"
    assert "agent:" in hung_row["last_error"]


def test_every_action_is_followed_by_a_sync_of_the_toolbox_it_touched(
    console: Console, toolboxes: dict[str, dict[str, Any]], echo_everywhere: str
) -> None:
    toolbox_id = toolboxes["toolbox-1"]["id"]
    with console.http() as http:
        before = http.get(f"/api/v1/toolboxes/{toolbox_id}").json()["last_seen_at"]
        restarted = http.post(f"/api/v1/toolboxes/{toolbox_id}/tools/{echo_everywhere}/restart")
        assert restarted.status_code == 200, restarted.text
        console.call(console.monitor.drain(60))
        after = http.get(f"/api/v1/toolboxes/{toolbox_id}").json()
    assert when(after["last_seen_at"]) > when(before)
    assert when(after["last_state"]["tools"]["observed_at"]) >= when(
        restarted.json()["finished_at"]
    )


def test_sync_route_and_command_import_the_droplets_and_read_every_toolbox(
    console: Console, sandbox: SandboxInfo
) -> None:
    with console.http() as http:
        synced = http.post("/api/v1/toolboxes/sync")
    assert synced.status_code == 200, synced.text
    listed = {t["name"]: t for t in synced.json()["toolboxes"]}
    assert set(listed) >= {d.name for d in sandbox.droplets}
    assert all(t["status"] == "up" and t["last_error"] is None for t in listed.values()), listed
    with console.http() as http:
        metrics = http.get("/metrics").text
    assert 'dtma_sync_toolboxes_total{status="up"}' in metrics
    assert "dtma_sync_duration_seconds_count" in metrics
    settings = console.context.settings
    env = {
        **os.environ,
        "DTMA_DATABASE_URL": settings.database_url,
        "DTMA_DO_API_URL": settings.do_api_url,
        "DTMA_DO_API_TOKEN": sandbox.api_token,
        "DTMA_SSH_KEY_FILE": str(sandbox.operator_key),
        "DTMA_KNOWN_HOSTS_FILE": str(sandbox.known_hosts),
    }
    command = subprocess.run(
        [str(PROJECT_ROOT / ".venv/bin/dtma-console"), "sync"],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )  # fmt: skip
    assert command.returncode == 0, command.stderr
    assert f"sync: 0 created, {len(listed)} updated, 0 removed" in command.stdout
    lines = [line.split("\t") for line in command.stdout.splitlines() if "\t" in line]
    assert sorted((status, name, source) for status, name, source, _ in lines) == [
        ("up", name, "agent") for name in sorted(listed)
    ]
