"""/api/v1/toolboxes/{id}/dtma: the DTMA agent's state, and actions on the agent."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from api.context import Context
from api.deps import ContextDep, ReadableToolboxDep, ToolboxDep, UserDep
from api.models import Toolbox, User
from api.routes.execution import ACTION_RESPONSES, WaitQuery, perform
from api.schemas.actions import RedeployAgent
from api.schemas.observations import Observation
from api.services import actions, observe, toolboxes

router = APIRouter(prefix="/api/v1/toolboxes/{toolbox_id}/dtma", tags=["dtma"])

_READ_RESPONSES: dict[int | str, dict[str, str]] = {
    429: {
        "description": "The agent did not answer and every SSH probe is busy (`ssh_probes_busy`)"
    },
    502: {"description": "Neither the agent nor SSH answered, and nothing is stored yet"},
}


@router.get("/status", response_model=Observation, responses=_READ_RESPONSES)
async def dtma_status(toolbox: ReadableToolboxDep, context: ContextDep) -> Observation:
    """Agent version, uptime, Docker engine state, tool counts: from the agent, or an SSH
    probe when the agent does not answer, or the last stored answer marked stale."""
    return await observe.read_toolbox(context, toolbox, "status")


@router.get("/system", response_model=Observation, responses=_READ_RESPONSES)
async def dtma_system(toolbox: ReadableToolboxDep, context: ContextDep) -> Observation:
    """CPU, memory, disk, load and uptime, with the same fallbacks as the status."""
    return await observe.read_toolbox(context, toolbox, "system")


async def _agent_action(
    kind: str,
    toolbox: Toolbox,
    user: User,
    context: Context,
    wait: bool,
    version: str | None = None,
) -> JSONResponse:
    token = await run_in_threadpool(
        context.secrets.unseal_from, toolbox, Toolbox.agent_token_ciphertext
    )
    action = actions.dtma_action(kind, context.settings, token, version)
    return await perform(context, toolbox, user, action, wait=wait)


@router.post("/install", responses=ACTION_RESPONSES)
async def dtma_install(
    toolbox: ToolboxDep, user: UserDep, context: ContextDep, wait: WaitQuery = True
) -> JSONResponse:
    """Install the agent (playbooks/dtma_install.yml) with this toolbox's agent token."""
    return await _agent_action("install", toolbox, user, context, wait)


@router.post("/restart", responses=ACTION_RESPONSES)
async def dtma_restart(
    toolbox: ToolboxDep, user: UserDep, context: ContextDep, wait: WaitQuery = True
) -> JSONResponse:
    """Restart the agent; succeeds only when a new process answers /health."""
    return await _agent_action("restart", toolbox, user, context, wait)


@router.post("/redeploy", responses=ACTION_RESPONSES)
async def dtma_redeploy(
    toolbox: ToolboxDep,
    user: UserDep,
    context: ContextDep,
    body: RedeployAgent | None = None,
    wait: WaitQuery = True,
) -> JSONResponse:
    """Deploy an agent release (rolled back automatically when it does not serve)."""
    version = body.version if body else None
    return await _agent_action("redeploy", toolbox, user, context, wait, version)


@router.post("/token/rotate", responses=ACTION_RESPONSES)
async def dtma_token_rotate(
    toolbox: ToolboxDep, user: UserDep, context: ContextDep, wait: WaitQuery = True
) -> JSONResponse:
    """Give the agent a new bearer token (playbooks/dtma_token_rotate.yml): installed,
    verified on the droplet (the new one answers, the old one is refused), then read by the
    console, which learns and seals it over SSH; the old token is refused from then on."""
    action = actions.dtma_action("token_rotate", context.settings, toolboxes.new_agent_token())
    return await perform(context, toolbox, user, action, wait=wait)
