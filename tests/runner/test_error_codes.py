"""The error-code table: every phrase it keys on is still in the roles, every code has a
fitting HTTP status, and results built from real-shaped events carry the right code."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from runner import ConsoleResult, error_codes
from runner.events import EventNormaliser
from runner.models import RunEvent
from runner.redact import Redactor
from runner.result import ResultBuilder

ROLES = Path(__file__).resolve().parents[2] / "roles"
PHRASED = [entry for entry in error_codes.TABLE if entry.phrases]


def _roles_text() -> str:
    """Every role's tasks as one text, whitespace folded the way YAML folds `>-` blocks."""
    files = sorted(ROLES.glob("*/tasks/*.yml"))
    assert len(files) > 20, f"roles not found under {ROLES}"
    return re.sub(r"\s+", " ", "\n".join(path.read_text() for path in files))


@pytest.mark.parametrize(
    ("code", "phrase"),
    [(entry.code, phrase) for entry in PHRASED for phrase in entry.phrases],
)
def test_each_phrase_is_still_in_a_roles_failure_message(code: str, phrase: str) -> None:
    assert phrase in _roles_text(), (
        f"'{phrase}' ({code}) is in no role's tasks any more: keep the phrase in the failure "
        "message, or change runner/error_codes.py with it"
    )


def test_codes_are_unique_and_every_status_is_one_the_api_documents() -> None:
    codes = [entry.code for entry in error_codes.TABLE]
    assert len(codes) == len(set(codes))
    assert {entry.http_status for entry in error_codes.TABLE} <= {404, 409, 422, 502, 504}
    for entry in error_codes.TABLE:
        assert bool(entry.outcome) != bool(entry.phrases), entry  # one way to get each code
    outcomes = {entry.outcome for entry in error_codes.TABLE if entry.outcome}
    assert outcomes == error_codes.OUTCOMES


@pytest.mark.parametrize(
    ("message", "code", "status"),
    [
        ("tool instance 'ghost' not found on toolbox-1", "tool_not_found", 404),
        (
            "container 'web' on toolbox-1 is not a DTMA tool instance (it has no "
            "dtma.managed=true label): nothing was changed",
            "not_a_tool_instance",
            409,
        ),
        (
            "tool_instance_ports: host port 22/tcp (held by 'sshd' listening on 0.0.0.0:22) "
            "already in use on toolbox-1; nothing was changed",
            "port_in_use",
            409,
        ),
        (
            "image 'nope:1' is not on toolbox-1 and could not be pulled: 500 Server Error",
            "image_unavailable",
            422,
        ),
        (
            "the deploy of tool instance 'loopy' on toolbox-2 did not verify: expected it "
            "running, found state restarting",
            "verify_failed",
            502,
        ),
        (
            "rolled back to dtma-tool-echo:1.0: the deploy of tool instance 'web' on toolbox-1 "
            "did not verify: found state exited",
            "rolled_back",
            502,
        ),
        (
            "the DTMA agent is not installed on toolbox-1 (/opt/dtma/current is missing); run "
            "playbooks/dtma_install.yml first",
            "agent_not_installed",
            409,
        ),
        ("something nobody planned for", "run_failed", 502),
    ],
)
def test_a_role_failure_gets_the_code_of_its_phrase(message: str, code: str, status: int) -> None:
    assert error_codes.classify("failed", [message]) == code
    assert error_codes.http_status(code) == status


def test_outcomes_and_success() -> None:
    assert error_codes.classify(None, ["not found on"]) is None
    assert error_codes.http_status(None) == 200
    assert error_codes.classify("timeout") == "timeout"
    assert error_codes.http_status("timeout") == 504
    assert error_codes.classify("canceled") == "canceled"
    assert error_codes.http_status("canceled") == 409
    assert error_codes.classify("unreachable", ["not found on"]) == "unreachable"
    assert error_codes.http_status("no_such_code") == 502


def _build(raws: list[dict[str, object]], **overrides: object) -> ConsoleResult:
    normaliser = EventNormaliser("run-1", Redactor([]))
    events: list[RunEvent] = [e for raw in raws if (e := normaliser.normalise(raw)) is not None]
    builder = ResultBuilder(
        run_id="run-1", action="tool.restart", toolbox_id=None, playbook="tool_restart.yml",
        hosts=["toolbox-1"], timeout=60,
    )  # fmt: skip
    for event in events:
        builder.add(event)
    now = datetime.now(UTC)
    return builder.build(started_at=now, finished_at=now, **{"ending": "finished", "rc": 2,
                                                             **overrides})  # type: ignore[arg-type]  # fmt: skip


def _failed(msg: str) -> list[dict[str, object]]:
    return [
        {"event": "runner_on_failed", "created": "2026-01-01T00:00:00+00:00",
         "event_data": {"host": "toolbox-1", "task": "Fail when the tool instance does not exist",
                        "res": {"msg": msg, "failed": True}}},
        {"event": "playbook_on_stats", "event_data": {"failures": {"toolbox-1": 1}}},
    ]  # fmt: skip


def test_a_result_carries_the_code_of_its_failure() -> None:
    missing = _build(_failed("tool instance 'ghost' not found on toolbox-1"))
    assert (missing.status, missing.error_code) == ("failed", "tool_not_found")
    assert missing.model_dump(mode="json")["error_code"] == "tool_not_found"


def test_a_changed_host_key_has_its_own_code() -> None:
    changed = [
        {"event": "runner_on_unreachable", "created": "2026-01-01T00:00:00+00:00",
         "event_data": {"host": "toolbox-1", "task": "t", "res": {
             "msg": "@ WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED! @", "unreachable": True}}},
        {"event": "playbook_on_stats", "event_data": {"dark": {"toolbox-1": 1}}},
    ]  # fmt: skip
    result = _build(changed, rc=4)
    assert (result.status, result.error_code) == ("unreachable", "host_key_changed")
    refused = _build([{**changed[0], "event_data": {"host": "toolbox-1", "task": "t", "res": {
        "msg": "connect to host 127.0.1.1 port 22: Connection refused", "unreachable": True}}},
        changed[1]], rc=4)  # fmt: skip
    assert refused.error_code == "unreachable"


def test_a_timeout_a_cancel_and_a_success() -> None:
    assert _build([], ending="timeout").error_code == "timeout"
    assert _build([], ending="canceled").error_code == "canceled"
    ok = _build([{"event": "playbook_on_stats", "event_data": {"ok": {"toolbox-1": 1}}}], rc=0)
    assert ok.success and ok.error_code is None


def test_a_result_made_without_a_code_gets_one_from_its_status() -> None:
    now = datetime.now(UTC)
    watchdog = ConsoleResult(
        run_id="r", action="tool.restart", status="error", success=False, message="m",
        error="the runner reported no result", started_at=now, finished_at=now, duration_ms=0,
    )  # fmt: skip
    assert watchdog.error_code == "run_error"
