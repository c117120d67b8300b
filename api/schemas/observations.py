"""What the console read from a toolbox, and where the answer came from."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

Source = Literal["agent", "ssh", "cache"]


class Observation(BaseModel):
    toolbox_id: str
    kind: Literal["status", "system", "tools"]
    source: Source = Field(
        description="agent: the DTMA agent answered; ssh: the agent did not, an SSH probe "
        "did; cache: neither did, this is the last stored answer"
    )
    observed_at: datetime = Field(description="When the data was read from the toolbox")
    stale: bool = Field(description="True when the data is a cached answer")
    cached_from: Literal["agent", "ssh"] | None = Field(
        default=None, description="For cached answers: where the data originally came from"
    )
    errors: dict[str, str] = Field(
        default_factory=dict, description="Why fresher sources did not answer, by source"
    )
    cached: bool = Field(
        default=False,
        description="True when a live answer younger than DTMA_READ_FRESH_SECONDS was reused "
        "(its source is the live one it came from)",
    )
    age_ms: int | None = Field(
        default=None, description="For reused answers: how old the answer was, in milliseconds"
    )
    data: Any
