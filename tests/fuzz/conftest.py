"""The schema fuzz on a fleet of its own: one droplet (the fuzz only needs one toolbox, and
what it does to it — random deploys, agent restarts — stays out of every other area)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from sandbox import fleet
from sandbox.config import SandboxConfig
from tests.api.conftest import console, toolboxes

__all__ = ["console", "toolboxes"]  # the served console and its toolboxes, as in tests/api


@pytest.fixture(scope="session")
def sandbox(sandbox_config: SandboxConfig) -> Iterator[fleet.SandboxInfo]:
    was_running = fleet.status(sandbox_config)["emulator"]["running"]
    info = fleet.up(sandbox_config, 1)
    yield info
    if not was_running and not os.environ.get("DTMA_KEEP_SANDBOX"):
        fleet.down(sandbox_config)
