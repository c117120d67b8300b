"""/api/v1/toolboxes/{id}/tools: tool instances — list (agent), lifecycle (playbooks),
logs (agent, streamed with follow=true)."""

from __future__ import annotations

from contextlib import AsyncExitStack
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from api.context import Context
from api.deps import ContextDep, ToolboxDep, UserDep
from api.errors import UpstreamError
from api.models import Toolbox, User
from api.routes.execution import ACTION_RESPONSES, WaitQuery, perform
from api.schemas.actions import TOOL_NAME, DeployTool
from api.schemas.observations import Observation
from api.services import actions, limits, observe
from api.services.agent import AgentError

router = APIRouter(prefix="/api/v1/toolboxes/{toolbox_id}/tools", tags=["tools"])

ToolNamePath = Annotated[str, Path(pattern=TOOL_NAME, description="Tool instance name")]
LOGS_TAIL_MAX = 5000


@router.get(
    "",
    response_model=Observation,
    responses={
        429: {"description": "The agent did not answer and every SSH probe is busy"},
        502: {"description": "Nothing answered and nothing is stored"},
    },
)
async def list_tools(toolbox: ToolboxDep, context: ContextDep) -> Observation:
    """Tool instances (managed containers) as the agent sees them; SSH or the last stored
    list when it does not answer. `data` is `{total, containers: [...]}`."""
    reach = await run_in_threadpool(observe.Reach.of, context, toolbox)
    return await observe.read(context, reach, "tools")


@router.post("", responses=ACTION_RESPONSES)
async def deploy_tool(
    body: DeployTool,
    toolbox: ToolboxDep,
    user: UserDep,
    context: ContextDep,
    wait: WaitQuery = True,
) -> JSONResponse:
    """Deploy (create or update) a tool instance; verified running with the image."""
    return await perform(context, toolbox, user, actions.deploy_action(body), wait=wait)


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
async def tool_logs(
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
    reach = await run_in_threadpool(observe.Reach.of, context, toolbox)
    if reach.address is None:
        raise UpstreamError("the toolbox has no address", code="agent_unreachable")
    params: dict[str, Any] = {"tail": tail, "timestamps": timestamps, "follow": follow}
    if since is not None:
        params["since"] = since.isoformat()
    stack = AsyncExitStack()
    if follow:  # each follow holds an agent connection for as long as it lasts: bounded
        stack.callback(limits.take_follow(context.follows, context.settings, user))
    try:
        upstream = await stack.enter_async_context(
            context.agent.open_logs(reach.address, reach.agent_token, name, params)
        )
    except AgentError as error:
        await stack.aclose()
        raise UpstreamError(
            f"the agent could not serve the logs: {error.reason}", code="agent_unreachable"
        ) from error
    except BaseException:
        await stack.aclose()
        raise

    async def relay() -> Any:
        try:
            async for chunk in upstream.aiter_raw():
                yield chunk
        finally:
            await stack.aclose()

    return StreamingResponse(
        relay(),
        media_type="text/plain; charset=utf-8",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        background=BackgroundTask(stack.aclose),
    )
