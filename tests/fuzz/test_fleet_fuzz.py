"""Schemathesis over every read and every single-toolbox action, aimed at a real toolbox:
no 5xx, only documented statuses, bodies as documented (a failed run's ConsoleResult
under the status its error code fits). Provisioning, rollouts and key management are left
out: they have their own tests, and a fuzzed key revocation would lock the console out."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.api import schemathesis_run
from tests.api.console import Console

pytestmark = pytest.mark.sandbox

# Every read, the agent's actions and the tool instance actions, and both compat endpoints.
OPERATIONS = (
    r"^(GET /.*"
    r"|(POST|DELETE) /api/v1/toolboxes/\{toolbox_id\}/(dtma|tools)(/.*)?"
    r"|POST /functions/v1/.*)$"
)

ACTIONS = r"^(POST|DELETE) /api/v1/toolboxes/"


def test_reads_and_actions_on_a_real_toolbox_answer_as_documented(
    console: Console, toolboxes: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    # One worker: hypothesis describing strategies in two threads at once trips CPython 3.11's
    # "AST constructor recursion depth mismatch" (a Runtime Error, not a finding).
    toolbox_id = toolboxes["toolbox-1"]["id"]
    config = (
        f'[parameters]\n"path.toolbox_id" = {json.dumps(toolbox_id)}\n'
        # Boundary inputs of the actions only where they must be refused (cheap 422s): the
        # runs that happen come from the fuzzing phase, a few per operation, which keeps the
        # number of playbook runs (and the time) small.
        "[[operations]]\n"
        f'include-name-regex = "{ACTIONS}"\n'
        'phases.coverage.generation.mode = "negative"\n'
    )
    outcome = schemathesis_run.run(
        console.url,
        console.token,
        tmp_path,
        "--include-name-regex", OPERATIONS,
        "--phases", "examples,coverage,fuzzing", "--max-examples", "3", "--workers", "1",
        "--seed", "13", "--request-timeout", "660", "--max-failures", "20",
        config=config,
        timeout=1500,
    )  # fmt: skip
    print(
        f"schemathesis on the fleet: {outcome.operations} operations in {outcome.seconds:.0f} s;"
        f" slowest: {outcome.slowest()}"
    )
    assert outcome.operations >= 15, outcome.tail
    assert outcome.returncode == 0 and not outcome.failures, outcome.report()
