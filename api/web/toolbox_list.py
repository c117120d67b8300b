"""The toolbox list page, its auto-refreshed rows, and the sync button."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from api.deps import ContextDep, SessionDep
from api.errors import ApiError
from api.monitoring.router import MonitorDep
from api.services import toolboxes
from api.web.auth import BrowserDep, PostingBrowserDep
from api.web.provisioning import ProvisionForm
from api.web.templating import render
from api.web.views import toolbox_rows

router = APIRouter(include_in_schema=False)

# Sent with answers that changed something: every auto-refreshed panel reloads at once.
CHANGED = {"HX-Trigger": "dtma:changed"}


@router.get("/toolboxes", response_class=HTMLResponse)
def toolboxes_page(
    request: Request, browser: BrowserDep, context: ContextDep, db: SessionDep
) -> HTMLResponse:
    return render(
        request,
        "toolboxes.html",
        {
            "browser": browser,
            "section": "toolboxes",
            "refresh_seconds": context.settings.web_refresh_seconds,
            "rows": toolbox_rows(db, browser.user),
            "provision": ProvisionForm.empty(db) if browser.user.is_admin else None,
        },
    )


@router.get("/toolboxes/rows", response_class=HTMLResponse)
def toolbox_rows_fragment(request: Request, browser: BrowserDep, db: SessionDep) -> HTMLResponse:
    return render(
        request, "_toolbox_rows.html", {"browser": browser, "rows": toolbox_rows(db, browser.user)}
    )


@router.post("/toolboxes/sync", response_class=HTMLResponse)
async def sync(
    request: Request,
    browser: PostingBrowserDep,
    context: ContextDep,
    db: SessionDep,
    monitor: MonitorDep,
) -> HTMLResponse:
    """Import the droplets as POST /api/v1/toolboxes/sync does (admins only), then read
    every toolbox's state as the monitor's sync does; reported as a banner."""
    if not browser.user.is_admin:
        return render(
            request,
            "_banner.html",
            {"kind": "bad", "title": "Not allowed.", "text": "Only admins can sync toolboxes."},
            status_code=403,
        )
    try:
        report = await run_in_threadpool(toolboxes.import_tagged, browser.user, context, db)
        states = await monitor.sync_all()
    except ApiError as error:
        return render(
            request,
            "_banner.html",
            {"kind": "bad", "title": "Sync failed.", "text": error.message},
            status_code=error.status,
        )
    summary = (
        f"DigitalOcean: {len(report.created)} new, {len(report.updated)} updated, "
        f"{len(report.removed)} removed. State: {states.summary()}."
    )
    return render(
        request,
        "_banner.html",
        {"kind": "ok", "title": "Synced.", "text": summary},
        headers=CHANGED,
    )
