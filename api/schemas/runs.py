"""Run shapes. A run's `result` is the runner's ConsoleResult (DESIGN.md)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, computed_field


class RunOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    toolbox_id: str | None
    user_id: str | None
    action: str
    playbook: str
    status: str = Field(
        description="queued | running | successful | failed | unreachable | timeout | "
        "canceled | error | interrupted"
    )
    owner: str | None = Field(
        default=None, description="`<hostname>:<pid>` of the process executing the run"
    )
    heartbeat_at: datetime | None = Field(default=None, description="The owner's last beat")
    queue_position: int | None = Field(
        default=None, description="While queued: how many queued runs are ahead of it"
    )
    success: bool | None
    message: str | None
    error: str | None
    request: dict[str, Any] = Field(description="Target and parameters, secrets redacted")
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    result: dict[str, Any] | None = Field(description="The ConsoleResult once the run ended")

    @computed_field(description="Why the run failed, as a stable code (its result's)")  # type: ignore[prop-decorator]
    @property
    def error_code(self) -> str | None:
        code = (self.result or {}).get("error_code")
        return str(code) if code is not None else None


class RunAccepted(BaseModel):
    run_id: str
    status: str
    url: str = Field(description="GET this for the run and, once it ended, its result")
    events_url: str = Field(description="Server-Sent Events of the run, resumable")
