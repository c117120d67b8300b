"""Rollouts: one action over many toolboxes in batches (DESIGN.md, "Rollouts")."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, StringConstraints, model_validator

from api.schemas.actions import ToolName, _Strict

RolloutAction = Literal["tool.restart", "tool.deploy", "dtma.redeploy"]
RolloutStatus = Literal["running", "successful", "failed", "halted", "canceled"]
HostState = Literal[
    "pending", "running", "successful", "failed", "rolled_back", "not_started", "skipped"
]
# DigitalOcean's tag names (letters, digits, : - _), and region slugs.
TagName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9:_\-]{1,255}$")]
RegionSlug = Annotated[str, StringConstraints(pattern=r"^[a-z0-9]{2,16}$")]
ToolboxId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
Percentage = Annotated[str, StringConstraints(pattern=r"^(100|[1-9][0-9]?)%$")]
MAX_TARGETS = 1000


class RolloutTarget(_Strict):
    """Exactly one of: toolbox ids, a DigitalOcean tag, a region, or every toolbox the
    caller owns (every toolbox for an admin). Others' toolboxes are never targeted."""

    toolbox_ids: list[ToolboxId] | None = Field(default=None, min_length=1, max_length=MAX_TARGETS)
    tag: TagName | None = None
    region: RegionSlug | None = None
    all: Literal[True] | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> RolloutTarget:
        given = [k for k in ("toolbox_ids", "tag", "region", "all") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError("give exactly one of toolbox_ids, tag, region or all")
        return self

    def public(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


class RestartParams(_Strict):
    name: ToolName


class PreviewRollout(_Strict):
    target: RolloutTarget
    batch_size: Annotated[int, Field(ge=1, le=MAX_TARGETS)] | Percentage = Field(
        default=1, description="Hosts per batch after the canary: a count or a percentage"
    )
    max_failures: int = Field(
        default=0, ge=0, le=MAX_TARGETS, description="Failed hosts a batch may have"
    )
    canary: bool = Field(default=True, description="A first batch of one host")


class CreateRollout(PreviewRollout):
    action: RolloutAction
    params: dict[str, Any] = Field(
        default_factory=dict,
        description="The action's inputs: DeployTool for tool.deploy, {name} for "
        "tool.restart, {version} for dtma.redeploy",
    )


class RolloutHost(BaseModel):
    toolbox_id: str
    name: str
    batch: int | None
    state: HostState
    message: str
    run_id: str | None


class RolloutBatch(BaseModel):
    batch: int
    hosts: int
    done: int  # hosts that reached an end state
    failed: int
    state: Literal["pending", "running", "done", "not_started"]


class RolloutOut(BaseModel):
    id: str
    action: str
    status: RolloutStatus
    target: dict[str, Any]
    batch_size: str
    batch_hosts: int
    canary: bool
    max_failures: int
    params: dict[str, Any]
    run_id: str | None
    user: str | None
    created_at: datetime
    cancel_requested: bool
    message: str
    batches: list[RolloutBatch]
    hosts: list[RolloutHost]


class RolloutPreview(BaseModel):
    """What a rollout would target now: the count the page shows before confirming."""

    count: int
    toolboxes: list[str]
    batches: list[list[str]]
