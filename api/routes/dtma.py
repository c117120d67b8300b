"""/api/v1/toolboxes/{id}/dtma: the DTMA agent's state, and actions on the agent."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from api.deps import ContextDep, ToolboxDep
from api.schemas.observations import Observation
from api.services import observe

router = APIRouter(prefix="/api/v1/toolboxes/{toolbox_id}/dtma", tags=["dtma"])

_READ_RESPONSES: dict[int | str, dict[str, str]] = {
    502: {"description": "Neither the agent nor SSH answered, and nothing is stored yet"}
}


@router.get("/status", response_model=Observation, responses=_READ_RESPONSES)
async def dtma_status(toolbox: ToolboxDep, context: ContextDep) -> Observation:
    """Agent version, uptime, Docker engine state, tool counts: from the agent, or an SSH
    probe when the agent does not answer, or the last stored answer marked stale."""
    reach = await run_in_threadpool(observe.Reach.of, context, toolbox)
    return await observe.read(context, reach, "status")


@router.get("/system", response_model=Observation, responses=_READ_RESPONSES)
async def dtma_system(toolbox: ToolboxDep, context: ContextDep) -> Observation:
    """CPU, memory, disk, load and uptime, with the same fallbacks as the status."""
    reach = await run_in_threadpool(observe.Reach.of, context, toolbox)
    return await observe.read(context, reach, "system")
