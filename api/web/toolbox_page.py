"""The toolbox page: four tabs (Overview, Containers, System, Logs), each also served alone
as a fragment that htmx swaps in and refreshes."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from api.context import Context
from api.deps import ContextDep, SessionDep, visible_toolbox
from api.errors import NotFound, UpstreamError
from api.models import Toolbox, User
from api.monitoring import maintenance
from api.schemas.observations import Observation
from api.services import observe, run_history
from api.web import panels
from api.web.auth import Browser, BrowserDep
from api.web.deploy_form import DeployForm
from api.web.maintenance import DURATIONS
from api.web.templating import render

router = APIRouter(include_in_schema=False)

Tab = Literal["overview", "containers", "system", "logs"]
TABS: tuple[Tab, ...] = ("overview", "containers", "system", "logs")
ToolboxIdPath = Annotated[str, Path(max_length=64)]
RECENT_RUNS = 8


async def _observe(context: Context, toolbox: Toolbox, kind: observe.Kind) -> Observation | str:
    """The observation, or the reason nothing at all could be shown."""
    try:
        return await observe.read_toolbox(context, toolbox, kind)
    except UpstreamError as error:
        return error.message


async def tab_context(
    context: Context, db: Session, toolbox: Toolbox, user: User, tab: Tab, tool: str | None
) -> dict[str, Any]:
    """What one tab shows; read fresh from the toolbox (agent, then SSH, then cache)."""
    values: dict[str, Any] = {"tab": tab}
    if tab == "overview":
        values["observation"] = await _observe(context, toolbox, "status")
    elif tab == "containers":
        values["observation"] = await _observe(context, toolbox, "tools")
    elif tab == "system":
        values["observation"] = await _observe(context, toolbox, "system")
    # The reads above updated the toolbox row (status, last seen): show the new state.
    await run_in_threadpool(db.refresh, toolbox)
    if tab == "overview":
        values["health"] = await run_in_threadpool(panels.health, db, toolbox)
        values["maintenance"] = await run_in_threadpool(maintenance.active, db, toolbox.id)
        values["durations"] = DURATIONS
    elif tab == "system":
        values["thresholds"] = await run_in_threadpool(
            panels.thresholds, db, context.settings, toolbox
        )
    elif tab == "logs":
        values["tools"] = await run_in_threadpool(panels.tool_names, toolbox)
        values["selected_tool"] = tool
    return values


def _common(browser: Browser, context: Context, toolbox: Toolbox) -> dict[str, Any]:
    return {
        "browser": browser,
        "toolbox": toolbox,
        "section": "toolboxes",
        "refresh_seconds": context.settings.web_refresh_seconds,
        "tabs": TABS,
    }


def _load(db: Session, user: User, toolbox_id: str) -> Toolbox | None:
    try:
        return visible_toolbox(db, user, toolbox_id)
    except NotFound:
        return None


def _not_found(request: Request, browser: Browser, toolbox_id: str) -> HTMLResponse:
    return render(
        request,
        "not_found.html",
        {"browser": browser, "section": "toolboxes", "toolbox_id": toolbox_id},
        status_code=404,
    )


@router.get("/toolboxes/{toolbox_id}", response_class=HTMLResponse)
async def toolbox_page(
    request: Request,
    toolbox_id: ToolboxIdPath,
    browser: BrowserDep,
    context: ContextDep,
    db: SessionDep,
    tab: Annotated[Tab, Query()] = "overview",
    tool: Annotated[str | None, Query(max_length=64)] = None,
) -> HTMLResponse:
    toolbox = await run_in_threadpool(_load, db, browser.user, toolbox_id)
    if toolbox is None:
        return _not_found(request, browser, toolbox_id)
    values = await tab_context(context, db, toolbox, browser.user, tab, tool)
    runs = await run_in_threadpool(
        lambda: run_history.list_runs(db, browser.user, toolbox_id=toolbox.id, limit=RECENT_RUNS)
    )
    return render(
        request,
        "toolbox.html",
        {
            **_common(browser, context, toolbox),
            **values,
            "runs": runs,
            "deploy": DeployForm.empty(),
        },
    )


@router.get("/toolboxes/{toolbox_id}/tabs/{tab}", response_class=HTMLResponse)
async def toolbox_tab(
    request: Request,
    toolbox_id: ToolboxIdPath,
    tab: Tab,
    browser: BrowserDep,
    context: ContextDep,
    db: SessionDep,
    tool: Annotated[str | None, Query(max_length=64)] = None,
) -> HTMLResponse:
    toolbox = await run_in_threadpool(_load, db, browser.user, toolbox_id)
    if toolbox is None:
        return _not_found(request, browser, toolbox_id)
    values = await tab_context(context, db, toolbox, browser.user, tab, tool)
    return render(
        request,
        "_tab.html",
        {
            **_common(browser, context, toolbox),
            **values,
            "deploy": DeployForm.empty(),
            "fragment": True,
        },
    )
