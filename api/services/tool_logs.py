"""A tool instance's logs, read from its toolbox's agent and relayed as they come (the
API's plain-text route and the web console's Logs tab both read through here)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from starlette.concurrency import run_in_threadpool

from api.context import Context
from api.errors import UpstreamError
from api.models import Toolbox, User
from api.services import limits, observe
from api.services.agent import AgentError

LOGS_TAIL_MAX = 5000


@dataclass(frozen=True)
class LogStream:
    """The agent's log stream: its chunks, and `close` (safe to call more than once), for
    when the reader never iterates them (a client gone before the first byte)."""

    chunks: AsyncIterator[bytes]
    close: Callable[[], Awaitable[None]]


async def open_logs(
    context: Context,
    toolbox: Toolbox,
    name: str,
    *,
    tail: int,
    since: datetime | None,
    timestamps: bool,
    follow: bool,
    user: User,
) -> LogStream:
    """Open the agent's log stream, raising UpstreamError when it cannot serve it (before
    anything is sent), TooManyRequests when `user` follows too many already; it is closed
    when its chunks end or the reader stops."""
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
        upstream = await observe.open_logs(context, reach, name, params, stack)
    except AgentError as error:
        await stack.aclose()
        raise UpstreamError(
            f"the agent could not serve the logs: {error.reason}", code="agent_unreachable"
        ) from error
    except BaseException:
        await stack.aclose()
        raise

    async def relay() -> AsyncIterator[bytes]:
        try:
            async for chunk in upstream.aiter_raw():
                yield chunk
        finally:
            await stack.aclose()

    return LogStream(relay(), stack.aclose)
