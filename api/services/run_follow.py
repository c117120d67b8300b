"""Following and cancelling runs for a user, the same for the API and the web console:
an audited cancel that answers once the run ended, and a run's events as Server-Sent
Events (`id: <seq>`), resumable, ending with an `end` event carrying the final status."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.responses import StreamingResponse

from api.context import Context
from api.errors import InvalidInput, NotFound
from api.models import Run, User
from api.schemas.runs import RunOut
from api.services import audit, run_history

KEEPALIVE_SECONDS = 15.0
MAX_SEQ = 2**31 - 1  # run_events.seq is a 32-bit integer column
CANCEL_WAIT_SECONDS = 60


def _request_cancel(context: Context, session: Session, user: User, run_id: str) -> Run:
    run = run_history.get(session, user, run_id)
    with audit.audited(
        session,
        user=user,
        action="run.cancel",
        toolbox_id=run.toolbox_id,
        parameters={"run_id": run_id},
    ):
        context.runs.cancel(run_id)
    session.commit()
    return run


async def cancel(context: Context, session: Session, user: User, run_id: str) -> RunOut:
    """Cancel a queued or running run (Conflict when it is not in flight) and answer once
    it ended (or after CANCEL_WAIT_SECONDS, as it stands then)."""
    run = await run_in_threadpool(_request_cancel, context, session, user, run_id)
    with contextlib.suppress(NotFound, TimeoutError):  # NotFound: it ended already
        await asyncio.wait_for(context.runs.wait(run_id), timeout=CANCEL_WAIT_SECONDS)
    await run_in_threadpool(session.refresh, run)
    return await run_in_threadpool(run_history.out, session, run)


def resume_point(after: int, last_event_id: str | None) -> int:
    """The seq to resume after: `Last-Event-ID` when it is a number, else `after`."""
    if last_event_id is not None and last_event_id.strip().isdigit():
        after = int(last_event_id.strip())
    if not 0 <= after <= MAX_SEQ:
        raise InvalidInput("Last-Event-ID", f"must be a seq between 0 and {MAX_SEQ}")
    return after


def _sse(event: dict[str, Any]) -> bytes:
    return f"id: {event['seq']}\ndata: {json.dumps(event, default=str)}\n\n".encode()


async def sse(context: Context, run_id: str, after: int) -> AsyncIterator[bytes]:
    """Relay the run's events as SSE with keep-alive comments; end with an `end` event
    naming the run's final status, so that EventSource clients know not to reconnect."""
    queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()

    async def pump() -> None:
        try:
            async for event in context.runs.events(run_id, after):
                await queue.put(event)
        finally:
            await queue.put(None)

    task = asyncio.create_task(pump())
    try:
        yield b"retry: 2000\n\n"
        while True:
            try:
                event = await asyncio.wait_for(queue.get(), timeout=KEEPALIVE_SECONDS)
            except TimeoutError:
                yield b": keep-alive\n\n"
                continue
            if event is None:
                break
            yield _sse(event)
        await task  # re-raises what went wrong in the pump
        yield f"event: end\ndata: {json.dumps(await _final(context, run_id))}\n\n".encode()
    finally:
        task.cancel()


async def _final(context: Context, run_id: str) -> dict[str, Any]:
    with contextlib.suppress(NotFound):  # still being stored: wait for it
        await context.runs.wait(run_id)

    def read() -> dict[str, Any]:
        with context.sessions() as fresh:
            run = fresh.get(Run, run_id)
            return {
                "run_id": run_id,
                "status": run.status if run else None,
                "success": run.success if run else None,
            }

    return await run_in_threadpool(read)


def response(context: Context, run_id: str, after: int) -> StreamingResponse:
    """The SSE stream as an HTTP response (the API's route and the web page's)."""
    return StreamingResponse(
        sse(context, run_id, after),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
