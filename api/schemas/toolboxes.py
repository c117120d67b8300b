"""Toolbox shapes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from api.schemas.actions import DeployTool
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


# -- provisioning (DESIGN.md "Provisioning") ------------------------------------------------
# A droplet's name is its host name (DigitalOcean refuses others); lower case keeps it the
# inventory host name the playbooks are run with.
TOOLBOX_NAME = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
DO_SLUG = r"^[a-z0-9][a-z0-9-]{0,63}$"
DO_TAG = r"^[A-Za-z0-9_:-]{1,255}$"


class ProvisionToolbox(BaseModel):
    """A new toolbox: its droplet (created through the DigitalOcean API) and what is
    installed on it once it booted."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=TOOLBOX_NAME, description="Droplet and toolbox name")
    region: str = Field(pattern=DO_SLUG, description="DigitalOcean region slug, e.g. fra1")
    size: str = Field(pattern=DO_SLUG, description="DigitalOcean size slug, e.g. s-1vcpu-1gb")
    tags: list[Annotated[str, StringConstraints(pattern=DO_TAG)]] = Field(
        default_factory=list, max_length=20, description="More DigitalOcean tags"
    )
    owner: str | None = Field(default=None, description="User name of the owner")
    tools: list[DeployTool] = Field(
        default_factory=list, max_length=20, description="Tool instances to deploy"
    )

    @field_validator("tags")
    @classmethod
    def _no_owner_tags(cls, tags: list[str]) -> list[str]:
        if any(tag.startswith("dtma-owner:") for tag in tags):
            raise ValueError("the owner is given as `owner`, not as a dtma-owner: tag")
        return list(dict.fromkeys(tags))

    @field_validator("tools")
    @classmethod
    def _distinct_tools(cls, tools: list[DeployTool]) -> list[DeployTool]:
        names = [tool.name for tool in tools]
        if len(set(names)) != len(names):
            raise ValueError("every tool needs a name of its own")
        return tools


class ProvisionAccepted(BaseModel):
    toolbox_id: str
    run_id: str


class RetireAccepted(BaseModel):
    run_id: str
