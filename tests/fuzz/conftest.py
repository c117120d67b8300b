"""The schema fuzz on a fleet of its own: one droplet (the fuzz only needs one toolbox, and
what it does to it — random deploys, agent restarts — stays out of every other area)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sandbox import fleet
from sandbox.config import SandboxConfig
from tests.api.conftest import console, toolboxes
from tests.conftest import session_fleet

__all__ = ["console", "toolboxes"]  # the served console and its toolboxes, as in tests/api


@pytest.fixture(scope="session")
def sandbox(sandbox_config: SandboxConfig) -> Iterator[fleet.SandboxInfo]:
    with session_fleet(sandbox_config, 1) as info:
        yield info
