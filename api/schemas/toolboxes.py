"""Toolbox shapes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from api.vault.schemas import SshAccessOut


class ToolInstanceOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    name: str
    image: str | None
    state: str
    status_text: str | None
    container_id: str | None
    ports: list[Any]
    started_at: datetime | None
    restart_count: int
    observed_at: datetime | None
    removed_at: datetime | None


class ToolboxOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    droplet_id: int
    name: str
    owner_id: str | None
    address: str | None
    region: str | None
    droplet_status: str | None
    tags: list[str] = Field(default_factory=list, description="DigitalOcean tags at the last sync")
    status: str = Field(
        description="Agent state at the last look: up | down (SSH answered, the agent did not) "
        "| refused (the agent refuses the console's token) | unreachable | unknown"
    )
    agent_version: str | None
    last_seen_at: datetime | None
    last_error: str | None
    active_run_id: str | None = Field(description="The run holding the toolbox's lock, if any")
    created_at: datetime
    updated_at: datetime
    removed_at: datetime | None


class ToolboxDetail(ToolboxOut):
    tool_instances: list[ToolInstanceOut]
    last_state: dict[str, Any] = Field(
        description="Last answers read from the toolbox (status, system), with their source "
        "and observation time"
    )
    ssh_access: SshAccessOut | None = Field(
        default=None,
        description="The SSH key the console reaches the toolbox with (metadata only, never "
        "the private key)",
    )


class ToolboxPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    owner: str | None = Field(description="User name of the new owner; null for none")


class SyncReport(BaseModel):
    created: list[str]
    updated: list[str]
    removed: list[str]
    toolboxes: list[ToolboxOut]
