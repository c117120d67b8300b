"""/api/v1/runs: history, detail, live events (Server-Sent Events), cancel."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Path, Query
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from api.deps import ContextDep, SessionDep, UserDep
from api.schemas.runs import RunOut
from api.services import run_follow, run_history
from api.services.history_filters import TIME_EXAMPLE
from api.services.run_follow import MAX_SEQ

router = APIRouter(prefix="/api/v1/runs", tags=["runs"])

RunIdPath = Annotated[str, Path(max_length=64, description="Run id")]
TIME_HELP = f"ISO 8601 time, UTC unless it has a zone: {TIME_EXAMPLE}"


@router.get("", response_model=list[RunOut])
def list_runs(
    user: UserDep,
    session: SessionDep,
    toolbox_id: Annotated[str | None, Query(max_length=64)] = None,
    action: Annotated[str | None, Query(max_length=128, examples=["tool.deploy"])] = None,
    status: Annotated[str | None, Query(max_length=32)] = None,
    user_name: Annotated[
        str | None, Query(alias="user", max_length=128, description="Who started the run")
    ] = None,
    since: Annotated[str | None, Query(max_length=64, description=TIME_HELP)] = None,
    until: Annotated[str | None, Query(max_length=64, description=TIME_HELP)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> list[RunOut]:
    """Runs on the caller's toolboxes and those they started (admins: all), newest first,
    narrowed by toolbox, action, status, user and creation time."""
    filters = run_history.RunFilters.parse(
        toolbox=toolbox_id, action=action, status=status, user=user_name, since=since,
        until=until,
    )  # fmt: skip
    return run_history.list_runs(session, user, filters, limit=limit, offset=offset)


@router.get("/{run_id}", response_model=RunOut)
def get_run(run_id: RunIdPath, user: UserDep, session: SessionDep) -> RunOut:
    """One run; `result` holds its ConsoleResult once it ended, `queue_position` while it
    waits for a free slot."""
    return run_history.out(session, run_history.get(session, user, run_id))


@router.post(
    "/{run_id}/cancel",
    response_model=RunOut,
    responses={409: {"description": "The run is not queued or running"}},
)
async def cancel_run(
    run_id: RunIdPath, user: UserDep, session: SessionDep, context: ContextDep
) -> RunOut:
    """Cancel a queued or running run, wherever it executes: ansible is stopped and the
    run ends `canceled` (a queued run never starts)."""
    return await run_follow.cancel(context, session, user, run_id)


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
    await run_in_threadpool(run_history.get, session, user, run_id)
    return run_follow.response(context, run_id, run_follow.resume_point(after, last_event_id))
