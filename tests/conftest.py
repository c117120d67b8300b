"""Session-wide fixtures: the real sandbox fleet, brought up once per test session."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from api.vault.crypto import generate_master_key
from api.vault.master import write_key_file
from sandbox import fleet
from sandbox.config import PROJECT_ROOT, SandboxConfig

SANDBOX_DROPLETS = int(os.environ.get("DTMA_TEST_DROPLETS", "3"))
# No background monitoring loop in any app a test builds; tests drive cycles themselves.
os.environ.setdefault("DTMA_MONITOR_INTERVAL", "0")
# Tests change droplets behind the console's back and read them at once: every read is live
# unless a test asks for the fresh-read window (tests/api/test_sandbox_reads_fresh.py).
os.environ.setdefault("DTMA_READ_FRESH_SECONDS", "0")
# One master key for the consoles of the session that are not given one of their own, in a
# key file outside any data directory, as the service requires without DTMA_DEMO=1.
_MASTER_KEY_DIR = Path(tempfile.mkdtemp(prefix="dtma-test-master-key-"))
if not os.environ.get("DTMA_MASTER_KEY") and not os.environ.get("DTMA_MASTER_KEY_FILE"):
    write_key_file(_MASTER_KEY_DIR / "master.key", generate_master_key(), exclusive=True)
    os.environ["DTMA_MASTER_KEY_FILE"] = str(_MASTER_KEY_DIR / "master.key")


def _interrupted(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt("SIGTERM")


# SIGTERM ends a test session like Ctrl-C: with its teardown, so its fleets and servers go.
# scripts/pytest-areas.sh stops its lanes this way (a background job ignores SIGINT).
signal.signal(signal.SIGTERM, _interrupted)


def pytest_unconfigure(config: pytest.Config) -> None:
    shutil.rmtree(_MASTER_KEY_DIR, ignore_errors=True)


@pytest.fixture(scope="session")
def project_root() -> Path:
    return PROJECT_ROOT


@pytest.fixture(scope="session")
def sandbox_config() -> SandboxConfig:
    return SandboxConfig.from_env()


@contextmanager
def session_fleet(config: SandboxConfig, droplets: int) -> Iterator[fleet.SandboxInfo]:
    """toolbox-1..N up and answering SSH; torn down at the end only if this session made it
    (and not with DTMA_KEEP_SANDBOX), also when the session is interrupted while it comes up."""
    was_running = fleet.status(config)["emulator"]["running"]
    owned = not was_running and not os.environ.get("DTMA_KEEP_SANDBOX")
    try:
        yield fleet.up(config, droplets)
    finally:
        if owned:
            fleet.down(config)


@pytest.fixture(scope="session")
def sandbox(sandbox_config: SandboxConfig) -> Iterator[fleet.SandboxInfo]:
    """toolbox-1..3 (DTMA_TEST_DROPLETS) for the area's session."""
    with session_fleet(sandbox_config, SANDBOX_DROPLETS) as info:
        yield info


@pytest.fixture(scope="session")
def ansible_env(sandbox_config: SandboxConfig) -> dict[str, str]:
    """Environment for ansible commands run by tests: the project's ansible.cfg, quiet."""
    return {
        **os.environ,
        "ANSIBLE_CONFIG": str(PROJECT_ROOT / "ansible.cfg"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_DEPRECATION_WARNINGS": "0",
        "DTMA_SANDBOX_DIR": str(sandbox_config.state_dir),
    }


def json_report_results(report: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(host, task name, result) for each task result of an ansible.posix.json report: one per
    task a host ran, skipped or failed, as the runner's task_ok/changed/skipped/failed/
    unreachable events count them (DESIGN.md "Task results")."""
    for play in report.get("plays", []):
        for task in play["tasks"]:
            for host, result in task["hosts"].items():
                yield host, task["task"]["name"], result
