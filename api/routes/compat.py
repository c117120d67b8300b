"""Compatibility endpoints for the existing frontend (its request and response shapes).

    POST /functions/v1/toolbox-tools        {toolboxId, action: list|start|stop|restart|logs|delete, instanceId}
    POST /functions/v1/toolbox-dtma-console {toolboxId, action: status|system|restart|redeploy}

They answer `{success, message | error, data?, timestamp}`: 200 when the action worked,
500 when it failed (with the real reason), 400 for an unknown action or a missing field,
409 when the toolbox is busy; authentication and ownership as everywhere else.
"""  # noqa: E501

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from api.context import Context
from api.deps import ContextDep, SessionDep, UserDep, visible_toolbox
from api.errors import ApiError
from api.models import Toolbox, ToolInstance, User, utcnow
from api.routes.execution import start
from api.schemas.actions import TOOL_NAME
from api.secret_box import unseal
from api.services import actions, observe
from api.services.agent import AgentError

router = APIRouter(prefix="/functions/v1", tags=["compatibility"])

TOOL_ACTIONS = ("list", "start", "stop", "restart", "logs", "delete")
DTMA_ACTIONS = ("status", "system", "restart", "redeploy")
LOG_LINES = 100


class ToolboxToolsRequest(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    toolbox_id: str | None = Field(default=None, alias="toolboxId", max_length=64)
    action: str | None = Field(default=None, max_length=64, description="|".join(TOOL_ACTIONS))
    instance_id: str | None = Field(default=None, alias="instanceId", max_length=128)


class DtmaConsoleRequest(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    toolbox_id: str | None = Field(default=None, alias="toolboxId", max_length=64)
    action: str | None = Field(default=None, max_length=64, description="|".join(DTMA_ACTIONS))


_COMPAT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "`{success: true, message, data?, timestamp}`"},
    400: {"description": "Unknown action or missing field: `{success: false, error, timestamp}`"},
    404: {"description": "No such toolbox (or not yours)"},
    409: {"description": "The toolbox is busy with another run"},
    500: {"description": "The action failed: `{success: false, error, data, timestamp}`"},
}


def _answer(
    status: int, *, success: bool, text: str, data: Any = None, code: str | None = None
) -> JSONResponse:
    body: dict[str, Any] = {"success": success}
    body["message" if success else "error"] = text
    if code is not None:
        body["code"] = code
    if data is not None:
        body["data"] = data
    body["timestamp"] = utcnow().isoformat()
    return JSONResponse(body, status_code=status)


def _refused(error: ApiError) -> JSONResponse:
    return _answer(error.status, success=False, text=error.message, code=error.code)


def _toolbox(session: Session, user: User, toolbox_id: str | None) -> Toolbox:
    if not toolbox_id:
        raise _BadRequest("toolboxId is required")
    return visible_toolbox(session, user, toolbox_id)


def _instance_name(session: Session, toolbox: Toolbox, instance_id: str | None) -> str:
    """instanceId may be the tool instance's id (as listed) or its name."""
    if not instance_id:
        raise _BadRequest("instanceId is required for this action")
    row = session.scalar(
        select(ToolInstance).where(
            ToolInstance.toolbox_id == toolbox.id, ToolInstance.id == instance_id
        )
    )
    name = row.name if row is not None else instance_id
    if not re.fullmatch(TOOL_NAME, name):
        raise _BadRequest(f"instanceId '{instance_id}' is not a tool instance id or name")
    return name


class _BadRequest(ApiError):
    status = 400
    code = "bad_request"


async def _run(
    context: Context, toolbox: Toolbox, user: User, action: actions.Action
) -> JSONResponse:
    run_id = await start(context, toolbox, user, action)
    result = await context.runs.wait(run_id)
    data = result.model_dump(mode="json")
    if result.success:
        return _answer(200, success=True, text=result.message, data=data)
    return _answer(
        500,
        success=False,
        text=result.error or result.message,
        data=data,
        code=f"run_{result.status}",
    )


async def _read(context: Context, toolbox: Toolbox, kind: observe.Kind) -> JSONResponse:
    reach = await run_in_threadpool(observe.Reach.of, context, toolbox)
    observation = await observe.read(context, reach, kind)
    text = f"{kind} of {toolbox.name} from {observation.source}"
    if observation.stale:
        text += f" (stale, observed {observation.observed_at.isoformat()})"
    return _answer(200, success=True, text=text, data=observation.model_dump(mode="json"))


async def _logs(context: Context, toolbox: Toolbox, name: str) -> JSONResponse:
    reach = await run_in_threadpool(observe.Reach.of, context, toolbox)
    if reach.address is None:
        return _answer(500, success=False, text="the toolbox has no address")
    params = {"tail": LOG_LINES, "timestamps": False, "follow": False}
    try:
        async with context.agent.open_logs(
            reach.address, reach.agent_token, name, params
        ) as upstream:
            text = (await upstream.aread()).decode("utf-8", errors="replace")
    except AgentError as error:
        return _answer(
            500,
            success=False,
            text=f"the agent could not serve the logs: {error.reason}",
            code="agent_unreachable",
        )
    return _answer(
        200,
        success=True,
        text=f"last {LOG_LINES} log lines of {name}",
        data={"instance": name, "logs": text},
    )


@router.post("/toolbox-tools", responses=_COMPAT_RESPONSES)
async def toolbox_tools(
    body: ToolboxToolsRequest, user: UserDep, session: SessionDep, context: ContextDep
) -> JSONResponse:
    """The frontend's tool actions: list, start, stop, restart, logs, delete."""
    try:
        if body.action not in TOOL_ACTIONS:
            raise _BadRequest(
                f"unknown action '{body.action}'; expected one of {', '.join(TOOL_ACTIONS)}"
            )
        toolbox = await run_in_threadpool(_toolbox, session, user, body.toolbox_id)
        if body.action == "list":
            return await _read(context, toolbox, "tools")
        name = await run_in_threadpool(_instance_name, session, toolbox, body.instance_id)
        if body.action == "logs":
            return await _logs(context, toolbox, name)
        kind = "remove" if body.action == "delete" else body.action
        return await _run(context, toolbox, user, actions.tool_action(kind, name))
    except ApiError as error:
        return _refused(error)


@router.post("/toolbox-dtma-console", responses=_COMPAT_RESPONSES)
async def toolbox_dtma_console(
    body: DtmaConsoleRequest, user: UserDep, session: SessionDep, context: ContextDep
) -> JSONResponse:
    """The frontend's DTMA actions: status, system, restart, redeploy."""
    try:
        if body.action not in DTMA_ACTIONS:
            raise _BadRequest(
                f"unknown action '{body.action}'; expected one of {', '.join(DTMA_ACTIONS)}"
            )
        toolbox = await run_in_threadpool(_toolbox, session, user, body.toolbox_id)
        if body.action in ("status", "system"):
            return await _read(context, toolbox, body.action)  # type: ignore[arg-type]
        token = await run_in_threadpool(unseal, toolbox.agent_token_ciphertext)
        action = actions.dtma_action(body.action, context.settings, token)
        return await _run(context, toolbox, user, action)
    except ApiError as error:
        return _refused(error)
