"""The console's cached DigitalOcean inventory (runner/inventory.py), against the emulator:
a run on a known toolbox lists no droplets, and keeps working while the API is down, hangs or
answers 5xx (saying how old its inventory is); a revoked token (401) stops runs with that
reason; a droplet the API does not list is never targeted. The outages are the emulator's own
(SandboxConfig.fault_file)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from runner import ConsoleResult, RunRequest, refresh_inventory, run_playbook
from sandbox import fleet
from sandbox.config import SandboxConfig

pytestmark = pytest.mark.sandbox


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DTMA_INVENTORY_CACHE_DIR", str(tmp_path / "inventory-cache"))
    return tmp_path / "inventory-cache"


@pytest.fixture
def fault(sandbox_config: SandboxConfig) -> Iterator[Callable[[str | None], None]]:
    """Switch an outage of the emulator on (`hang`, `5xx`, `401`) or off (None)."""

    def switch(kind: str | None) -> None:
        if kind is None:
            sandbox_config.fault_file.unlink(missing_ok=True)
        else:
            sandbox_config.fault_file.write_text(kind)

    yield switch
    switch(None)


def _listings(sandbox_config: SandboxConfig) -> int:
    """How many droplet listings the emulator has answered or refused so far."""
    return sandbox_config.log_file.read_text().count("GET /v2/droplets?")


def test_known_toolboxes_run_from_the_cache_through_api_outages_and_a_401_stops_them(
    sandbox: fleet.SandboxInfo,
    sandbox_config: SandboxConfig,
    make_request: Callable[..., RunRequest],
    cache_dir: Path,
    fault: Callable[[str | None], None],
) -> None:
    request = make_request("tool_list.yml", ["toolbox-1"])
    env, inventory = request.env, request.inventory

    def listed() -> ConsoleResult:
        return run_playbook(make_request("tool_list.yml", ["toolbox-1"]))

    first = listed()  # unknown to the empty cache: listed live
    assert first.success, first.error
    assert first.data["inventory"]["source"] == "live"

    before = _listings(sandbox_config)
    again = listed()
    assert again.success, again.error
    assert again.data["inventory"]["source"] == "cache"
    assert _listings(sandbox_config) == before  # no round trip for a known toolbox

    for outage, reason in (("5xx", "HTTP Error 503"), ("hang", "timed out")):
        fault(outage)
        state = refresh_inventory(inventory, env)  # the console's sync, during the outage
        assert state is not None and state.error is not None and reason in state.error
        during = listed()
        assert during.success, during.error
        assert during.data["inventory"]["source"] == "cache"
        assert isinstance(during.data["inventory"]["age_seconds"], int)
        assert reason in during.data["inventory"]["api_error"]
        assert "s old: the DigitalOcean API could not be read" in during.message

    fault("401")
    state = refresh_inventory(inventory, env)
    assert state is not None and state.error_code == "do_token_rejected"
    fault(None)
    refused = listed()  # the token was refused: no run until a refresh succeeds
    assert not refused.success and refused.error_code == "do_token_rejected"
    assert refused.tasks == [] and "refused the console's token" in (refused.error or "")

    state = refresh_inventory(inventory, env)
    assert state is not None and state.error is None
    assert listed().success


def test_a_droplet_the_api_does_not_list_is_never_targeted(
    sandbox: fleet.SandboxInfo,
    sandbox_config: SandboxConfig,
    make_request: Callable[..., RunRequest],
    cache_dir: Path,
) -> None:
    before = _listings(sandbox_config)
    gone = run_playbook(make_request("tool_list.yml", ["toolbox-99"]))
    assert _listings(sandbox_config) == before + 1  # unknown to the cache: listed live
    assert not gone.success and gone.error_code == "toolbox_gone"
    assert gone.tasks == [] and "toolbox-99 is not among the DigitalOcean droplets" in (
        gone.error or ""
    )
