"""Compatibility endpoints for the existing frontend (its request and response shapes).

    POST /functions/v1/toolbox-tools        {toolboxId, action: list|start|stop|restart|logs|delete, instanceId}
    POST /functions/v1/toolbox-dtma-console {toolboxId, action: status|system|restart|redeploy}

They answer `{success, message | error, code?, data?, stale?, timestamp}`: 200 when the
action worked or a read got a live answer; 500 (the existing frontend's failure status) when
an action failed (with the real reason and its `code`) or when a read got no live answer
(then `stale: true` and the last stored answer, if any, under `data`); 400 for an unknown
action or a missing field, 404 for a toolbox that is not there (or not yours), 409 when the
toolbox is busy, 429 when a bound on load was reached (`too_many_runs`, `ssh_probes_busy`);
authentication as everywhere else.
"""  # noqa: E501

from __future__ import annotations

import re
from contextlib import AsyncExitStack
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, RootModel
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from api.context import Context
from api.deps import ContextDep, SessionDep, UserDep, visible_toolbox
from api.errors import ApiError, ErrorBody, UpstreamError
from api.models import Toolbox, ToolInstance, User, utcnow
from api.schemas.actions import TOOL_NAME
from api.services import actions, execution, observe
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


class CompatAnswer(BaseModel):
    """The existing frontend's answer: `message` on success, `error` (and `code`) on failure."""

    success: bool
    message: str | None = Field(default=None, description="What was done (on success)")
    error: str | None = Field(default=None, description="What went wrong (on failure)")
    code: str | None = Field(
        default=None, description="A stable code for the failure (a run's error_code)"
    )
    stale: bool | None = Field(
        default=None,
        description="Reads: true when no live source answered; `data` is then the last "
        "stored answer (or absent when nothing is stored)",
    )
    data: Any = Field(
        default=None, description="Reads: the Observation; actions: the ConsoleResult"
    )
    timestamp: str


class CompatRefusal(RootModel[CompatAnswer | ErrorBody]):
    """A refusal in the frontend's shape, or a body that could not even be parsed."""


_COMPAT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "`{success: true, message, data, timestamp}`", "model": CompatAnswer},
    400: {
        "description": "Unknown action or missing field (`{success: false, error, code}`), or "
        "a body that could not be parsed (`{error: {code, message}}`)",
        "model": CompatRefusal,
    },
    404: {"description": "No such toolbox (or not yours)", "model": CompatAnswer},
    409: {"description": "The toolbox is busy with another run", "model": CompatAnswer},
    422: {"description": "The body is not the expected JSON object", "model": ErrorBody},
    429: {
        "description": "A bound on load was reached, nothing started (`too_many_runs`, "
        "`ssh_probes_busy`)",
        "model": CompatAnswer,
    },
    500: {
        "description": "The action failed (`{success: false, error, code, data: ConsoleResult}`)"
        ", or a read got no live answer (`{success: false, error, stale: true, data}`)",
        "model": CompatAnswer,
    },
}


def _answer(
    status: int,
    *,
    success: bool,
    text: str,
    data: Any = None,
    code: str | None = None,
    stale: bool | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {"success": success}
    body["message" if success else "error"] = text
    if code is not None:
        body["code"] = code
    if stale is not None:
        body["stale"] = stale
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
    result = await execution.run(context, toolbox, user, action)
    data = result.model_dump(mode="json")
    if result.success:
        return _answer(200, success=True, text=result.message, data=data)
    return _answer(
        500, success=False, text=result.error or result.message, data=data, code=result.error_code
    )


async def _read(context: Context, toolbox: Toolbox, kind: observe.Kind) -> JSONResponse:
    """A live answer is a success; the last stored answer never is (500, `stale: true`)."""
    reach = await run_in_threadpool(observe.Reach.of, context, toolbox)
    try:
        observation = await observe.read(context, reach, kind)
    except UpstreamError as error:  # nothing answered and nothing is stored
        return _answer(500, success=False, text=error.message, code=error.code, stale=True)
    if not observation.stale:
        text = f"{kind} of {toolbox.name} from the {observation.source}"
        return _answer(200, success=True, text=text, data=observation.model_dump(mode="json"))
    dumped = observation.model_dump(mode="json")
    reasons = "; ".join(f"{source}: {reason}" for source, reason in observation.errors.items())
    since = dumped["observed_at"]
    text = (
        f"toolbox '{toolbox.name}' did not answer ({reasons}); no live answer since {since}: "
        f"data is its {kind} as the {observation.cached_from} reported it then"
    )
    return _answer(
        500,
        success=False,
        text=text,
        code="toolbox_unreachable",
        stale=True,
        data=dumped,
    )


async def _logs(context: Context, toolbox: Toolbox, name: str) -> JSONResponse:
    reach = await run_in_threadpool(observe.Reach.of, context, toolbox)
    if reach.address is None:
        return _answer(500, success=False, text="the toolbox has no address")
    params = {"tail": LOG_LINES, "timestamps": False, "follow": False}
    try:
        async with AsyncExitStack() as stack:
            upstream = await observe.open_logs(context, reach, name, params, stack)
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
        token = await run_in_threadpool(
            context.secrets.unseal_from, toolbox, Toolbox.agent_token_ciphertext
        )
        action = actions.dtma_action(body.action, context.settings, token)
        return await _run(context, toolbox, user, action)
    except ApiError as error:
        return _refused(error)
