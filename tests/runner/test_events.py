"""Event normalisation and result building from a recorded run, without the sandbox.

`data/probe_two_hosts.json` holds the raw ansible-runner events of one real run of
`playbooks/probe.yml` on two sandbox droplets (probe_value=hello,
probe_secret=s3cr3t-probe-value, probe_path=$HOME/x), recorded unmodified.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from runner.events import EventNormaliser
from runner.models import RunEvent
from runner.redact import MASK, Redactor
from runner.result import ResultBuilder
from runner.sentences import describe
from tests.runner.helpers import assert_event_order

RECORDED = json.loads((Path(__file__).parent / "data" / "probe_two_hosts.json").read_text())
SECRET = "s3cr3t-probe-value"
HOSTS = ["toolbox-1", "toolbox-2"]


def _normalise(raw_events: list[dict[str, Any]], secrets: list[str]) -> list[RunEvent]:
    normaliser = EventNormaliser("run-1", Redactor(secrets))
    events = [normaliser.make("run_start")]
    events += [e for raw in raw_events if (e := normaliser.normalise(raw)) is not None]
    events.append(normaliser.make("run_end"))
    return events


def _build(events: list[RunEvent], **overrides: Any) -> Any:
    builder = ResultBuilder(
        run_id="run-1", action="probe", toolbox_id=None, playbook="probe.yml",
        hosts=overrides.pop("hosts", HOSTS), timeout=60,
    )  # fmt: skip
    for event in events:
        builder.add(event)
    now = datetime.now(UTC)
    return builder.build(started_at=now, finished_at=now, **{"ending": "finished", "rc": 0,
                                                             **overrides})  # fmt: skip


@pytest.fixture(scope="module")
def events() -> list[RunEvent]:
    return _normalise(RECORDED, [SECRET])


def test_seq_increases_and_every_task_start_has_its_end(events: list[RunEvent]) -> None:
    assert_event_order(events, "run-1")


def test_the_recorded_run_has_the_expected_event_types(events: list[RunEvent]) -> None:
    types = {e.type for e in events}
    assert {"play_start", "task_start", "task_ok", "task_changed", "task_failed",
            "task_skipped", "item_ok", "item_skipped", "run_stats"} <= types  # fmt: skip


def test_a_secret_from_the_request_is_scrubbed_from_every_event(events: list[RunEvent]) -> None:
    assert SECRET in json.dumps(RECORDED)  # the raw events do carry it...
    dumped = json.dumps([e.model_dump(mode="json") for e in events])
    assert SECRET not in dumped  # ...the normalised ones never
    assert f"secret is {MASK}" in dumped


def test_a_no_log_result_is_reduced_to_censored_but_keeps_changed(
    events: list[RunEvent],
) -> None:
    censored = [e for e in events if e.task == "Use the secret under no_log" and e.host]
    ends = [e for e in censored if e.type != "task_start"]
    assert {e.type for e in ends} == {"task_changed"}
    for event in ends:
        assert set(event.data) == {"action", "role", "duration", "censored", "changed"}
        assert event.data["censored"] is True and event.data["changed"] is True


def test_only_curated_result_fields_leave_the_runner(events: list[RunEvent]) -> None:
    allowed = {"action", "role", "duration", "ignored", "censored", "msg", "stdout", "stderr"}
    allowed |= {"skip_reason", "rc", "changed", "attempts", "retries", "item", "set_stats"}
    for event in events:
        if event.type.startswith(("task_", "item_")):
            assert set(event.data) <= allowed, event


def test_the_result_of_the_recorded_run(events: list[RunEvent]) -> None:
    result = _build(events)
    assert result.status == "successful" and result.success
    assert result.hosts["toolbox-1"].ok == 9 and result.hosts["toolbox-1"].changed == 1
    assert result.data["per_host"]["toolbox-2"]["probe_result"]["value"] == "hello"
    assert "probe_result" not in result.data  # two hosts: only per_host
    ignored = [t for t in result.tasks if t.task == "Fail, ignored"]
    assert [t.status for t in ignored] == ["failed", "failed"]
    assert ignored[0].msg == "non-zero return code (rc 3): broken"
    assert result.error is None


def test_a_single_host_result_also_has_its_data_at_the_top() -> None:
    one_host = [r for r in RECORDED if (r.get("event_data") or {}).get("host") != "toolbox-2"]
    stats = next(r for r in one_host if r["event"] == "playbook_on_stats")
    for column in ("ok", "changed", "failures", "dark", "skipped", "processed"):
        stats["event_data"][column] = {
            h: n for h, n in stats["event_data"][column].items() if h == "toolbox-1"
        }
    result = _build(_normalise(one_host, [SECRET]), hosts=["toolbox-1"])
    assert result.data["probe_result"] == {"value": "hello", "path": "$HOME/x",
                                           "fixed": "set-by-the-playbook"}  # fmt: skip
    assert result.data["per_host"]["toolbox-1"]["probe_result"]["value"] == "hello"


def test_a_failure_carries_the_task_message_rc_and_stderr(events: list[RunEvent]) -> None:
    failing = list(events)
    for index, event in enumerate(failing):
        if event.type == "task_failed":
            failing[index] = event.model_copy(update={"data": {**event.data, "ignored": False}})
    result = _build(failing, rc=2)
    assert result.status == "failed" and not result.success
    assert result.error == (
        "toolbox-1: non-zero return code (rc 3): broken; "
        "toolbox-2: non-zero return code (rc 3): broken"
    )


def test_timeout_and_cancel_say_what_was_running(events: list[RunEvent]) -> None:
    cut = next(i for i, e in enumerate(events) if e.task == "Fail, ignored")
    partial = events[: cut + 1]  # the task has started on toolbox-1, nothing after
    timed_out = _build(partial, ending="timeout", rc=254)
    assert timed_out.status == "timeout"
    assert timed_out.error == "timed out after 60 s while running 'Fail, ignored' on toolbox-1"
    canceled = _build(partial, ending="canceled", rc=254)
    assert canceled.status == "canceled" and canceled.error.startswith("canceled on request")
    assert canceled.hosts["toolbox-1"].ok > 0  # counted from the events, no stats event


def _unreachable(message: str) -> list[RunEvent]:
    normaliser = EventNormaliser("run-1", Redactor([]))
    raws = [
        {"event": "runner_on_unreachable", "created": "2026-01-01T00:00:00+00:00",
         "event_data": {"host": "toolbox-1", "task": "t", "res": {"msg": message,
                                                                  "unreachable": True}}},
        {"event": "playbook_on_stats", "event_data": {"dark": {"toolbox-1": 1}}},
    ]  # fmt: skip
    return [e for raw in raws if (e := normaliser.normalise(raw)) is not None]


def test_a_changed_host_key_is_named_plainly() -> None:
    ssh = (
        "Failed to connect to the host via ssh: @@@@@@@@@\r\n@    WARNING: REMOTE HOST "
        "IDENTIFICATION HAS CHANGED!     @\r\nHost key verification failed."
    )
    result = _build(_unreachable(ssh), hosts=["toolbox-1"], rc=4)
    assert result.status == "unreachable"
    assert result.error == "host key for toolbox-1 changed"


def test_an_unreachable_host_keeps_ssh_reason() -> None:
    reason = "Failed to connect to the host via ssh: connect to host 127.0.23.3 port 22: refused"
    result = _build(_unreachable(reason), hosts=["toolbox-1"], rc=4)
    assert (result.status, result.error) == ("unreachable", reason)


def test_without_any_task_the_error_is_ansible_own_output() -> None:
    normaliser = EventNormaliser("run-1", Redactor([]))
    raws = [
        {"event": "verbose", "stdout": "\x1b[0;31m[ERROR]: conflicting action statements\x1b[0m"},
        {"event": "verbose", "stdout": "Origin: /x/syntax_error.yml:7:7"},
    ]
    events = [e for raw in raws if (e := normaliser.normalise(raw)) is not None]
    result = _build(events, hosts=["toolbox-1"], rc=4)
    assert result.status == "error"
    assert result.error == "[ERROR]: conflicting action statements\nOrigin: /x/syntax_error.yml:7:7"


def test_redactor_masks_key_lines_and_longest_first() -> None:
    key = "\n".join(["-----BEGIN KEY-----", "QUJDREVGR0hJSktMTU5PUA", "-----END KEY-----", ""])
    redact = Redactor([key, "token-123456", "token-123456-longer"])
    assert redact({"a": ["x QUJDREVGR0hJSktMTU5PUA y"], "token-123456-longer": 1}) == {
        "a": [f"x {MASK} y"], MASK: 1}  # fmt: skip
    assert redact.text(key) == MASK


def test_an_unreachable_no_log_task_still_says_why() -> None:
    display = (
        '[ERROR]: Task failed: Data could not be sent to remote host "127.0.23.3". Make sure '
        "this host can be reached over ssh: @@@@@@@@\r\n@    WARNING: REMOTE HOST "
        "IDENTIFICATION HAS CHANGED!     @\r\nHost key verification failed.\r\n"
        "Origin: /work/main/roles/tool_instance/tasks/inspect.yml:4:3\r\n\r\n"
        "fatal: [toolbox-3]: UNREACHABLE! => \r\n    censored: 'the output has been hidden'"
    )
    raw = {
        "event": "runner_on_unreachable",
        "stdout": display,
        "event_data": {"host": "toolbox-3", "task": "t", "res": {"censored": "hidden"}},
    }
    event = EventNormaliser("run-1", Redactor([])).normalise(raw)
    assert event is not None and event.data["censored"] is True
    assert event.data["msg"].startswith("Task failed: Data could not be sent to remote host")
    assert event.data["msg"].endswith("Host key verification failed.")
    stats = {"event": "playbook_on_stats", "event_data": {"dark": {"toolbox-3": 1}}}
    normaliser = EventNormaliser("run-1", Redactor([]))
    events = [e for r in (raw, stats) if (e := normaliser.normalise(r)) is not None]
    result = _build(events, hosts=["toolbox-3"], rc=4)
    assert result.error == "host key for toolbox-3 changed"


@pytest.mark.parametrize(
    ("before", "after", "sentence"),
    [
        (None, "1.0.0", "DTMA agent on toolbox-1 installed 1.0.0, healthy."),
        ("1.0.0", "1.0.0", "DTMA agent on toolbox-1 installed (version 1.0.0), healthy."),
        ("0.9.0", "1.0.0", "DTMA agent on toolbox-1 installed (version 0.9.0 -> 1.0.0), healthy."),
    ],
)
def test_the_install_sentence_names_the_versions_it_knows(
    before: str | None, after: str, sentence: str
) -> None:
    published = {"action": "install", "version_before": before, "version_after": after,
                 "healthy": True, "rolled_back": False}  # fmt: skip
    data = {"per_host": {"toolbox-1": {"dtma_result": published}}}
    assert describe("dtma.install", ["toolbox-1"], "successful", None, data, {}) == sentence


def test_no_log_inputs_are_masked_by_key_whatever_their_length_or_type() -> None:
    redact = Redactor(["k9Zq1", "42"], secret_keys={"tool_instance_env", "probe_secret"})
    data = {
        "tool_instance_env": {"A": "k9Zq1", "B": "42"},
        "probe_secret": 7,
        "nested": [{"probe_secret": ["x"], "other": "plain"}],
    }
    assert redact(data) == {
        "tool_instance_env": MASK,
        "probe_secret": MASK,
        "nested": [{"probe_secret": MASK, "other": "plain"}],
    }


def test_short_secrets_are_masked_as_whole_tokens_in_text() -> None:
    redact = Redactor(["k9Zq1", "abc", "42"])
    assert redact.text("env PASS=k9Zq1, 'k9Zq1'\n") == f"env PASS={MASK}, '{MASK}'\n"
    assert redact.text("abc-def abcdef k9Zq1x") == f"{MASK}-def abcdef k9Zq1x"
    # One- and two-character values are masked by key only: not every "42" in a text.
    assert redact.text("rc 42") == "rc 42"


def test_a_request_masks_its_no_log_options_by_name(tmp_path: Path) -> None:
    from runner.request import RunRequest, validate_request

    inventory = tmp_path / "inventory.yml"
    inventory.write_text("all: {}\n")
    request = validate_request(
        RunRequest(
            playbook="probe.yml", hosts=["toolbox-1"], inventory=inventory,
            extravars={"probe_value": "v", "probe_secret": "98765"},
            playbook_dir=Path(__file__).parent / "playbooks",
        )
    )  # fmt: skip
    assert request.secret_keys == {"probe_secret"} and "98765" in request.secrets
