"""Bad rollout requests get a 4xx with a stable code and start nothing; a toolbox busy with
another run when a rollout starts is `skipped` with the reason, never run twice at once."""

from __future__ import annotations

from typing import Any

import pytest

from tests.rollouts.conftest import Console, wait_for_rollout, wait_for_run

pytestmark = pytest.mark.sandbox

TEMPLATE = "{{ lookup('pipe', 'id') }}"


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"action": "dtma.redeploy", "target": {"all": True, "tag": "dtma"}}, 422, "invalid_input"),
        ({"action": "dtma.redeploy", "target": {}}, 422, "invalid_input"),
        ({"action": "dtma.install", "target": {"all": True}}, 422, "invalid_input"),
        ({"action": "dtma.redeploy", "target": {"tag": TEMPLATE}}, 422, "invalid_input"),
        ({"action": "dtma.redeploy", "target": {"all": True}, "batch_size": 0}, 422,
         "invalid_input"),
        ({"action": "dtma.redeploy", "target": {"all": True}, "batch_size": "0%"}, 422,
         "invalid_input"),
        ({"action": "dtma.redeploy", "target": {"all": True}, "max_failures": -1}, 422,
         "invalid_input"),
        ({"action": "dtma.redeploy", "target": {"all": True}, "params": {"version": TEMPLATE}},
         422, "invalid_input"),
        ({"action": "tool.restart", "target": {"all": True}, "params": {}}, 422, "invalid_input"),
        ({"action": "tool.deploy", "target": {"all": True}, "params": {"name": "x"}}, 422,
         "invalid_input"),
        ({"action": "dtma.redeploy", "target": {"region": "nowhere1"}}, 422, "invalid_input"),
        ({"action": "dtma.redeploy", "target": {"toolbox_ids": ["no-such-toolbox"]}}, 404,
         "toolbox_not_found"),
    ],
)  # fmt: skip
def test_a_bad_rollout_request_is_refused_with_its_code_and_starts_nothing(
    console: Console, body: dict[str, Any], status: int, code: str
) -> None:
    with console.http() as http:
        runs_before = len(http.get("/api/v1/runs").json())
        answer = http.post("/api/v1/rollouts", json=body)
        assert (answer.status_code, answer.json()["error"]["code"]) == (status, code), answer.text
        assert len(http.get("/api/v1/runs").json()) == runs_before


def test_an_unknown_rollout_is_not_found(console: Console) -> None:
    with console.http() as http:
        for answer in (
            http.get("/api/v1/rollouts/nope"),
            http.post("/api/v1/rollouts/nope/cancel"),
        ):
            assert (answer.status_code, answer.json()["error"]["code"]) == (
                404,
                "rollout_not_found",
            )


def test_a_toolbox_busy_at_the_start_is_skipped_with_the_reason(console: Console) -> None:
    busy, free = console.toolboxes["toolbox-2"], console.toolboxes["toolbox-3"]
    with console.http() as http:
        restart = http.post(f"/api/v1/toolboxes/{busy}/dtma/restart", params={"wait": False})
        assert restart.status_code == 202, restart.text
        started = http.post("/api/v1/rollouts", json={
            "action": "tool.restart", "target": {"toolbox_ids": [busy, free]},
            "params": {"name": "no-such-tool"},
        })  # fmt: skip
        assert started.status_code == 202, started.text
        rollout = wait_for_rollout(http, started.json()["id"])
        assert wait_for_run(http, restart.json()["run_id"])["status"] == "successful"
    hosts = {h["name"]: h for h in rollout["hosts"]}
    assert hosts["toolbox-2"]["state"] == "skipped" and hosts["toolbox-2"]["batch"] is None
    assert restart.json()["run_id"] in hosts["toolbox-2"]["message"]
    # toolbox-3 ran (and failed: there is no such tool), in the rollout's one run.
    assert hosts["toolbox-3"]["state"] == "failed" and hosts["toolbox-3"]["run_id"]
    assert "no-such-tool" in hosts["toolbox-3"]["message"]
    assert rollout["status"] == "failed"
