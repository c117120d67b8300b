"""A run's private data dir after its run: gone, or with DTMA_KEEP_RUN_DIRS=1 kept without
anything that may hold a secret; and the same for the dir of a run whose process died
(start-up recovery). What ansible-runner leaves when a run is cut short is made here as it
makes it (no sandbox needed): raw partial event files, its command record, a pipe."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from runner import discard_run_dir
from runner.rundir import RunDir
from runner.settings import RunnerSettings

SECRET = "k9Zq1"


def cut_short_run(base: Path, run_id: str) -> Path:
    """A run dir as ansible-runner leaves it when its process is killed mid-run."""
    rundir = RunDir.create(base, run_id)
    rundir.write("env/settings", "{}")
    artifacts = rundir.path / "artifacts" / run_id
    (artifacts / "job_events").mkdir(parents=True)
    raw = {"event": "runner_on_ok", "event_data": {"res": {"env": {"PASS": SECRET}}}}
    (artifacts / "job_events" / "0a1b-partial.json").write_text(json.dumps(raw))
    (artifacts / "command").write_text(json.dumps({"command": ["ansible-playbook"]}))
    os.mkfifo(artifacts / "ssh_key_data", 0o600)
    return rundir.path


def files_with_secret(path: Path) -> list[str]:
    return [str(f) for f in path.rglob("*") if f.is_file() and SECRET.encode() in f.read_bytes()]


def settings(base: Path, keep: bool) -> RunnerSettings:
    return RunnerSettings(runs_dir=base, keep_run_dirs=keep, ansible_cfg=Path("ansible.cfg"))


def test_a_dead_runs_dir_is_removed_at_recovery(tmp_path: Path) -> None:
    path = cut_short_run(tmp_path, "run-dead-1")
    assert files_with_secret(path)  # the raw partial event holds it
    assert discard_run_dir("run-dead-1", settings(tmp_path, keep=False))
    assert not path.exists()
    assert not discard_run_dir("run-dead-1", settings(tmp_path, keep=False))


def test_a_kept_run_dir_keeps_no_secret(tmp_path: Path) -> None:
    path = cut_short_run(tmp_path, "run-dead-2")
    assert discard_run_dir("run-dead-2", settings(tmp_path, keep=True))
    kept = sorted(str(p.relative_to(path)) for p in path.rglob("*"))
    assert kept == ["artifacts", "artifacts/run-dead-2", "artifacts/run-dead-2/command",
                    "env", "env/settings"]  # fmt: skip
    assert files_with_secret(path) == []


@pytest.mark.parametrize("run_id", ["..", "../elsewhere", "/etc", ""])
def test_discarding_never_leaves_the_runs_dir(tmp_path: Path, run_id: str) -> None:
    base = tmp_path / "runs"
    base.mkdir()
    (tmp_path / "elsewhere").mkdir()
    assert not discard_run_dir(run_id, settings(base, keep=False))
    assert base.exists() and (tmp_path / "elsewhere").exists()
