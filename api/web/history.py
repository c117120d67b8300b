"""The Runs and Audit pages: every run and every audit entry the user may see, newest first,
filtered and paginated; and one run on a page of its own, live (over the run's SSE stream)
while it runs, with its stored event log once it ended.

Filters are parsed by the services (api/services/history_filters.py) exactly as the JSON
routes parse them; a filter that does not parse is shown next to the form (422), nothing
else."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.context import Context
from api.deps import ContextDep, SessionDep
from api.errors import ApiError, InvalidInput
from api.models import Toolbox, User
from api.schemas.runs import RunOut
from api.services import audit_log, run_history, run_store, toolboxes
from api.services.history_filters import RUN_STATUSES
from api.web.auth import Browser, BrowserDep
from api.web.templating import render

router = APIRouter(include_in_schema=False)

PAGE_SIZE = 50
MAX_PAGE = 10_000
# Filter values arrive as text (bounded here, parsed by the services).
Text = Annotated[str, Query(max_length=128)]


@dataclass(frozen=True)
class Listing:
    """What a history page shows besides its rows: the filters as given, the page, and the
    error of a filter that did not parse."""

    values: dict[str, str]
    page: int
    error: InvalidInput | None = None
    has_next: bool = False

    def query(self, page: int | None = None) -> str:
        """The query string of these filters, at `page` (default: this one)."""
        values = {k: v for k, v in self.values.items() if v}
        if (page or self.page) > 1:
            values["page"] = str(page or self.page)
        return urlencode(values)


def _page(text: str) -> int:
    if not text.strip():
        return 1
    if not text.strip().isdigit() or not 1 <= int(text) <= MAX_PAGE:
        raise InvalidInput("page", f"page must be a number from 1 to {MAX_PAGE}")
    return int(text)


def _names(db: Session, model: type[Toolbox] | type[User], ids: set[str | None]) -> dict[str, str]:
    wanted = {i for i in ids if i}
    found = db.execute(select(model.id, model.name).where(model.id.in_(wanted)))
    return {row_id: name for row_id, name in found}


def _refused(
    request: Request, template: str, context: dict[str, Any], error: InvalidInput
) -> HTMLResponse:
    return render(request, template, {**context, "rows": []}, status_code=error.status)


# -- Runs ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunRow:
    run: RunOut
    toolbox_name: str | None
    user_name: str | None


def _run_rows(db: Session, user: User, filters: run_history.RunFilters, page: int) -> list[RunRow]:
    found = run_history.list_runs(
        db, user, filters, limit=PAGE_SIZE + 1, offset=(page - 1) * PAGE_SIZE
    )
    boxes = _names(db, Toolbox, {r.toolbox_id for r in found})
    people = _names(db, User, {r.user_id for r in found})
    return [RunRow(r, boxes.get(r.toolbox_id or ""), people.get(r.user_id or "")) for r in found]


def _runs(
    request: Request, browser: Browser, db: Session, template: str, values: dict[str, str],
    page_text: str, extra: dict[str, Any],
) -> HTMLResponse:  # fmt: skip
    context: dict[str, Any] = {
        "browser": browser,
        "section": "runs",
        "statuses": RUN_STATUSES,
        "toolboxes": toolboxes.list_toolboxes(db, browser.user, include_removed=True),
        "actions": run_history.actions_seen(db, browser.user),
        **extra,
    }
    try:
        page = _page(page_text)
        filters = run_history.RunFilters.parse(**values)
    except InvalidInput as error:
        context["listing"] = Listing(values, 1, error)
        return _refused(request, template, context, error)
    rows = _run_rows(db, browser.user, filters, page)
    context["listing"] = Listing(values, page, has_next=len(rows) > PAGE_SIZE)
    context["rows"] = rows[:PAGE_SIZE]
    return render(request, template, context)


@router.get("/runs", response_class=HTMLResponse)
def runs_page(
    request: Request,
    browser: BrowserDep,
    context: ContextDep,
    db: SessionDep,
    toolbox: Text = "",
    action: Text = "",
    status: Text = "",
    user: Text = "",
    since: Text = "",
    until: Text = "",
    page: Text = "",
) -> HTMLResponse:
    values = {"toolbox": toolbox, "action": action, "status": status, "user": user,
              "since": since, "until": until}  # fmt: skip
    extra = {"refresh_seconds": context.settings.web_refresh_seconds}
    return _runs(request, browser, db, "runs.html", values, page, extra)


@router.get("/runs/rows", response_class=HTMLResponse)
def run_rows_fragment(
    request: Request,
    browser: BrowserDep,
    db: SessionDep,
    toolbox: Text = "",
    action: Text = "",
    status: Text = "",
    user: Text = "",
    since: Text = "",
    until: Text = "",
    page: Text = "",
) -> HTMLResponse:
    """The rows alone, for the page's auto-refresh."""
    values = {"toolbox": toolbox, "action": action, "status": status, "user": user,
              "since": since, "until": until}  # fmt: skip
    return _runs(request, browser, db, "_run_rows.html", values, page, {})


def _run_detail(db: Session, context: Context, user: User, run_id: str) -> dict[str, Any]:
    run = run_history.out(db, run_history.get(db, user, run_id))
    toolbox = db.get(Toolbox, run.toolbox_id) if run.toolbox_id else None
    events: list[dict[str, Any]] = []
    if run.status not in ("queued", "running"):
        events, _ = run_store.stored_events(context.sessions, run.id, 0)
    return {
        "run": run,
        "toolbox": toolbox,
        "toolbox_id": run.toolbox_id,
        "events": events,
        "result_url": f"/runs/{run.id}/detail",
    }


@router.get("/runs/{run_id}", response_class=HTMLResponse)
def run_page(
    request: Request,
    run_id: Annotated[str, Path(max_length=64)],
    browser: BrowserDep,
    context: ContextDep,
    db: SessionDep,
) -> HTMLResponse:
    """One run on a page of its own (where the Runs page's rows and the alerts' recovery
    links lead): live while it runs, its stored event log once it ended."""
    shown: dict[str, Any] = {"browser": browser, "section": "runs",
                             "refresh_seconds": context.settings.web_refresh_seconds}  # fmt: skip
    try:
        detail = _run_detail(db, context, browser.user, run_id)
    except ApiError as error:
        return render(
            request, "run_page.html", {**shown, "missing": error.message}, status_code=error.status
        )
    return render(request, "run_page.html", {**shown, **detail})


@router.get("/runs/{run_id}/detail", response_class=HTMLResponse)
def run_detail_fragment(
    request: Request,
    run_id: Annotated[str, Path(max_length=64)],
    browser: BrowserDep,
    context: ContextDep,
    db: SessionDep,
) -> HTMLResponse:
    """The run's card and event log, swapped in by the page when a live run ends."""
    detail = _run_detail(db, context, browser.user, run_id)
    return render(request, "_run_detail.html", {"browser": browser, **detail})


# -- Audit -----------------------------------------------------------------------------------
def _audit(
    request: Request, browser: Browser, db: Session, values: dict[str, str], page_text: str,
    refresh_seconds: int,
) -> HTMLResponse:  # fmt: skip
    context: dict[str, Any] = {
        "browser": browser,
        "section": "audit",
        "refresh_seconds": refresh_seconds,
        "toolboxes": toolboxes.list_toolboxes(db, browser.user, include_removed=True),
        "actions": audit_log.actions_seen(db, browser.user),
    }
    try:
        page = _page(page_text)
        filters = audit_log.AuditFilters.parse(**values)
    except InvalidInput as error:
        context["listing"] = Listing(values, 1, error)
        return _refused(request, "audit.html", context, error)
    rows = audit_log.list_entries(
        db, browser.user, filters, limit=PAGE_SIZE + 1, offset=(page - 1) * PAGE_SIZE
    )
    context["listing"] = Listing(values, page, has_next=len(rows) > PAGE_SIZE)
    context["rows"] = rows[:PAGE_SIZE]
    return render(request, "audit.html", context)


@router.get("/audit", response_class=HTMLResponse)
def audit_page(
    request: Request,
    browser: BrowserDep,
    context: ContextDep,
    db: SessionDep,
    user: Text = "",
    action: Text = "",
    toolbox: Text = "",
    since: Text = "",
    until: Text = "",
    page: Text = "",
) -> HTMLResponse:
    values = {"user": user, "action": action, "toolbox": toolbox, "since": since, "until": until}
    return _audit(request, browser, db, values, page, context.settings.web_refresh_seconds)
