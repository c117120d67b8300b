"""Starting an action on one toolbox, for every front (JSON routes, compat routes, web):
refused before anything runs when the toolbox is gone (or busy, or the input is invalid)."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool

import runner
from api.context import Context
from api.errors import Conflict
from api.models import Toolbox, User
from api.services import limits
from api.services.actions import Action
from api.services.runs import Target


def _target(context: Context, toolbox: Toolbox) -> Target:
    if toolbox.removed_at is not None:
        raise Conflict(
            f"toolbox '{toolbox.name}' no longer exists in DigitalOcean", code="toolbox_removed"
        )
    return Target(toolbox.id, toolbox.name, context.credentials.for_toolbox(toolbox))


async def start(context: Context, toolbox: Toolbox, user: User | None, action: Action) -> str:
    """Start `action` on `toolbox`; returns the run id (ToolboxBusy, InvalidInput,
    TooManyRequests when the user has DTMA_MAX_RUNS_PER_USER runs in flight...)."""
    target = await run_in_threadpool(_target, context, toolbox)
    limit = context.settings.max_runs_per_user
    await run_in_threadpool(limits.check_runs_of, context.sessions, user, limit)
    return await context.runs.start(target, action, user)


async def run(
    context: Context, toolbox: Toolbox, user: User | None, action: Action
) -> runner.ConsoleResult:
    """Start `action` and wait for its ConsoleResult."""
    run_id = await start(context, toolbox, user, action)
    return await context.runs.wait(run_id)
