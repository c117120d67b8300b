"""The same service on PostgreSQL, against the sandbox: import, a verified tool action,
runs and their stored events, the read path's fallback — all persisted in PostgreSQL."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox.fleet import SandboxInfo
from tests.api.console import Console, inspect_tool, new_console
from tests.api.postgres import create_database
from tests.api.test_sandbox_actions import read_sse

pytestmark = pytest.mark.sandbox


@pytest.fixture(scope="module")
def pg_console(
    sandbox: SandboxInfo, postgres_server: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Console]:
    workdir: Path = tmp_path_factory.mktemp("pg-console")
    database = create_database(postgres_server, f"console_{uuid.uuid4().hex[:8]}")
    served = new_console(sandbox, workdir, database)
    created = served.cli("token", "create", "--user", "root", "--admin")
    assert created.returncode == 0, created.stderr
    served.token = created.stdout.strip().splitlines()[-1]
    served.start()
    yield served
    served.stop()


def test_postgresql_backed_console_runs_and_stores_a_verified_action(
    pg_console: Console, sandbox: SandboxInfo
) -> None:
    container = sandbox.droplet("toolbox-2").container
    with pg_console.http() as http:
        synced = http.post("/api/v1/toolboxes/sync")
        assert synced.status_code == 200, synced.text
        toolbox = next(t for t in synced.json()["toolboxes"] if t["name"] == "toolbox-2")
        tools = f"/api/v1/toolboxes/{toolbox['id']}/tools"
        deployed = http.post(tools, json={"name": "pgtool", "image": "dtma-tool-echo:1.0"})
        assert deployed.status_code == 200, deployed.text
        try:
            before = inspect_tool(container, "pgtool")
            assert before is not None and before["State"]["Running"]
            restarted = http.post(f"{tools}/pgtool/restart")
            assert restarted.status_code == 200 and restarted.json()["success"] is True
            after = inspect_tool(container, "pgtool")
            assert after is not None
            assert after["State"]["StartedAt"] > before["State"]["StartedAt"]

            run_id = restarted.json()["run_id"]
            stored = http.get(f"/api/v1/runs/{run_id}").json()
            assert (stored["status"], stored["result"]["success"]) == ("successful", True)
            events = [
                e
                for e in read_sse(http, f"/api/v1/runs/{run_id}/events")
                if e["event"] == "message"
            ]
            assert [json.loads(e["data"])["type"] for e in events][-1] == "run_end"
            assert [int(e["id"]) for e in events] == list(range(1, len(events) + 1))

            # This console never installed the agent, so its own token is not the agent's:
            # on the agent's 401 it learns the droplet's token over its pinned SSH channel
            # (shared credentials, DESIGN.md "DTMA agent") and reads the agent itself.
            status = http.get(f"/api/v1/toolboxes/{toolbox['id']}/dtma/status").json()
            assert status["source"] == "agent", status
            assert status["data"]["tool_instances"]["total"] >= 1
        finally:
            removed = http.delete(f"{tools}/pgtool")
        assert removed.status_code == 200, removed.text
        assert inspect_tool(container, "pgtool") is None
