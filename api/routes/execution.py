"""Answering an action from a route: with its ConsoleResult (waiting) under the HTTP status
its error code fits (runner/error_codes.py), or at once with 202 and the run's URL
(`?wait=false`)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Query
from fastapi.responses import JSONResponse
from pydantic import RootModel

from api.context import Context
from api.errors import ErrorBody
from api.models import Toolbox, User
from api.schemas.runs import RunAccepted
from api.services import execution
from api.services.actions import Action
from api.services.runs import run_url
from runner import ConsoleResult, error_codes

WaitQuery = Annotated[
    bool, Query(description="Wait for the run's result (default), or answer 202 at once")
]


class ActionRefusedOrFailed(RootModel[ConsoleResult | ErrorBody]):
    """A run that ended without success (its ConsoleResult, with `error_code`), or an action
    refused before any run started (`{"error": {...}}`)."""


def _codes(status: int) -> str:
    return ", ".join(f"`{code}`" for code in error_codes.codes_answering(status))


ACTION_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The run succeeded and was verified: its ConsoleResult",
        "model": ConsoleResult,
    },
    202: {"description": "Started (`wait=false`)", "model": RunAccepted},
    404: {
        "description": "No such toolbox (error body), or the run found nothing of that name: "
        f"its ConsoleResult ({_codes(404)})",
        "model": ActionRefusedOrFailed,
    },
    409: {
        "description": "Refused before running: the toolbox is busy (`toolbox_busy`) or gone "
        f"(`toolbox_removed`); or the run changed nothing because of the toolbox's state: "
        f"its ConsoleResult ({_codes(409)})",
        "model": ActionRefusedOrFailed,
    },
    422: {
        "description": "Invalid input, nothing started (`invalid_input`); or the run could not "
        f"satisfy the input: its ConsoleResult ({_codes(422)})",
        "model": ActionRefusedOrFailed,
    },
    429: {
        "description": "Refused before running: you have DTMA_MAX_RUNS_PER_USER runs queued or "
        "running (`too_many_runs`)",
        "model": ErrorBody,
    },
    502: {
        "description": "The run failed on the toolbox or could not reach it: its ConsoleResult "
        f"({_codes(502)})",
        "model": ActionRefusedOrFailed,
    },
    504: {
        "description": f"The run timed out: its ConsoleResult ({_codes(504)})",
        "model": ConsoleResult,
    },
}


def result_response(result: ConsoleResult, url: str) -> JSONResponse:
    """The ConsoleResult under the status its error code fits (200 when it succeeded)."""
    status = 200 if result.success else error_codes.http_status(result.error_code or "run_failed")
    return JSONResponse(
        result.model_dump(mode="json"), status_code=status, headers={"Location": url}
    )


async def perform(
    context: Context, toolbox: Toolbox, user: User | None, action: Action, *, wait: bool
) -> JSONResponse:
    run_id = await execution.start(context, toolbox, user, action)
    url = run_url(run_id)
    if not wait:
        accepted = RunAccepted(run_id=run_id, status="running", url=url, events_url=f"{url}/events")
        return JSONResponse(accepted.model_dump(), status_code=202, headers={"Location": url})
    return result_response(await context.runs.wait(run_id), url)
