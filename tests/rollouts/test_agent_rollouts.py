"""Agent rollouts over the five droplets through POST /api/v1/rollouts, each outcome read
from the droplets themselves (/health over the published port, the release symlink):
batches of two after a canary, a broken release halting after the canary (rolled back),
a cancel between batches, a non-admin's tag target. The tests run in file order: each
starts from the versions the previous one left."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest

from sandbox.fleet import SandboxInfo
from tests.dtma.conftest import current_release
from tests.rollouts.conftest import Console, versions, wait_for_rollout

pytestmark = pytest.mark.sandbox

NAMES = [f"toolbox-{n}" for n in range(1, 6)]


def _start(console: Console, body: dict[str, Any], token: str | None = None) -> dict[str, Any]:
    with console.http(token) as http:
        started = http.post("/api/v1/rollouts", json=body)
        assert started.status_code == 202, started.text
        return wait_for_rollout(http, started.json()["id"])


def _states(rollout: dict[str, Any]) -> dict[str, tuple[int | None, str]]:
    return {h["name"]: (h["batch"], h["state"]) for h in rollout["hosts"]}


def _run_hosts_with_events(console: Console, run_id: str) -> set[str]:
    with console.http() as http, http.stream("GET", f"/api/v1/runs/{run_id}/events") as events:
        hosts = set()
        for line in events.iter_lines():
            if line.startswith("data: ") and '"host": "' in line:
                hosts.add(line.split('"host": "', 1)[1].split('"', 1)[0])
            if line.startswith("event: end"):
                break
    return hosts


def _operator_key_opens(sandbox: SandboxInfo, name: str) -> bool:
    droplet = sandbox.droplet(name)
    login = subprocess.run(
        ["ssh", "-i", str(sandbox.operator_key), "-o", "IdentitiesOnly=yes",
         "-o", "BatchMode=yes", "-o", f"UserKnownHostsFile={sandbox.known_hosts}",
         "-o", "StrictHostKeyChecking=yes", "-o", "ControlMaster=no",
         f"root@{droplet.address}", "true"],
        capture_output=True, timeout=60,
    )  # fmt: skip
    return login.returncode == 0


def test_an_agent_rollout_in_batches_of_two_reaches_every_droplet(
    console: Console, sandbox: SandboxInfo, releases: dict[str, str]
) -> None:
    assert set(versions(sandbox).values()) == {releases["base"]}
    rollout = _start(console, {
        "action": "dtma.redeploy", "target": {"all": True}, "batch_size": 2,
        "params": {"version": releases["newer"]},
    })  # fmt: skip
    assert rollout["status"] == "successful", rollout
    # A canary of one, then two at a time, in name order.
    assert _states(rollout) == {
        "toolbox-1": (0, "successful"), "toolbox-2": (1, "successful"),
        "toolbox-3": (1, "successful"), "toolbox-4": (2, "successful"),
        "toolbox-5": (2, "successful"),
    }  # fmt: skip
    assert [(b["hosts"], b["done"], b["state"]) for b in rollout["batches"]] == [
        (1, 1, "done"), (2, 2, "done"), (2, 2, "done")
    ]  # fmt: skip
    # Verified on each droplet, then read back by the console itself (its pinned client).
    newer = releases["newer"]
    assert all(
        h["message"] == f"agent {newer} serves; read back by the console (version {newer})"
        for h in rollout["hosts"]
    ), rollout["hosts"]
    assert versions(sandbox) == dict.fromkeys(NAMES, releases["newer"])
    with console.http() as http:  # one run, over the five toolboxes, now unlocked
        run = http.get(f"/api/v1/runs/{rollout['run_id']}").json()
        listed = http.get("/api/v1/toolboxes").json()
    assert run["status"] == "successful" and sorted(run["request"]["hosts"]) == NAMES
    assert {t["active_run_id"] for t in listed} == {None}


def test_a_broken_release_halts_after_the_canary_which_is_rolled_back(
    console: Console, sandbox: SandboxInfo, releases: dict[str, str]
) -> None:
    rollout = _start(console, {
        "action": "dtma.redeploy", "target": {"all": True}, "batch_size": 2,
        "params": {"version": releases["broken"]},
    })  # fmt: skip
    assert rollout["status"] == "halted", rollout
    states = _states(rollout)
    assert states["toolbox-1"] == (0, "rolled_back")
    canary = next(h for h in rollout["hosts"] if h["name"] == "toolbox-1")
    assert "deliberately broken release" in canary["message"]
    assert f"rolled back to {releases['newer']}" in canary["message"]
    assert {states[n] for n in NAMES[1:]} == {(1, "not_started"), (2, "not_started")}
    assert [b["state"] for b in rollout["batches"]] == ["done", "not_started", "not_started"]
    # From outside: the canary serves its previous release again, the others never moved.
    assert versions(sandbox) == dict.fromkeys(NAMES, releases["newer"])
    assert {current_release(d) for d in sandbox.droplets} == {releases["newer"]}
    assert _run_hosts_with_events(console, rollout["run_id"]) == {"toolbox-1"}


def test_cancel_stops_the_rollout_after_the_current_batch(
    console: Console, sandbox: SandboxInfo, releases: dict[str, str]
) -> None:
    body = {"action": "dtma.redeploy", "target": {"all": True}, "batch_size": 1,
            "params": {"version": releases["base"]}}  # fmt: skip
    with console.http() as http:
        started = http.post("/api/v1/rollouts", json=body)
        assert started.status_code == 202, started.text
        rollout_id = started.json()["id"]
        asked = http.post(f"/api/v1/rollouts/{rollout_id}/cancel")  # during the canary
        assert asked.status_code == 202, asked.text
        assert asked.json()["cancel_requested"] is True
        rollout = wait_for_rollout(http, rollout_id)
        again = http.post(f"/api/v1/rollouts/{rollout_id}/cancel")
    assert rollout["status"] == "canceled", rollout
    states = _states(rollout)
    assert states["toolbox-1"] == (0, "successful")  # the batch in progress finished
    assert {states[n][1] for n in NAMES[1:]} == {"not_started"}
    assert (again.status_code, again.json()["error"]["code"]) == (409, "rollout_not_running")
    expected = {"toolbox-1": releases["base"], **dict.fromkeys(NAMES[1:], releases["newer"])}
    assert versions(sandbox) == expected


def test_a_non_admin_tag_target_touches_only_their_own_toolboxes_each_with_its_key(
    console: Console, sandbox: SandboxInfo, releases: dict[str, str]
) -> None:
    _, alice = console.user("alice-rollouts")
    with console.http() as http:
        for name in ("toolbox-4", "toolbox-5"):
            given = http.patch(f"/api/v1/toolboxes/{console.toolboxes[name]}",
                               json={"owner": "alice-rollouts"})  # fmt: skip
            assert given.status_code == 200, given.text
        tags = {t["name"]: t["tags"] for t in http.get("/api/v1/toolboxes").json()}
        # toolbox-5 gets a key of its own (the operator key leaves it): one run, two keys.
        rotated = http.post(f"/api/v1/toolboxes/{console.toolboxes['toolbox-5']}/ssh-key/rotate")
        assert rotated.status_code == 200, rotated.text
    assert not _operator_key_opens(sandbox, "toolbox-5")
    assert all("dtma" in tags[name] for name in NAMES)  # the tag covers all five
    with console.http(alice) as http:
        preview = http.post("/api/v1/rollouts/preview", json={"target": {"tag": "dtma"}})
        assert preview.json()["toolboxes"] == ["toolbox-4", "toolbox-5"]
        foreign = http.post("/api/v1/rollouts", json={
            "action": "dtma.redeploy", "target": {"toolbox_ids": [console.toolboxes["toolbox-1"]]},
        })  # fmt: skip
        assert (foreign.status_code, foreign.json()["error"]["code"]) == (404, "toolbox_not_found")
    before = versions(sandbox)
    rollout = _start(console, {
        "action": "dtma.redeploy", "target": {"tag": "dtma"}, "batch_size": 1, "canary": False,
        "params": {"version": releases["base"]},
    }, alice)  # fmt: skip
    assert rollout["status"] == "successful", rollout
    assert _states(rollout) == {"toolbox-4": (0, "successful"), "toolbox-5": (1, "successful")}
    assert rollout["user"] == "alice-rollouts"
    # Theirs moved; the three others are as they were.
    expected = {**before, "toolbox-4": releases["base"], "toolbox-5": releases["base"]}
    assert versions(sandbox) == expected
