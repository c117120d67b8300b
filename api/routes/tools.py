"""/api/v1/toolboxes/{id}/tools: tool instances — list (agent), lifecycle (playbooks),
logs (agent, streamed with follow=true)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from api.context import Context
from api.deps import ContextDep, ReadableToolboxDep, SessionDep, ToolboxDep, UserDep
from api.models import Toolbox, User
from api.routes.execution import ACTION_RESPONSES, WaitQuery, perform
from api.schemas.actions import TOOL_NAME, DeployTool
from api.schemas.observations import Observation
from api.services import actions, observe, tool_logs
from api.services.tool_logs import LOGS_TAIL_MAX
from api.vault import registries

router = APIRouter(prefix="/api/v1/toolboxes/{toolbox_id}/tools", tags=["tools"])

ToolNamePath = Annotated[str, Path(pattern=TOOL_NAME, description="Tool instance name")]


@router.get(
    "",
    response_model=Observation,
    responses={
        429: {"description": "The agent did not answer and every SSH probe is busy"},
        502: {"description": "Nothing answered and nothing is stored"},
    },
)
async def list_tools(toolbox: ReadableToolboxDep, context: ContextDep) -> Observation:
    """Tool instances (managed containers) as the agent sees them; SSH or the last stored
    list when it does not answer. `data` is `{total, containers: [...]}`."""
    return await observe.read_toolbox(context, toolbox, "tools")


@router.post("", responses=ACTION_RESPONSES)
async def deploy_tool(
    body: DeployTool,
    toolbox: ToolboxDep,
    user: UserDep,
    context: ContextDep,
    session: SessionDep,
    wait: WaitQuery = True,
) -> JSONResponse:
    """Deploy (create or update) a tool instance; verified running with the image. An image
    from a registry with a stored login (/api/v1/registries) is pulled with it."""
    login = await run_in_threadpool(registries.login_for, session, context.secrets, body.image)
    return await perform(context, toolbox, user, actions.deploy_action(body, login), wait=wait)


async def _lifecycle(
    kind: str, name: str, toolbox: Toolbox, user: User, context: Context, wait: bool
) -> JSONResponse:
    return await perform(context, toolbox, user, actions.tool_action(kind, name), wait=wait)


@router.post("/{name}/start", responses=ACTION_RESPONSES)
async def start_tool(
    name: ToolNamePath,
    toolbox: ToolboxDep,
    user: UserDep,
    context: ContextDep,
    wait: WaitQuery = True,
) -> JSONResponse:
    """Start a stopped tool instance; verified running."""
    return await _lifecycle("start", name, toolbox, user, context, wait)


@router.post("/{name}/stop", responses=ACTION_RESPONSES)
async def stop_tool(
    name: ToolNamePath,
    toolbox: ToolboxDep,
    user: UserDep,
    context: ContextDep,
    wait: WaitQuery = True,
) -> JSONResponse:
    """Stop a tool instance; verified not running, and remembered as stopped on purpose."""
    return await _lifecycle("stop", name, toolbox, user, context, wait)


@router.post("/{name}/restart", responses=ACTION_RESPONSES)
async def restart_tool(
    name: ToolNamePath,
    toolbox: ToolboxDep,
    user: UserDep,
    context: ContextDep,
    wait: WaitQuery = True,
) -> JSONResponse:
    """Restart a tool instance; verified running with a new start time."""
    return await _lifecycle("restart", name, toolbox, user, context, wait)


@router.delete("/{name}", responses=ACTION_RESPONSES)
async def remove_tool(
    name: ToolNamePath,
    toolbox: ToolboxDep,
    user: UserDep,
    context: ContextDep,
    wait: WaitQuery = True,
) -> JSONResponse:
    """Remove a tool instance's container; verified absent."""
    return await _lifecycle("remove", name, toolbox, user, context, wait)


@router.get(
    "/{name}/logs",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/plain": {}}, "description": "Log lines, streamed"},
        404: {"description": "No such tool instance on the toolbox"},
        429: {"description": "Too many followed streams (`too_many_follows`, `follows_exhausted`)"},
        502: {"description": "The agent did not answer"},
    },
)
async def read_tool_logs(
    name: ToolNamePath,
    toolbox: ToolboxDep,
    user: UserDep,
    context: ContextDep,
    tail: Annotated[int, Query(ge=0, le=LOGS_TAIL_MAX)] = 100,
    since: Annotated[datetime | None, Query(description="Only lines after this time")] = None,
    timestamps: bool = False,
    follow: Annotated[bool, Query(description="Keep streaming new lines")] = False,
) -> StreamingResponse:
    """A tool instance's logs from the agent (plain text); `follow=true` keeps streaming."""
    stream = await tool_logs.open_logs(
        context, toolbox, name, tail=tail, since=since, timestamps=timestamps, follow=follow,
        user=user,
    )  # fmt: skip
    return StreamingResponse(
        stream.chunks,
        media_type="text/plain; charset=utf-8",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        background=BackgroundTask(stream.close),
    )
