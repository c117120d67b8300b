"""A deploy's environment holds secrets, however short: a 5-character value goes to the
container and nowhere else readable — not a stored event, the run's record, an API answer,
the kept run directory (DTMA_KEEP_RUN_DIRS=1) or the console's log. Through the path a
user takes: `POST /api/v1/toolboxes/{id}/tools` on the console served for real."""

from __future__ import annotations

import json
import secrets
import string
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from api.models import Run, RunEvent
from sandbox.fleet import SandboxInfo
from tests.api.conftest import wait_for_run
from tests.api.console import Console, inspect_tool, sibling_console

pytestmark = pytest.mark.sandbox

TOOL = "short-secret"


@pytest.fixture
def keeping_run_dirs(console: Console, tmp_path: Path) -> Iterator[Console]:
    """A console with DTMA_KEEP_RUN_DIRS=1 beside the session's, on its database."""
    keeping = sibling_console(console, tmp_path / "keeping", DTMA_KEEP_RUN_DIRS="1")
    keeping.start()
    try:
        yield keeping
    finally:
        keeping.stop()


def stored(console: Console, run_id: str) -> dict[str, Any]:
    engine = create_engine(console.env["DTMA_DATABASE_URL"])
    try:
        with Session(engine) as session:
            run = session.get(Run, run_id)
            assert run is not None
            events = list(session.scalars(select(RunEvent).where(RunEvent.run_id == run_id)))
            return {
                "run": {c: getattr(run, c) for c in ("request", "result", "message", "error")},
                "events": [{"task": e.task, "data": e.data} for e in events],
            }
    finally:
        engine.dispose()


def test_a_five_character_secret_in_a_deploys_env_appears_nowhere_but_the_container(
    keeping_run_dirs: Console, sandbox: SandboxInfo, toolboxes: dict[str, dict[str, Any]]
) -> None:
    console = keeping_run_dirs
    secret = "Zq" + "".join(secrets.choice(string.digits) for _ in range(3))
    toolbox_id = toolboxes["toolbox-2"]["id"]
    container = sandbox.droplet("toolbox-2").container
    with console.http() as http:
        deployed = http.post(
            f"/api/v1/toolboxes/{toolbox_id}/tools",
            json={"name": TOOL, "image": "dtma-tool-echo:1.0", "env": {"SHORT_PW": secret}},
        )
        assert deployed.status_code == 200, deployed.text
        run_id = deployed.json()["run_id"]
        detail = http.get(f"/api/v1/runs/{run_id}")
        events = http.get(f"/api/v1/runs/{run_id}/events", params={"after": 0})
        assert detail.status_code == 200 and events.status_code == 200
        try:
            state = inspect_tool(container, TOOL)
            assert state is not None and f"SHORT_PW={secret}" in state["Config"]["Env"]
        finally:
            removed = http.delete(f"/api/v1/toolboxes/{toolbox_id}/tools/{TOOL}")
            assert removed.status_code == 200, removed.text
            wait_for_run(http, removed.json()["run_id"])
    record = stored(console, run_id)
    assert len(record["events"]) > 10 and record["events"][0]["data"]["action"] == "tool.deploy"
    run_dir = Path(console.env["DTMA_RUNS_DIR"]) / run_id
    kept = [p for p in run_dir.rglob("*") if p.is_file()]
    assert kept, "DTMA_KEEP_RUN_DIRS=1 keeps the run dir"
    assert not [p for p in run_dir.rglob("*") if p.name.endswith("-partial.json")]
    places = {
        "stored events and run": json.dumps(record, default=str),
        "API answers": detail.text + events.text + deployed.text,
        "console log": console.log_path.read_text(),
        **{
            f"run dir file {p.relative_to(run_dir)}": p.read_bytes().decode("latin-1") for p in kept
        },
    }
    assert [where for where, text in places.items() if secret in text] == []
