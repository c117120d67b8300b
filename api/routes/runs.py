"""/api/v1/runs: history, detail, live events (Server-Sent Events), cancel."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Query
from fastapi.responses import StreamingResponse
from sqlalchemy import or_, select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from api.context import Context
from api.deps import ContextDep, SessionDep, UserDep
from api.errors import NotFound
from api.models import Run, Toolbox, User
from api.schemas.runs import RunOut
from api.services import audit

router = APIRouter(prefix="/api/v1/runs", tags=["runs"])

RunIdPath = Annotated[str, Path(max_length=64, description="Run id")]
# Event seqs are 32-bit integers in the database; a larger `after` is not a position.
MAX_SEQ = 2**31 - 1
KEEPALIVE_SECONDS = 15.0


def _visible(query: Any, user: User) -> Any:
    if user.is_admin:
        return query
    owned = select(Toolbox.id).where(Toolbox.owner_id == user.id)
    return query.where(or_(Run.toolbox_id.in_(owned), Run.user_id == user.id))


def _run(session: Session, user: User, run_id: str) -> Run:
    run = session.scalar(_visible(select(Run).where(Run.id == run_id), user))
    if run is None:
        raise NotFound(f"run '{run_id}' not found", code="run_not_found")
    return run


@router.get("", response_model=list[RunOut])
def list_runs(
    user: UserDep,
    session: SessionDep,
    toolbox_id: Annotated[str | None, Query(max_length=64)] = None,
    status: Annotated[str | None, Query(max_length=32)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> list[RunOut]:
    """Runs on the caller's toolboxes, newest first."""
    query = _visible(select(Run), user)
    if toolbox_id is not None:
        query = query.where(Run.toolbox_id == toolbox_id)
    if status is not None:
        query = query.where(Run.status == status)
    query = query.order_by(Run.created_at.desc(), Run.id).limit(limit).offset(offset)
    return [RunOut.model_validate(run) for run in session.scalars(query)]


@router.get("/{run_id}", response_model=RunOut)
def get_run(run_id: RunIdPath, user: UserDep, session: SessionDep) -> RunOut:
    """One run; `result` holds its ConsoleResult once it ended."""
    return RunOut.model_validate(_run(session, user, run_id))


def _request_cancel(context: Context, session: Session, user: User, run_id: str) -> Run:
    run = _run(session, user, run_id)
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


@router.post(
    "/{run_id}/cancel",
    response_model=RunOut,
    responses={409: {"description": "The run is not running"}},
)
async def cancel_run(
    run_id: RunIdPath, user: UserDep, session: SessionDep, context: ContextDep
) -> RunOut:
    """Cancel a running run: ansible is stopped and the run ends `canceled`."""
    run = await run_in_threadpool(_request_cancel, context, session, user, run_id)
    with contextlib.suppress(NotFound):  # NotFound: it ended already
        await asyncio.wait_for(context.runs.wait(run_id), timeout=60)
    await run_in_threadpool(session.refresh, run)
    return RunOut.model_validate(run)


def _sse(event: dict[str, Any]) -> bytes:
    return f"id: {event['seq']}\ndata: {json.dumps(event, default=str)}\n\n".encode()


async def _stream(source: AsyncIterator[dict[str, Any]], final: Any) -> AsyncIterator[bytes]:
    """Relay events as SSE with keep-alive comments; end with an `end` event naming the
    run's final status, so that EventSource clients know not to reconnect."""
    queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()

    async def pump() -> None:
        try:
            async for event in source:
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
        yield f"event: end\ndata: {json.dumps(await final())}\n\n".encode()
    finally:
        task.cancel()


@router.get(
    "/{run_id}/events",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {"text/event-stream": {}},
            "description": "Server-Sent Events: `id: <seq>`, `data: <RunEvent>`",
        }
    },
)
async def run_events(
    run_id: RunIdPath,
    user: UserDep,
    session: SessionDep,
    context: ContextDep,
    last_event_id: Annotated[str | None, Header(max_length=32)] = None,
    after: Annotated[int, Query(ge=0, le=MAX_SEQ, description="Resume after this seq")] = 0,
) -> StreamingResponse:
    """The run's events, live until it ends; resume with `Last-Event-ID` (or `?after=`)."""
    await run_in_threadpool(_run, session, user, run_id)
    if last_event_id is not None and last_event_id.strip().isdigit():
        after = min(int(last_event_id.strip()), MAX_SEQ)

    async def final() -> dict[str, Any]:
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

    return StreamingResponse(
        _stream(context.runs.events(run_id, after), final),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
