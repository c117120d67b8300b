"""Reads that scale, on the console served with its default DTMA_READ_FRESH_SECONDS (2 s):
a read within the window reuses the last live answer and says so (its live source kept,
`cached: true`, `age_ms`); concurrent reads of one toolbox share one live read; an action on
the toolbox makes the next read newer than the action's end."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.api.console import Console, sibling_console

pytestmark = pytest.mark.sandbox


@pytest.fixture
def default_window(console: Console, tmp_path: Path) -> Iterator[Console]:
    """A console with the window at its default beside the session's, on its database."""
    default = sibling_console(console, tmp_path / "default-window", DTMA_READ_FRESH_SECONDS=None)
    default.start()
    try:
        yield default
    finally:
        default.stop()


def when(answer: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(answer["observed_at"])


def test_fresh_reads_reuse_the_last_live_answer_and_say_so(
    default_window: Console, toolboxes: dict[str, dict[str, Any]]
) -> None:
    path = f"/api/v1/toolboxes/{toolboxes['toolbox-2']['id']}/dtma/status"
    with default_window.http() as http:
        time.sleep(2.1)  # past the window of any earlier read
        live = http.get(path).json()
        again = http.get(path).json()
        assert (live["source"], live["cached"], live["age_ms"]) == ("agent", False, None)
        assert (again["source"], again["cached"], again["stale"]) == ("agent", True, False)
        assert again["observed_at"] == live["observed_at"] and again["data"] == live["data"]
        assert 0 <= again["age_ms"] <= 2000

        time.sleep(2.1)
        later = http.get(path).json()
        assert later["cached"] is False and when(later) > when(live)

        # Eight readers at once past the window: one live read answers them all.
        time.sleep(2.1)
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda _: http.get(path).json(), range(8)))
        assert {a["source"] for a in answers} == {"agent"}
        assert len({a["observed_at"] for a in answers}) == 1, answers

        # An action ends after the last answer: the next read is newer than its end.
        restarted = http.post(path.replace("/status", "/restart"))
        assert restarted.status_code == 200, restarted.text
        run = http.get(f"/api/v1/runs/{restarted.json()['run_id']}").json()
        after = http.get(path).json()
        assert when(after) >= datetime.fromisoformat(run["finished_at"]), (after, run)
        assert after["data"]["started_at"] != live["data"]["started_at"]
