"""The toolbox page's maintenance buttons: start a window for a chosen time with a reason,
or end the one in force; each as the JSON routes do it (bounded, audited)."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Form, Path, Request
from fastapi.responses import HTMLResponse
from pydantic import ValidationError

from api.deps import SessionDep, visible_toolbox
from api.errors import ApiError
from api.models import utcnow
from api.monitoring import maintenance
from api.monitoring.schemas import MaintenanceIn
from api.web.auth import PostingBrowserDep
from api.web.templating import render
from api.web.toolbox_list import CHANGED

router = APIRouter(include_in_schema=False)

ToolboxIdPath = Annotated[str, Path(max_length=64)]
# What the form offers, in minutes.
DURATIONS = (30, 60, 120, 240, 480, 1440)


def _banner(request: Request, kind: str, title: str, text: str, status: int = 200) -> HTMLResponse:
    return render(
        request,
        "_banner.html",
        {"kind": kind, "title": title, "text": text},
        status_code=status,
        headers=CHANGED if status == 200 else None,
    )


@router.post("/toolboxes/{toolbox_id}/maintenance", response_class=HTMLResponse)
def start(
    request: Request,
    toolbox_id: ToolboxIdPath,
    browser: PostingBrowserDep,
    db: SessionDep,
    minutes: Annotated[int, Form()],
    reason: Annotated[str, Form(max_length=500)] = "",
) -> HTMLResponse:
    if minutes not in DURATIONS:
        return _banner(request, "bad", "Not started.", "Choose one of the offered times.", 422)
    try:
        body = MaintenanceIn(until=utcnow() + timedelta(minutes=minutes), reason=reason.strip())
    except ValidationError:
        why = "Say why the toolbox is in maintenance."
        return _banner(request, "bad", "Not started.", why, 422)
    try:
        toolbox = visible_toolbox(db, browser.user, toolbox_id)
        window = maintenance.start(db, toolbox, browser.user, body.until, body.reason)
    except ApiError as error:
        return _banner(request, "bad", "Not started.", error.message, error.status)
    text = f"No alert and no automatic recovery until {window.until:%Y-%m-%d %H:%M:%S UTC}."
    return _banner(request, "ok", "In maintenance.", text)


@router.post("/toolboxes/{toolbox_id}/maintenance/end", response_class=HTMLResponse)
def end(
    request: Request, toolbox_id: ToolboxIdPath, browser: PostingBrowserDep, db: SessionDep
) -> HTMLResponse:
    try:
        toolbox = visible_toolbox(db, browser.user, toolbox_id)
        maintenance.end(db, toolbox, browser.user)
    except ApiError as error:
        return _banner(request, "bad", "Not ended.", error.message, error.status)
    return _banner(request, "ok", "Maintenance ended.", "Alerts and recovery are back on.")
