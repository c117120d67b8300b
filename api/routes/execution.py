"""Running an action from a route: start it, then answer with its ConsoleResult (waiting)
or at once with 202 and the run's URL (`?wait=false`)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Query
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from api.context import Context
from api.errors import Conflict
from api.models import Toolbox, User
from api.schemas.runs import RunAccepted
from api.services.actions import Action
from api.services.runs import Target, run_url

WaitQuery = Annotated[
    bool, Query(description="Wait for the run's result (default), or answer 202 at once")
]

# A run that did not succeed still answers with its ConsoleResult, under these statuses.
RESULT_STATUS = {
    "successful": 200,
    "failed": 502,
    "unreachable": 502,
    "timeout": 504,
    "canceled": 409,
    "error": 502,
}

ACTION_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "The run succeeded and was verified: its ConsoleResult"},
    202: {"description": "Started (`wait=false`)", "model": RunAccepted},
    409: {
        "description": "The toolbox is busy with another run (toolbox_busy), the run was "
        "canceled, or the droplet is gone"
    },
    422: {"description": "Invalid input; nothing was started"},
    502: {
        "description": "The run failed, the toolbox was unreachable or ansible could not run: "
        "its ConsoleResult"
    },
    504: {"description": "The run timed out: its ConsoleResult"},
}


def _target(context: Context, toolbox: Toolbox) -> Target:
    if toolbox.removed_at is not None:
        raise Conflict(
            f"toolbox '{toolbox.name}' no longer exists in DigitalOcean", code="toolbox_removed"
        )
    return Target(toolbox.id, toolbox.name, context.credentials.for_toolbox(toolbox))


async def start(context: Context, toolbox: Toolbox, user: User | None, action: Action) -> str:
    """Start `action` on `toolbox`; returns the run id (ToolboxBusy, InvalidInput...)."""
    target = await run_in_threadpool(_target, context, toolbox)
    return await context.runs.start(target, action, user)


async def perform(
    context: Context, toolbox: Toolbox, user: User | None, action: Action, *, wait: bool
) -> JSONResponse:
    run_id = await start(context, toolbox, user, action)
    url = run_url(run_id)
    if not wait:
        accepted = RunAccepted(run_id=run_id, status="running", url=url, events_url=f"{url}/events")
        return JSONResponse(accepted.model_dump(), status_code=202, headers={"Location": url})
    result = await context.runs.wait(run_id)
    return JSONResponse(
        result.model_dump(mode="json"),
        status_code=RESULT_STATUS.get(result.status, 502),
        headers={"Location": url},
    )
