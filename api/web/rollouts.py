"""The Rollouts page: start a rollout from a form (the target picker shows how many
toolboxes match, and the batches they make, before the start button appears), and follow
one live: a progress bar per batch and a row per host, refreshed as the rollout's run
streams its events (the runs' SSE stream; static/rollouts.js)."""

from __future__ import annotations

import contextlib
import functools
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from api.deps import ContextDep, SessionDep
from api.errors import ApiError, InvalidInput
from api.models import User
from api.schemas.rollouts import CreateRollout, PreviewRollout, RolloutPreview
from api.services import rollouts, run_follow, toolboxes
from api.web.auth import Browser, BrowserDep, PostingBrowserDep
from api.web.templating import render

router = APIRouter(include_in_schema=False)

RolloutIdPath = Annotated[str, Path(max_length=64)]
ACTIONS = (("dtma.redeploy", "Redeploy the agent"), ("tool.restart", "Restart a tool"),
           ("tool.deploy", "Deploy / upgrade a tool"))  # fmt: skip
TARGETS = (("all", "Every toolbox I may manage"), ("tag", "DigitalOcean tag"),
           ("region", "Region"), ("toolbox_ids", "Chosen toolboxes"))  # fmt: skip


def _validated(model: type[PreviewRollout], values: dict[str, Any]) -> Any:
    try:
        return model.model_validate(values)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "form"
        raise InvalidInput(where, first["msg"]) from error


def _batching(form: dict[str, Any], toolbox_ids: list[str]) -> dict[str, Any]:
    """The target and batching of the form, in the API's request shape."""
    kind = form.get("target") or "all"
    target: dict[str, Any] = {
        "all": {"all": True},
        "tag": {"tag": form.get("tag", "")},
        "region": {"region": form.get("region", "")},
        "toolbox_ids": {"toolbox_ids": toolbox_ids},
    }.get(kind, {"all": True})
    batch = str(form.get("batch_size") or "1").strip()
    failures = str(form.get("max_failures") or "0").strip()
    return {
        "target": target,
        "batch_size": int(batch) if batch.isdigit() else batch,
        "max_failures": int(failures) if failures.isdigit() else failures,
        "canary": form.get("canary") == "on",
    }


def _body(form: dict[str, Any], toolbox_ids: list[str]) -> CreateRollout:
    """The form as the API's request (the same validation; errors name the field)."""
    action = form.get("action") or "dtma.redeploy"
    params: dict[str, Any] = {}
    if action == "dtma.redeploy" and form.get("version"):
        params["version"] = form["version"]
    if action in ("tool.restart", "tool.deploy"):
        params["name"] = form.get("name", "")
    if action == "tool.deploy":
        params["image"] = form.get("image", "")
    values = {**_batching(form, toolbox_ids), "action": action, "params": params}
    body: CreateRollout = _validated(CreateRollout, values)
    return body


def _page(
    request: Request, db: Session, browser: Browser, *, error: ApiError | None = None,
    form: dict[str, Any] | None = None, status_code: int = 200,
) -> HTMLResponse:  # fmt: skip
    user = browser.user
    visible = toolboxes.list_toolboxes(db, user, include_removed=False)
    return render(
        request,
        "rollouts.html",
        {
            "browser": browser,
            "section": "rollouts",
            "actions": ACTIONS,
            "targets": TARGETS,
            "toolboxes": visible,
            "tags": sorted({tag for t in visible for tag in (t.tags or [])}),
            "regions": sorted({t.region for t in visible if t.region}),
            "recent": [rollouts.view(db, r) for r in rollouts.recent(db, user)],
            "error": error,
            "form": form or {"canary": "on", "batch_size": "1", "max_failures": "0"},
        },
        status_code=status_code,
    )


@router.get("/rollouts", response_class=HTMLResponse)
def rollouts_page(request: Request, browser: BrowserDep, db: SessionDep) -> HTMLResponse:
    return _page(request, db, browser)


async def _form(request: Request) -> tuple[dict[str, Any], list[str]]:
    data = await request.form()
    fields = {k: v for k, v in data.items() if isinstance(v, str) and k != "toolbox_ids"}
    ids = [v for v in data.getlist("toolbox_ids") if isinstance(v, str)]
    return fields, ids


@router.post("/rollouts/preview", response_class=HTMLResponse)
async def preview(request: Request, browser: PostingBrowserDep, db: SessionDep) -> HTMLResponse:
    """How many toolboxes the form's target covers now, and their batches."""
    fields, ids = await _form(request)
    shown: RolloutPreview | None = None
    error: ApiError | None = None
    try:
        body: PreviewRollout = _validated(PreviewRollout, _batching(fields, ids))
        shown = await run_in_threadpool(
            rollouts.preview, db, browser.user, body.target, body.batch_size, body.canary
        )
    except ApiError as refused:
        error = refused
    return render(request, "_rollout_preview.html", {"preview": shown, "error": error})


@router.post("/rollouts", response_class=HTMLResponse)
async def start(
    request: Request, browser: PostingBrowserDep, context: ContextDep, db: SessionDep
) -> Response:
    fields, ids = await _form(request)
    try:
        rollout_id = await rollouts.start(context, browser.user, _body(fields, ids))
    except ApiError as error:
        shown = functools.partial(
            _page, request, db, browser, error=error, form=fields, status_code=error.status
        )
        return await run_in_threadpool(shown)
    return RedirectResponse(f"/rollouts/{rollout_id}", status_code=303)


def _detail(db: Session, user: User, rollout_id: str) -> dict[str, Any]:
    db.expire_all()
    return {"rollout": rollouts.view(db, rollouts.get(db, user, rollout_id))}


@router.get("/rollouts/{rollout_id}", response_class=HTMLResponse)
def rollout_page(
    request: Request, rollout_id: RolloutIdPath, browser: BrowserDep, db: SessionDep
) -> HTMLResponse:
    try:
        shown = _detail(db, browser.user, rollout_id)
    except ApiError as error:
        missing = {"browser": browser, "section": "rollouts", "missing": error.message}
        return render(request, "rollout.html", missing, status_code=404)
    return render(request, "rollout.html", {"browser": browser, "section": "rollouts", **shown})


@router.get("/rollouts/{rollout_id}/progress", response_class=HTMLResponse)
def rollout_progress(
    request: Request, rollout_id: RolloutIdPath, browser: BrowserDep, db: SessionDep
) -> HTMLResponse:
    """The batches and the host table as they stand (the live view swaps this in)."""
    return render(request, "_rollout_progress.html", _detail(db, browser.user, rollout_id))


@router.post("/rollouts/{rollout_id}/cancel", response_class=HTMLResponse)
async def cancel(
    request: Request, rollout_id: RolloutIdPath, browser: PostingBrowserDep,
    context: ContextDep, db: SessionDep,
) -> HTMLResponse:  # fmt: skip
    """Stop after the current batch (as POST /api/v1/rollouts/{id}/cancel)."""
    with contextlib.suppress(ApiError):  # ended meanwhile: show how it did
        await rollouts.cancel(context, browser.user, rollout_id)
    shown = await run_in_threadpool(_detail, db, browser.user, rollout_id)
    return render(request, "_rollout_progress.html", shown)


@router.get("/rollouts/{rollout_id}/events")
async def rollout_event_stream(
    rollout_id: RolloutIdPath,
    browser: BrowserDep,
    context: ContextDep,
    db: SessionDep,
    after: Annotated[int, Query(ge=0, le=run_follow.MAX_SEQ)] = 0,
) -> Response:
    """The rollout's run's events (the runs' SSE stream) with the session cookie."""
    rollout = await run_in_threadpool(rollouts.get, db, browser.user, rollout_id)
    if rollout.run_id is None:
        raise InvalidInput("rollout", "this rollout has no run")
    return run_follow.response(context, rollout.run_id, after)
