"""Real runs through ansible-runner against sandbox droplets."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import stat
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from runner import RequestError, RunEvent, RunRequest, run_playbook, start_run
from runner.execute import Execution
from runner.request import validate_request
from sandbox import droplets, fleet
from sandbox.config import SandboxConfig
from tests.runner.helpers import assert_event_order, docker_inspect, run_processes

pytestmark = pytest.mark.sandbox

MakeRequest = Callable[..., RunRequest]


def test_restart_succeeds_and_the_container_really_restarted(
    sandbox: fleet.SandboxInfo, make_request: MakeRequest, echo_instance: str, runs_dir: Path
) -> None:
    container = sandbox.droplet("toolbox-1").container
    before = docker_inspect(container, echo_instance, "{{.State.StartedAt}}")
    events: list[RunEvent] = []
    request = make_request(
        "tool_restart.yml", ["toolbox-1"], extravars={"tool_instance_name": echo_instance},
        action="tool.restart", toolbox_id="tb-1",
    )  # fmt: skip
    result = run_playbook(request, on_event=events.append)
    started_at, state = docker_inspect(
        container, echo_instance, "{{.State.StartedAt}} {{.State.Status}}"
    ).split()
    assert result.status == "successful", result.error
    assert result.success and result.error is None
    assert state == "running" and started_at != before
    assert result.data["tool_result"]["started_at"] == started_at
    assert result.data["per_host"]["toolbox-1"]["tool_result"]["state_after"] == "running"
    assert result.message == (
        f"Tool instance '{echo_instance}' on toolbox-1 restarted: now running (was running)."
    )
    assert (result.action, result.toolbox_id) == ("tool.restart", "tb-1")
    assert result.hosts["toolbox-1"].changed == 1 and result.hosts["toolbox-1"].failed == 0
    assert_event_order(events, result.run_id)
    assert events[-1].data["status"] == "successful"
    assert not (runs_dir / result.run_id).exists()  # no retention by default


def test_an_unknown_tool_instance_fails_with_the_role_message(make_request: MakeRequest) -> None:
    result = run_playbook(
        make_request("tool_restart.yml", ["toolbox-1"], extravars={"tool_instance_name": "nope"})
    )
    assert result.status == "failed" and not result.success
    assert result.error == "tool instance 'nope' not found on toolbox-1"
    failed = [t for t in result.tasks if t.status == "failed"]
    assert [t.msg for t in failed] == [result.error]
    assert result.message == f"tool.restart failed on toolbox-1: {result.error}"


def test_a_stopped_droplet_is_unreachable(
    sandbox: fleet.SandboxInfo, sandbox_config: SandboxConfig, make_request: MakeRequest
) -> None:
    droplet = sandbox.droplets[-1]
    subprocess.run(["docker", "stop", droplet.container], check=True, capture_output=True)
    try:
        result = run_playbook(
            make_request("tool_restart.yml", [droplet.name],
                         extravars={"tool_instance_name": "echo"})
        )  # fmt: skip
    finally:
        droplets.ensure_running(droplet.container)
        droplets.wait_for_sshd(droplet.address, 120)
        boot = fleet.ssh_command(sandbox_config, droplet.address, "systemctl", "is-system-running",
                                 "--wait")  # fmt: skip
        subprocess.run(boot, capture_output=True, timeout=180)
    assert result.status == "unreachable" and not result.success
    assert f"ssh: connect to host {droplet.address} port 22: Connection refused" in str(
        result.error
    )
    assert result.hosts[droplet.name].unreachable == 1


def test_a_changed_host_key_fails_the_run_plainly(
    sandbox: fleet.SandboxInfo, make_request: MakeRequest, tmp_path: Path
) -> None:
    key = tmp_path / "other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    key_type, blob = key.with_suffix(".pub").read_text().split()[:2]
    pins = f"{sandbox.droplet('toolbox-1').address} {key_type} {blob}\n"
    result = run_playbook(make_request("probe.yml", ["toolbox-1"], known_hosts=pins))
    assert result.status == "unreachable"
    assert result.error == "host key for toolbox-1 changed"


def test_a_timeout_stops_the_run_and_leaves_no_process(make_request: MakeRequest) -> None:
    seen_running: list[str] = []

    def watch(event: RunEvent) -> None:
        if event.type == "task_start" and event.task == "Sleep on the toolbox":
            seen_running.extend(run_processes(event.run_id))

    started = time.monotonic()
    result = run_playbook(
        make_request("probe.yml", ["toolbox-2"], extravars={"probe_sleep": 300}, timeout=30),
        on_event=watch,
    )
    elapsed = time.monotonic() - started
    assert result.status == "timeout" and not result.success
    assert result.error == "timed out after 30 s while running 'Sleep on the toolbox' on toolbox-2"
    assert elapsed < 30 + 15
    assert any("ansible-playbook" in p for p in seen_running), seen_running
    assert run_processes(result.run_id) == []


def _ssh_processes(run_id: str) -> list[str]:
    return [p for p in run_processes(run_id) if p.split()[1] in ("ssh", "ssh:")]


def test_cancel_mid_run_stops_it_and_leaves_no_process(make_request: MakeRequest) -> None:
    handle = start_run(make_request("probe.yml", ["toolbox-2"], extravars={"probe_sleep": 300}))
    seen: list[RunEvent] = []
    running: list[str] = []

    async def follow() -> None:
        async for event in handle.events():
            seen.append(event)
            if event.type == "task_start" and event.task == "Sleep on the toolbox":
                deadline = time.monotonic() + 30
                while not _ssh_processes(handle.run_id) and time.monotonic() < deadline:
                    await asyncio.sleep(0.1)
                running.extend(run_processes(handle.run_id))
                handle.cancel()

    asyncio.run(asyncio.wait_for(follow(), timeout=240))
    result = handle.result(timeout=30)
    assert result.status == "canceled" and not result.success
    assert result.error == "canceled on request while running 'Sleep on the toolbox' on toolbox-2"
    assert any("ansible-playbook" in p for p in running), running
    assert any(p.split()[1] == "ssh" for p in running), running
    assert run_processes(handle.run_id) == []
    assert_event_order(seen, handle.run_id)
    assert seen[-1].data["status"] == "canceled"


def test_a_syntax_error_is_an_error_with_ansible_message(make_request: MakeRequest) -> None:
    events: list[RunEvent] = []
    result = run_playbook(make_request("syntax_error.yml", ["toolbox-1"]), on_event=events.append)
    assert result.status == "error" and not result.success
    assert "conflicting action statements" in str(result.error)
    assert result.tasks == []
    assert_event_order(events, result.run_id)


def _canary() -> tuple[Path, str]:
    marker = Path(f"/tmp/pwned-{uuid.uuid4().hex}")
    return marker, "{{ lookup('pipe', 'touch " + str(marker) + "') }}"


def test_a_templated_value_is_refused_before_anything_starts(
    make_request: MakeRequest, runs_dir: Path
) -> None:
    marker, payload = _canary()
    with pytest.raises(RequestError) as refused:
        run_playbook(make_request("probe.yml", ["toolbox-1"], extravars={"probe_value": payload}))
    assert refused.value.field == "probe_value"
    assert not marker.exists()
    assert not runs_dir.exists()  # no run was even prepared


def _run_unchecked(make_request: MakeRequest, extravars: dict[str, str]) -> object:
    """Execute a request whose extravars skipped validation: the second line of defence."""
    valid = validate_request(make_request("probe.yml", ["toolbox-1"]))
    return Execution(dataclasses.replace(valid, extravars=extravars)).run()


def test_a_templated_value_that_got_past_validation_is_still_only_data(
    make_request: MakeRequest,
) -> None:
    marker, payload = _canary()
    result = _run_unchecked(make_request, {"probe_value": payload})
    assert result.status == "successful", result.error  # type: ignore[attr-defined]
    assert not marker.exists()
    echoed = result.data["probe_result"]["value"]  # type: ignore[attr-defined]
    assert echoed == payload  # the toolbox received the literal text


def test_the_canary_fires_when_values_are_not_marked_unsafe(
    make_request: MakeRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Proves the injection tests above can fail: without `!unsafe` ansible templates."""
    monkeypatch.setattr("runner.execute.unsafe_yaml", lambda values: yaml.safe_dump(values))
    marker, payload = _canary()
    try:
        _run_unchecked(make_request, {"probe_value": payload})
        assert marker.exists()
    finally:
        marker.unlink(missing_ok=True)


def _needles(sandbox: fleet.SandboxInfo, *secrets: str) -> list[str]:
    key_lines = [
        line for line in sandbox.operator_key.read_text().splitlines() if "-----" not in line
    ]
    return [sandbox.api_token, *secrets, *key_lines]


def test_secrets_never_reach_events_results_or_the_run_directory(
    sandbox: fleet.SandboxInfo,
    make_request: MakeRequest,
    runs_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DTMA_KEEP_RUN_DIRS", "1")
    secret = f"probe-secret-{uuid.uuid4().hex}"
    events: list[RunEvent] = []
    result = run_playbook(
        make_request("probe.yml", ["toolbox-1"],
                     extravars={"probe_value": "v", "probe_secret": secret}),
        on_event=events.append,
    )  # fmt: skip
    assert result.status == "successful", result.error
    # The role printed the secret without no_log: it reached the run and was scrubbed.
    assert any(e.data.get("msg") == "secret is ********" for e in events)
    run_dir = runs_dir / result.run_id
    assert stat.S_IMODE(run_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE(runs_dir.stat().st_mode) == 0o700
    files = [p for p in run_dir.rglob("*") if not p.is_dir()]
    assert files and all(p.is_file() for p in files)  # no pipe left behind
    texts = {
        "events": json.dumps([e.model_dump(mode="json") for e in events]),
        "result": result.model_dump_json(),
        **{str(p): p.read_bytes().decode(errors="replace") for p in files},
    }
    for needle in _needles(sandbox, secret):
        leaks = [where for where, text in texts.items() if needle in text]
        assert leaks == [], f"a secret appears in {leaks}"


def test_a_secret_output_reaches_only_the_caller(
    sandbox: fleet.SandboxInfo,
    make_request: MakeRequest,
    runs_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """How the console reads an agent token from a droplet (playbooks/dtma_token_read.yml)."""
    monkeypatch.setenv("DTMA_KEEP_RUN_DIRS", "1")
    events: list[RunEvent] = []
    request = make_request("secret_output.yml", ["toolbox-1"], secret_outputs=["probe_token"])
    result = run_playbook(request, on_event=events.append)
    assert result.success, result.error
    secret = result.secret_output("probe_token")["toolbox-1"]
    assert secret.startswith("made-") and len(secret) == 37
    files = [p for p in (runs_dir / result.run_id).rglob("*") if p.is_file()]
    texts = {
        "events": json.dumps([e.model_dump(mode="json") for e in events]),
        "result": result.model_dump_json() + repr(result),
        **{str(p): p.read_bytes().decode(errors="replace") for p in files},
    }
    assert [where for where, text in texts.items() if secret in text] == []


def test_parallel_runs_and_connection_reuse(
    sandbox: fleet.SandboxInfo, make_request: MakeRequest
) -> None:
    handles = [start_run(make_request("probe.yml", [h])) for h in ("toolbox-1", "toolbox-2")]
    results = [h.result(timeout=240) for h in handles]
    assert [r.status for r in results] == ["successful", "successful"]
    assert [list(r.hosts) for r in results] == [["toolbox-1"], ["toolbox-2"]]
    # Finished runs leave their ControlPersist masters (keyed by the pins) for later runs...
    pins = hashlib.sha256(sandbox.known_hosts.read_bytes()).hexdigest()[:12]
    assert any(f"-{pins} [mux]" in p for p in _all_processes())
    # ...and the next run rides on one instead of opening its own.
    again = run_playbook(make_request("probe.yml", ["toolbox-1"]))
    assert again.success
    assert [p for p in run_processes(again.run_id) if "[mux]" in p] == []


def _all_processes() -> list[str]:
    listing = subprocess.run(["ps", "-eww", "-o", "pid=,args="], capture_output=True, text=True)
    return listing.stdout.splitlines()


def test_a_handle_streams_to_several_consumers_and_resumes_after_a_seq(
    make_request: MakeRequest,
) -> None:
    persisted: list[RunEvent] = []
    handle = start_run(make_request("probe.yml", ["toolbox-3"]), on_event=persisted.append)

    async def consume(after: int) -> list[int]:
        return [event.seq async for event in handle.events(after=after)]

    async def both() -> tuple[list[int], list[int], str]:
        everything, resumed = await asyncio.gather(consume(0), consume(3))
        result = await handle.wait()
        return everything, resumed, result.status

    everything, resumed, status = asyncio.run(asyncio.wait_for(both(), timeout=240))
    assert status == "successful" and handle.done
    assert everything == list(range(1, len(everything) + 1)) and len(everything) > 10
    assert resumed == everything[3:]
    assert [e.seq for e in persisted] == everything
    late = asyncio.run(consume(len(everything) - 1))  # a client reconnecting after the end
    assert late == [everything[-1]]


def test_a_cancel_right_after_start_ends_canceled_with_nothing_left(
    make_request: MakeRequest,
) -> None:
    handle = start_run(make_request("probe.yml", ["toolbox-1"], extravars={"probe_sleep": 300}))
    handle.cancel()
    result = handle.result(timeout=120)
    assert result.status == "canceled" and result.error is not None
    assert result.error.startswith("canceled on request")
    assert run_processes(handle.run_id) == []
