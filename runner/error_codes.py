"""Why a run failed, as a stable code, and whose fault it is, as the HTTP status that fits.

ONE table: a run's code comes either from how it ended (the runner's own verdict: the host
did not answer, its host key changed, the run timed out or was canceled, ansible could not
run) or, for a role's failure, from a stable phrase of that role's failure message. The
phrases live in `roles/*/tasks`; tests/runner/test_error_codes.py fails when one of them
disappears from the roles, so a reworded message cannot silently turn a 404 into a 502.

Statuses: 404 the thing named does not exist, 409 the toolbox's state refuses the action
(nothing was changed), 422 the input cannot be satisfied, 502 the toolbox did not get where
it was asked to (or could not be reached), 504 the run ran out of time.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, get_args

# How a run ended, as the runner sees it (RunStatus, with host key problems told apart), or
# why the console's inventory refused to start it (runner/inventory.py).
Outcome = Literal[
    "unreachable",
    "host_key_changed",
    "host_key_unknown",
    "timeout",
    "canceled",
    "error",
    "failed",
    "do_token_rejected",
    "inventory_unavailable",
    "toolbox_gone",
]


@dataclass(frozen=True)
class ErrorCode:
    code: str
    http_status: int
    meaning: str
    outcome: Outcome | None = None  # set for codes given by how the run ended
    phrases: tuple[str, ...] = ()  # set for role failures: any of these in the message


TABLE: tuple[ErrorCode, ...] = (
    # -- how the run ended ------------------------------------------------------------------
    ErrorCode("unreachable", 502, "the toolbox did not answer over SSH", outcome="unreachable"),
    ErrorCode(
        "host_key_changed",
        502,
        "the toolbox's SSH host key is not the pinned one: refused",
        outcome="host_key_changed",
    ),
    ErrorCode(
        "host_key_unknown",
        502,
        "no host key is pinned for the toolbox: refused",
        outcome="host_key_unknown",
    ),
    ErrorCode("timeout", 504, "the run did not end within its time limit", outcome="timeout"),
    ErrorCode("canceled", 409, "the run was canceled on request", outcome="canceled"),
    ErrorCode("run_error", 502, "ansible could not run the playbook", outcome="error"),
    # -- refused before ansible started, by the console's inventory (runner/inventory.py) ------
    ErrorCode(
        "do_token_rejected",
        502,
        "the DigitalOcean API refused the console's token (401): renew it, then sync",
        outcome="do_token_rejected",
    ),
    ErrorCode(
        "inventory_unavailable",
        502,
        "the toolbox is not in the cached inventory and the DigitalOcean API could not be read",
        outcome="inventory_unavailable",
    ),
    ErrorCode(
        "toolbox_gone",
        404,
        "the droplet is not among the tagged DigitalOcean droplets (any more)",
        outcome="toolbox_gone",
    ),
    # -- a role's failure, by the stable phrase of its message (first match wins) -----------
    # Before verify_failed: a rollback's reason quotes the verification that failed.
    ErrorCode(
        "rolled_back",
        502,
        "the change did not verify and the previous version was restored",
        phrases=("rolled back to",),
    ),
    ErrorCode(
        "verify_failed", 502, "the change was made but did not verify", phrases=("did not verify",)
    ),
    ErrorCode(
        "tool_not_found", 404, "no such tool instance on the toolbox", phrases=("not found on",)
    ),
    ErrorCode(
        "not_a_tool_instance",
        409,
        "a container of that name exists but the console does not manage it",
        phrases=("is not a DTMA tool instance",),
    ),
    ErrorCode(
        "port_in_use",
        409,
        "a requested host port is taken on the toolbox",
        phrases=("already in use on",),
    ),
    ErrorCode(
        "image_unavailable",
        422,
        "the image is not on the toolbox and could not be brought there",
        phrases=(
            "could not be pulled",
            "(the archive does not contain it)",
            "does not exist on the controller",
        ),
    ),
    ErrorCode(
        "agent_not_installed",
        409,
        "the DTMA agent is not installed on the toolbox",
        phrases=("run playbooks/dtma_install.yml first",),
    ),
    ErrorCode(
        "agent_release_unavailable",
        422,
        "the requested DTMA agent release is neither built nor buildable",
        phrases=("no wheelhouse for DTMA agent",),
    ),
    ErrorCode(
        "docker_unavailable",
        502,
        "the toolbox's Docker engine does not answer",
        phrases=("does not answer on its API socket",),
    ),
    # -- a failed run whose message has none of the phrases above -----------------------------
    ErrorCode("run_failed", 502, "a task of the run failed (see error)", outcome="failed"),
)

OUTCOMES: frozenset[str] = frozenset(get_args(Outcome))
_BY_CODE = {entry.code: entry for entry in TABLE}
_BY_OUTCOME = {entry.outcome: entry for entry in TABLE if entry.outcome is not None}


def classify(outcome: Outcome | None, messages: Iterable[str] = ()) -> str | None:
    """The code of a run that did not succeed (None for a successful run: outcome None)."""
    if outcome is None:
        return None
    if outcome == "failed":
        texts = list(messages)
        for entry in TABLE:
            if any(phrase in text for phrase in entry.phrases for text in texts):
                return entry.code
    return _BY_OUTCOME[outcome].code


def http_status(code: str | None) -> int:
    """The HTTP status that fits a code: 200 for none (success); unknown codes are 502."""
    if code is None:
        return 200
    entry = _BY_CODE.get(code)
    return entry.http_status if entry is not None else 502


def codes_answering(status: int) -> list[str]:
    """Every code answered with `status` (for the OpenAPI descriptions)."""
    return [entry.code for entry in TABLE if entry.http_status == status]
