"""The local executor's global cap (DTMA_MAX_CONCURRENT_RUNS): with one slot, runs on
three toolboxes execute one after another; the waiting ones are `queued` with their
position, counted in /metrics, and a queued run canceled never starts."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from sandbox.fleet import SandboxInfo
from tests.api.console import Console, console_env
from tests.distributed.conftest import API_PORTS, TOOL, TOOLBOXES, Cluster, wait_for_end

pytestmark = pytest.mark.sandbox

LOCAL_PORT = API_PORTS[1] + 1


@pytest.fixture(scope="module")
def one_slot_console(
    sandbox: SandboxInfo,
    cluster: Cluster,
    deployed: list[str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Console]:
    workdir: Path = tmp_path_factory.mktemp("local-queue")
    env = console_env(sandbox, workdir, f"sqlite:///{workdir / 'console.db'}", LOCAL_PORT)
    served = Console(env={**env, "DTMA_MAX_CONCURRENT_RUNS": "1"}, log_path=workdir / "log")
    created = served.cli("token", "create", "--user", "root", "--admin")
    assert created.returncode == 0, created.stderr
    served.token = created.stdout.strip().splitlines()[-1]
    served.start()
    try:
        with served.http() as http:
            assert http.post("/api/v1/toolboxes/sync").status_code == 200
        yield served
    finally:
        served.stop()


def test_one_slot_queues_runs_in_order_and_a_queued_cancel_never_starts(
    one_slot_console: Console,
) -> None:
    with one_slot_console.http() as http:
        ids = {t["name"]: t["id"] for t in http.get("/api/v1/toolboxes").json()}
        started = [
            http.post(
                f"/api/v1/toolboxes/{ids[name]}/tools/{TOOL}/restart", params={"wait": False}
            ).json()["run_id"]
            for name in TOOLBOXES
        ]
        first, second, third = (http.get(f"/api/v1/runs/{r}").json() for r in started)
        assert first["status"] == "running" and first["queue_position"] is None
        assert (second["status"], second["queue_position"]) == ("queued", 0)
        assert (third["status"], third["queue_position"]) == ("queued", 1)
        metrics = http.get("/metrics").text
        assert re.search(r"^dtma_runs_queued 2\.0$", metrics, re.MULTILINE), metrics

        canceled = http.post(f"/api/v1/runs/{third['id']}/cancel")
        assert canceled.status_code == 200, canceled.text
        assert canceled.json()["status"] == "canceled"
        assert canceled.json()["started_at"] is None
        assert http.get(f"/api/v1/runs/{third['id']}/events").text.count("data: {") == 1

        runs = [wait_for_end(http, r) for r in started[:2]]
        assert [r["status"] for r in runs] == ["successful", "successful"], runs
        ended = datetime.fromisoformat(str(runs[0]["finished_at"]))
        assert ended <= datetime.fromisoformat(str(runs[1]["started_at"]))
        metrics = http.get("/metrics").text
        assert re.search(r"^dtma_runs_queued 0\.0$", metrics, re.MULTILINE)
        toolbox = http.get(f"/api/v1/toolboxes/{ids[TOOLBOXES[2]]}").json()
        assert toolbox["active_run_id"] is None
