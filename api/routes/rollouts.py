"""/api/v1/rollouts: one action over many toolboxes in batches, its progress, its cancel."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Path, Query
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from api.deps import ContextDep, SessionDep, UserDep
from api.errors import ErrorBody
from api.schemas.rollouts import CreateRollout, PreviewRollout, RolloutOut, RolloutPreview
from api.services import rollouts, run_follow
from api.services.run_follow import MAX_SEQ

router = APIRouter(prefix="/api/v1/rollouts", tags=["rollouts"])

RolloutIdPath = Annotated[str, Path(max_length=64, description="Rollout id")]
_ERRORS: dict[int | str, dict[str, object]] = {
    404: {
        "model": ErrorBody,
        "description": "A toolbox id that is not yours (`toolbox_not_found`)",
    },
    409: {"model": ErrorBody, "description": "Every targeted toolbox is busy (`toolbox_busy`)"},
    422: {"model": ErrorBody, "description": "Bad input, or nothing matches (`invalid_input`)"},
    429: {"model": ErrorBody, "description": "Too many runs in flight (`too_many_runs`)"},
}


@router.post("", status_code=202, response_model=RolloutOut, responses=_ERRORS)
async def create_rollout(
    body: CreateRollout, user: UserDep, session: SessionDep, context: ContextDep
) -> JSONResponse:
    """Start one run of the action's playbook over the target's toolboxes in batches (a
    canary of one, then `batch_size`), halting when a batch has more than `max_failures`
    failed hosts. Toolboxes busy with another run are `skipped`. Answers at once (202)."""
    rollout_id = await rollouts.start(context, user, body)
    out = await run_in_threadpool(_view, session, user, rollout_id)
    return JSONResponse(out.model_dump(mode="json"), status_code=202,
                        headers={"Location": f"/api/v1/rollouts/{rollout_id}"})  # fmt: skip


@router.post("/preview", response_model=RolloutPreview, responses=_ERRORS)
def preview_rollout(body: PreviewRollout, user: UserDep, session: SessionDep) -> RolloutPreview:
    """The toolboxes a target covers now and the batches they would make (nothing starts)."""
    return rollouts.preview(session, user, body.target, body.batch_size, body.canary)


def _view(session: SessionDep, user: UserDep, rollout_id: str) -> RolloutOut:
    session.expire_all()
    return rollouts.view(session, rollouts.get(session, user, rollout_id))


@router.get("/{rollout_id}", response_model=RolloutOut, responses={404: {"model": ErrorBody}})
def get_rollout(rollout_id: RolloutIdPath, user: UserDep, session: SessionDep) -> RolloutOut:
    """The rollout with each host's state and batch, read from its run's events."""
    return _view(session, user, rollout_id)


@router.post(
    "/{rollout_id}/cancel",
    status_code=202,
    response_model=RolloutOut,
    responses={404: {"model": ErrorBody}, 409: {"model": ErrorBody}},
)
async def cancel_rollout(
    rollout_id: RolloutIdPath, user: UserDep, session: SessionDep, context: ContextDep
) -> RolloutOut:
    """Stop after the current batch: hosts of later batches stay `not_started`."""
    await rollouts.cancel(context, user, rollout_id)
    return await run_in_threadpool(_view, session, user, rollout_id)


@router.get(
    "/{rollout_id}/events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "The run's events"}},
)
async def rollout_events(
    rollout_id: RolloutIdPath,
    user: UserDep,
    session: SessionDep,
    context: ContextDep,
    last_event_id: Annotated[str | None, Header(max_length=32)] = None,
    after: Annotated[int, Query(ge=0, le=MAX_SEQ)] = 0,
) -> StreamingResponse:
    """The events of the rollout's run as Server-Sent Events (the runs' stream)."""
    rollout = await run_in_threadpool(rollouts.get, session, user, rollout_id)
    assert rollout.run_id is not None
    return run_follow.response(
        context, rollout.run_id, run_follow.resume_point(after, last_event_id)
    )
