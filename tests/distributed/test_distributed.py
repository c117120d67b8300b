"""Two console processes and two Celery workers on one PostgreSQL and one Redis: runs are
spread over the workers, the per-toolbox lock holds across processes, a worker killed
mid-run leaves an `interrupted` run (never a re-run), any console streams any run's events
with resume, and a cancel from the other console stops the run on its worker."""

from __future__ import annotations

import itertools
import json
import threading
from datetime import datetime
from typing import Any

import psutil
import pytest
from celery import Celery

from tests.api.console import wait_until
from tests.api.test_sandbox_actions import read_sse
from tests.distributed.conftest import (
    LEASE_SECONDS,
    TOOL,
    TOOLBOXES,
    Cluster,
    _id,
    ensure_running,
    wait_for_end,
)

pytestmark = pytest.mark.sandbox


def _run_marker(process: psutil.Process) -> str | None:
    try:
        return process.environ().get("DTMA_RUN_ID")
    except psutil.Error:
        return None


def _events(cluster: Cluster, api: int, run_id: str, after: int = 0) -> list[dict[str, Any]]:
    headers = {"Last-Event-ID": str(after)} if after else None
    with cluster.apis[api].http() as http:
        messages = read_sse(http, f"/api/v1/runs/{run_id}/events", headers=headers)
    assert messages[-1]["event"] == "end"
    return [json.loads(m["data"]) for m in messages if m["event"] == "message"]


def _started_running(cluster: Cluster, api: int, run_id: str) -> dict[str, Any]:
    """The run once a worker holds it and ansible has begun (its first event stored)."""

    def running() -> dict[str, Any] | None:
        with cluster.apis[api].http() as http:
            run: dict[str, Any] = http.get(f"/api/v1/runs/{run_id}").json()
            return run if run["status"] == "running" else None

    found: dict[str, Any] = wait_until(running, 60, f"run {run_id} to run on a worker")
    wait_until(
        lambda: any(_run_marker(p) == run_id for p in psutil.process_iter()),
        60,
        "ansible to start",
    )
    return found


def test_runs_spread_over_both_workers_and_one_toolbox_runs_one_at_a_time(
    cluster: Cluster, deployed: list[str]
) -> None:
    run_ids: dict[str, list[str]] = {name: [] for name in TOOLBOXES}
    busy_answers: list[Any] = []

    def restarts(index: int, name: str) -> None:
        for round_ in range(3):
            api = cluster.apis[(index + round_) % 2]
            other = cluster.apis[(index + round_ + 1) % 2]
            path = f"/api/v1/toolboxes/{_id(cluster, name)}/tools/{TOOL}/restart"
            with api.http() as http, other.http() as second:
                started = http.post(path, params={"wait": False})
                assert started.status_code == 202, started.text
                run_id = started.json()["run_id"]
                run_ids[name].append(run_id)
                if round_ == 0:  # the other console sees the toolbox locked
                    busy_answers.append(second.post(path, params={"wait": False}))
                run = wait_for_end(http, run_id)
                assert run["success"] is True, run

    threads = [
        threading.Thread(target=restarts, args=(i, name)) for i, name in enumerate(TOOLBOXES)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)

    every = [*deployed, *(r for ids in run_ids.values() for r in ids)]
    assert len(every) == 12
    with cluster.apis[1].http() as http:
        runs = {r: http.get(f"/api/v1/runs/{r}").json() for r in every}
        listed = http.get("/api/v1/runs", params={"limit": 100}).json()
    assert all(run["status"] == "successful" for run in runs.values()), runs
    owners = {run["owner"] for run in runs.values()}
    workers = {f"{w.pid}" for w in cluster.workers}
    assert {owner.rsplit(":", 1)[1] for owner in owners} == workers, owners
    assert {r["id"] for r in listed} >= set(every)

    for answer in busy_answers:
        assert answer.status_code == 409, answer.text
        assert answer.json()["error"]["code"] == "toolbox_busy"
    for name in TOOLBOXES:
        mine = sorted(
            (r for r in runs.values() if r["toolbox_id"] == _id(cluster, name)),
            key=lambda r: r["started_at"],
        )
        assert len(mine) == 4
        for before, after in itertools.pairwise(mine):
            ended = datetime.fromisoformat(before["finished_at"])
            assert ended <= datetime.fromisoformat(after["started_at"]), (before, after)


def test_a_worker_killed_mid_run_leaves_an_interrupted_run_that_is_never_rerun(
    cluster: Cluster, deployed: list[str]
) -> None:
    toolbox_id = _id(cluster, "toolbox-3")
    path = f"/api/v1/toolboxes/{toolbox_id}/tools/{TOOL}/restart"
    with cluster.apis[0].http() as http:
        started = http.post(path, params={"wait": False})
        assert started.status_code == 202, started.text
    run_id = started.json()["run_id"]
    run = _started_running(cluster, 0, run_id)
    worker = cluster.worker_owned(run["owner"])
    assert worker is not None, run["owner"]
    worker.kill()
    try:
        with cluster.apis[1].http() as http:
            ended = wait_for_end(http, run_id, timeout=LEASE_SECONDS * 3 + 10)
            assert ended["status"] == "interrupted", ended
            assert ended["success"] is False
            assert run["owner"] in ended["error"] and "not retried" in ended["error"]
            assert http.get(f"/api/v1/toolboxes/{toolbox_id}").json()["active_run_id"] is None
            events_then = len(_events(cluster, 1, run_id))

            # The run id comes again (as a broker redelivery would): nothing executes it.
            broker = Celery("dtma", broker=cluster.env["DTMA_BROKER_URL"])
            broker.send_task("dtma.execute_run", args=[run_id], queue="dtma")
            broker.close()
            again = http.post(path)  # the toolbox is usable: the other worker runs this
            assert again.status_code == 200, again.text
            assert again.json()["success"] is True
            after = http.get(f"/api/v1/runs/{run_id}").json()
            assert (after["status"], after["finished_at"]) == ("interrupted", ended["finished_at"])
            assert len(_events(cluster, 1, run_id)) == events_then
            assert not [p for p in psutil.process_iter() if _run_marker(p) == run_id]
    finally:
        ensure_running(worker)


def test_the_other_console_streams_a_run_through_a_kill_and_a_restart(
    cluster: Cluster, deployed: list[str]
) -> None:
    toolbox_id = _id(cluster, "toolbox-2")
    with cluster.apis[1].http() as http:
        started = http.post(
            f"/api/v1/toolboxes/{toolbox_id}/tools/{TOOL}/restart", params={"wait": False}
        )
        assert started.status_code == 202, started.text
    run_id = started.json()["run_id"]
    _started_running(cluster, 1, run_id)
    # Console 0 dies and comes back while console 1's run is on a worker: the run goes on.
    cluster.apis[0].kill()
    cluster.apis[0].start()
    whole = _events(cluster, 0, run_id)
    assert [e["seq"] for e in whole] == list(range(1, len(whole) + 1))
    assert whole[-1]["type"] == "run_end"
    resumed = _events(cluster, 1, run_id, after=3)
    assert resumed == whole[3:]
    with cluster.apis[0].http() as http:
        run = http.get(f"/api/v1/runs/{run_id}").json()
    assert (run["status"], run["success"]) == ("successful", True), run


def test_cancel_from_the_other_console_stops_the_run_on_its_worker(
    cluster: Cluster, deployed: list[str]
) -> None:
    toolbox_id = _id(cluster, "toolbox-1")
    with cluster.apis[0].http() as http:
        started = http.post(
            f"/api/v1/toolboxes/{toolbox_id}/tools/{TOOL}/restart", params={"wait": False}
        )
        assert started.status_code == 202, started.text
    run_id = started.json()["run_id"]
    _started_running(cluster, 0, run_id)
    with cluster.apis[1].http() as http:
        canceled = http.post(f"/api/v1/runs/{run_id}/cancel")
        assert canceled.status_code == 200, canceled.text
        assert canceled.json()["status"] == "canceled", canceled.json()
        assert not [p for p in psutil.process_iter() if _run_marker(p) == run_id]
        assert http.get(f"/api/v1/toolboxes/{toolbox_id}").json()["active_run_id"] is None
        assert http.post(f"/api/v1/runs/{run_id}/cancel").status_code == 409
    events = _events(cluster, 0, run_id)
    assert events[-1]["type"] == "run_end"


def test_a_rollout_from_one_console_runs_on_a_worker_and_the_other_console_sees_it(
    cluster: Cluster, deployed: list[str]
) -> None:
    names = ["toolbox-1", "toolbox-2"]
    body = {
        "action": "tool.restart",
        "target": {"toolbox_ids": [_id(cluster, n) for n in names]},
        "batch_size": 1,
        "params": {"name": TOOL},
    }
    with cluster.apis[0].http() as http:
        started = http.post("/api/v1/rollouts", json=body)
        assert started.status_code == 202, started.text
    rollout_id = started.json()["id"]

    def ended() -> dict[str, Any] | None:
        with cluster.apis[1].http() as http:
            seen: dict[str, Any] = http.get(f"/api/v1/rollouts/{rollout_id}").json()
        return None if seen["status"] == "running" else seen

    rollout: dict[str, Any] = wait_until(ended, 300, f"rollout {rollout_id} to end")
    assert rollout["status"] == "successful", rollout
    hosts = {h["name"]: h for h in rollout["hosts"]}
    assert {n: (h["batch"], h["state"]) for n, h in hosts.items()} == {
        "toolbox-1": (0, "successful"), "toolbox-2": (1, "successful"),
    }  # fmt: skip
    assert {h["run_id"] for h in hosts.values()} == {rollout["run_id"]}
    with cluster.apis[1].http() as http:  # one run over both toolboxes, held by a worker
        run = http.get(f"/api/v1/runs/{rollout['run_id']}").json()
        listed = {t["name"]: t for t in http.get("/api/v1/toolboxes").json()}
    assert (run["status"], run["success"]) == ("successful", True), run
    assert sorted(run["request"]["hosts"]) == names
    assert cluster.worker_owned(run["owner"]) is not None, run["owner"]
    assert {listed[n]["active_run_id"] for n in names} == {None}
    events = _events(cluster, 1, rollout["run_id"])
    assert events[-1]["type"] == "run_end"
    assert {e.get("host") for e in events if e["type"] in ("task_ok", "task_changed")} >= set(names)
