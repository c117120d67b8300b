"""/api/v1/toolboxes: import from DigitalOcean, list, detail, ownership; provisioning and
retirement (api/services/provisioning.py)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from api.deps import AdminDep, ContextDep, SessionDep, ToolboxDep, UserDep
from api.monitoring.router import MonitorDep
from api.schemas.toolboxes import (
    ProvisionAccepted,
    ProvisionToolbox,
    RetireAccepted,
    SyncReport,
    ToolboxDetail,
    ToolboxOut,
    ToolboxPatch,
)
from api.services import audit, toolboxes
from api.services.provisioning import ProvisionSpec
from api.services.runs import run_url
from api.vault import info as vault_info

router = APIRouter(prefix="/api/v1/toolboxes", tags=["toolboxes"])


@router.get("", response_model=list[ToolboxOut])
def list_toolboxes(
    user: UserDep,
    session: SessionDep,
    include_removed: Annotated[bool, Query(description="Also list vanished droplets")] = False,
) -> list[ToolboxOut]:
    """Toolboxes the caller owns (every toolbox for an admin)."""
    found = toolboxes.list_toolboxes(session, user, include_removed=include_removed)
    return [ToolboxOut.model_validate(t) for t in found]


@router.post("/sync", response_model=SyncReport)
async def sync_toolboxes(
    user: AdminDep, context: ContextDep, session: SessionDep, monitor: MonitorDep
) -> SyncReport:
    """Import the droplets tagged DTMA_DO_TAG from the DigitalOcean API, then read every
    toolbox's state (the monitor's status sync) (admin only)."""
    report = await run_in_threadpool(toolboxes.import_tagged, user, context, session)
    await monitor.sync_all()
    session.expire_all()  # the sync wrote the rows through its own sessions
    listed = await run_in_threadpool(toolboxes.list_toolboxes, session, user, include_removed=False)
    return SyncReport(
        created=report.created,
        updated=report.updated,
        removed=report.removed,
        toolboxes=[ToolboxOut.model_validate(t) for t in listed],
    )


@router.get("/{toolbox_id}", response_model=ToolboxDetail)
def get_toolbox(toolbox: ToolboxDep, session: SessionDep) -> ToolboxDetail:
    """One toolbox with its tool instances, the last state read from it and its SSH key's
    metadata."""
    detail = ToolboxDetail.model_validate(toolbox)
    detail.ssh_access = vault_info.ssh_access(session, toolbox)
    return detail


@router.patch("/{toolbox_id}", response_model=ToolboxOut)
def update_toolbox(
    body: ToolboxPatch, toolbox: ToolboxDep, user: AdminDep, session: SessionDep
) -> ToolboxOut:
    """Change a toolbox's owner (admin only)."""
    with audit.audited(
        session,
        user=user,
        action="toolbox.update",
        toolbox_id=toolbox.id,
        parameters={"owner": body.owner},
    ):
        toolboxes.assign_owner(session, toolbox, body.owner)
    session.commit()
    return ToolboxOut.model_validate(toolbox)


@router.post("", status_code=202, response_model=ProvisionAccepted)
async def provision_toolbox(
    body: ProvisionToolbox, user: AdminDep, context: ContextDep
) -> JSONResponse:
    """Create a toolbox (admin only): its droplet through the DigitalOcean API, with an SSH
    key of its own; then one run waits for it to boot, pins its host keys, installs the
    agent and deploys the tools (follow it at the run's events)."""
    spec = ProvisionSpec(body.name, body.region, body.size, body.tags, body.owner, body.tools)
    toolbox_id, run_id = await context.provisioner.provision(user, spec)
    accepted = ProvisionAccepted(toolbox_id=toolbox_id, run_id=run_id)
    return JSONResponse(
        accepted.model_dump(), status_code=202, headers={"Location": run_url(run_id)}
    )


@router.delete("/{toolbox_id}", status_code=202, response_model=RetireAccepted)
async def retire_toolbox(
    toolbox_id: Annotated[str, Path(max_length=64, description="Toolbox id")],
    user: AdminDep,
    context: ContextDep,
    force: Annotated[
        bool, Query(description="Destroy the droplet even when a tool could not be stopped")
    ] = False,
) -> JSONResponse:
    """Retire a toolbox (admin only), in one run: stop its tools, destroy its droplet
    through the DigitalOcean API, erase its SSH key; its runs and audit entries stay."""
    run_id = await context.provisioner.retire(user, toolbox_id, force=force)
    accepted = RetireAccepted(run_id=run_id)
    return JSONResponse(
        accepted.model_dump(), status_code=202, headers={"Location": run_url(run_id)}
    )
