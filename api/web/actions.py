"""Buttons and forms that start runs, and the action log they stream into.

Each post starts the run without waiting (the same `start` the JSON routes use) and answers
with a run card; the browser follows the run's events over SSE and, when it ends, swaps in
the finished card rendered from the stored ConsoleResult."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Literal

from fastapi import APIRouter, Header, Path, Query, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from api.context import Context
from api.deps import ContextDep, SessionDep, visible_toolbox
from api.errors import ApiError, Conflict, InvalidInput
from api.models import Toolbox, User
from api.schemas.actions import TOOL_NAME
from api.schemas.runs import RunOut
from api.services import actions, run_follow, run_history
from api.services.actions import Action
from api.services.execution import start
from api.vault import registries
from api.web.auth import BrowserDep, PostingBrowserDep
from api.web.deploy_form import DeployForm
from api.web.templating import render
from api.web.toolbox_list import CHANGED

router = APIRouter(include_in_schema=False)

ToolboxIdPath = Annotated[str, Path(max_length=64)]
ToolNamePath = Annotated[str, Path(pattern=TOOL_NAME)]
RunIdPath = Annotated[str, Path(max_length=64)]


def _toolbox(db: Session, user: User, toolbox_id: str) -> Toolbox:
    return visible_toolbox(db, user, toolbox_id)


async def _start(
    request: Request,
    context: Context,
    db: Session,
    user: User,
    toolbox_id: str,
    what: str,
    make: Callable[[Toolbox], Action],
) -> HTMLResponse:
    """Start the action `make(toolbox)` builds; a refused start is shown as a red card."""
    try:
        toolbox = await run_in_threadpool(_toolbox, db, user, toolbox_id)
        action: Action = await run_in_threadpool(make, toolbox)
        run_id = await start(context, toolbox, user, action)
    except ApiError as error:
        return render(
            request,
            "_run_refused.html",
            {"what": what, "error": error},
            status_code=error.status,
        )
    run = await run_in_threadpool(_shown, db, user, run_id)
    return render(request, "_run.html", {"run": run, "toolbox_id": toolbox_id}, headers=CHANGED)


def _shown(db: Session, user: User, run_id: str) -> RunOut:
    return run_history.out(db, run_history.get(db, user, run_id))


@router.post("/toolboxes/{toolbox_id}/dtma/{kind}", response_class=HTMLResponse)
async def agent_action(
    request: Request,
    toolbox_id: ToolboxIdPath,
    kind: Literal["install", "restart", "redeploy"],
    browser: PostingBrowserDep,
    context: ContextDep,
    db: SessionDep,
) -> HTMLResponse:
    def make(toolbox: Toolbox) -> Action:
        token = context.secrets.unseal_from(toolbox, Toolbox.agent_token_ciphertext)
        return actions.dtma_action(kind, context.settings, token)

    what = f"{kind.capitalize()} the agent"
    return await _start(request, context, db, browser.user, toolbox_id, what, make)


@router.post("/toolboxes/{toolbox_id}/tools/{name}/{kind}", response_class=HTMLResponse)
async def tool_action(
    request: Request,
    toolbox_id: ToolboxIdPath,
    name: ToolNamePath,
    kind: Literal["start", "stop", "restart", "remove"],
    browser: PostingBrowserDep,
    context: ContextDep,
    db: SessionDep,
) -> HTMLResponse:
    return await _start(
        request,
        context,
        db,
        browser.user,
        toolbox_id,
        f"{kind.capitalize()} {name}",
        lambda _toolbox: actions.tool_action(kind, name),
    )


@router.post("/toolboxes/{toolbox_id}/tools", response_class=HTMLResponse)
async def deploy(
    request: Request,
    toolbox_id: ToolboxIdPath,
    browser: PostingBrowserDep,
    context: ContextDep,
    db: SessionDep,
) -> HTMLResponse:
    """Validate the Deploy form; on success start the run and put its card in the log."""
    form = DeployForm.submitted(dict(await request.form()))
    spec = form.parse()
    values = {"toolbox": {"id": toolbox_id}, "deploy": form}
    if spec is None:
        return render(request, "_deploy_form.html", values, status_code=422)
    try:
        toolbox = await run_in_threadpool(_toolbox, db, browser.user, toolbox_id)
        login = await run_in_threadpool(registries.login_for, db, context.secrets, spec.image)
        run_id = await start(context, toolbox, browser.user, actions.deploy_action(spec, login))
    except InvalidInput as invalid:
        form.report_field(str(invalid.extra.get("field", "form")), invalid.message)
        return render(request, "_deploy_form.html", values, status_code=422)
    except ApiError as error:
        form.error("form", error.message)
        return render(request, "_deploy_form.html", values, status_code=error.status)
    run = await run_in_threadpool(_shown, db, browser.user, run_id)
    return render(
        request,
        "_deploy_form.html",
        {**values, "deploy": DeployForm.empty(), "started_run": run},
        headers=CHANGED,
    )


@router.get("/toolboxes/{toolbox_id}/runs/{run_id}", response_class=HTMLResponse)
def run_card(
    request: Request,
    toolbox_id: ToolboxIdPath,
    run_id: RunIdPath,
    browser: BrowserDep,
    db: SessionDep,
) -> HTMLResponse:
    """The run as it stands (finished: with its result, message and real error)."""
    run = _shown(db, browser.user, run_id)
    return render(request, "_run.html", {"run": run, "toolbox_id": toolbox_id})


@router.post("/toolboxes/{toolbox_id}/runs/{run_id}/cancel", response_class=HTMLResponse)
async def cancel(
    request: Request,
    toolbox_id: ToolboxIdPath,
    run_id: RunIdPath,
    browser: PostingBrowserDep,
    context: ContextDep,
    db: SessionDep,
) -> HTMLResponse:
    """Cancel a running run (as POST /api/v1/runs/{id}/cancel) and show how it ended."""
    try:
        run = await run_follow.cancel(context, db, browser.user, run_id)
    except Conflict:  # it ended meanwhile: show how
        run = await run_in_threadpool(_shown, db, browser.user, run_id)
    return render(request, "_run.html", {"run": run, "toolbox_id": toolbox_id}, headers=CHANGED)


@router.get("/runs/{run_id}/events")
async def run_event_stream(
    run_id: RunIdPath,
    browser: BrowserDep,
    context: ContextDep,
    db: SessionDep,
    last_event_id: Annotated[str | None, Header(max_length=32)] = None,
    after: Annotated[int, Query(ge=0, le=run_follow.MAX_SEQ)] = 0,
) -> Response:
    """The run's events for the page's EventSource: the API's own SSE stream, with the
    session cookie instead of a bearer token."""
    await run_in_threadpool(run_history.get, db, browser.user, run_id)
    return run_follow.response(context, run_id, run_follow.resume_point(after, last_event_id))
