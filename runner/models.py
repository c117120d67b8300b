"""The data runner/ hands out: run events while a run happens, a ConsoleResult at its end.

These models are the contract with api/ and the CLI (see DESIGN.md); `model_dump(mode="json")`
gives exactly the documented JSON shapes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from runner import error_codes

RunStatus = Literal["successful", "failed", "unreachable", "timeout", "canceled", "error"]
TaskStatus = Literal["ok", "changed", "failed", "skipped", "unreachable"]


class HostCounts(BaseModel):
    """Per-host task counters, with ansible's meaning: `ok` includes the changed tasks."""

    model_config = ConfigDict(frozen=True)

    ok: int = 0
    changed: int = 0
    failed: int = 0
    unreachable: int = 0
    skipped: int = 0


class TaskOutcome(BaseModel):
    """How one task ended on one host."""

    model_config = ConfigDict(frozen=True)

    host: str
    task: str
    status: TaskStatus
    msg: str = ""


class RunEvent(BaseModel):
    """One normalised, redacted event of a run; `seq` increases strictly from 1 per run."""

    model_config = ConfigDict(frozen=True)

    seq: int
    run_id: str
    type: str
    host: str | None = None
    task: str | None = None
    at: datetime
    data: dict[str, Any] = Field(default_factory=dict)


class ConsoleResult(BaseModel):
    """What a run did, verified host by host; `success` only if it worked on every host."""

    model_config = ConfigDict(frozen=True)

    run_id: str
    action: str
    toolbox_id: str | None = None
    status: RunStatus
    success: bool
    message: str
    error: str | None = None
    error_code: str | None = Field(
        default=None,
        description="Why it failed, as a stable code (runner/error_codes.py); null on success",
    )
    started_at: datetime
    finished_at: datetime
    duration_ms: int
    hosts: dict[str, HostCounts] = Field(default_factory=dict)
    tasks: list[TaskOutcome] = Field(default_factory=list)
    data: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _code_from_status(cls, values: Any) -> Any:
        """A result built without a code (e.g. by a watchdog) gets the one its status and
        error give, so no failed result is without a code."""
        if isinstance(values, dict) and values.get("error_code") is None:
            status = values.get("status")
            if status in error_codes.OUTCOMES:
                values = {
                    **values,
                    "error_code": error_codes.classify(status, [str(values.get("error") or "")]),
                }
        return values

    # Values of the request's secret_outputs, by key: never dumped, never in repr.
    _secret_outputs: dict[str, Any] = PrivateAttr(default_factory=dict)

    def secret_output(self, key: str) -> Any:
        """What the run published under `key` if the request named it a secret output."""
        return self._secret_outputs.get(key)
