"""runner/'s configuration: environment variables, read when a run starts."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from runner.catalog import PROJECT_ROOT


@dataclass(frozen=True)
class RunnerSettings:
    runs_dir: Path  # DTMA_RUNS_DIR: where private data dirs live (default .data/runs)
    keep_run_dirs: bool  # DTMA_KEEP_RUN_DIRS=1: keep them after the run, for debugging
    ansible_cfg: Path  # the project's ansible.cfg, used by every run
    # DTMA_INVENTORY_CACHE_DIR: where the console caches its DigitalOcean inventory
    # (runner/inventory.py); unset: every run lists the droplets through the API.
    inventory_cache_dir: Path | None = None

    @classmethod
    def from_env(cls) -> RunnerSettings:
        cache = os.environ.get("DTMA_INVENTORY_CACHE_DIR")
        return cls(
            runs_dir=Path(os.environ.get("DTMA_RUNS_DIR") or PROJECT_ROOT / ".data" / "runs"),
            keep_run_dirs=os.environ.get("DTMA_KEEP_RUN_DIRS", "") in ("1", "true", "yes"),
            ansible_cfg=PROJECT_ROOT / "ansible.cfg",
            inventory_cache_dir=Path(cache) if cache else None,
        )
