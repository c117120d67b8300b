"""The Alerts page: open and resolved alerts on the toolboxes the user may see, filtered by
state, severity, check and toolbox, with acknowledging (who, when, comment) and links to
the toolbox and to the recovery runs (their page is in api/web/history.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Path, Query, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.deps import ContextDep, SessionDep
from api.errors import ApiError
from api.models import Toolbox, User
from api.monitoring import reports
from api.monitoring.models import Alert, RecoveryAttempt
from api.services import toolboxes
from api.web.auth import Browser, BrowserDep, PostingBrowserDep
from api.web.templating import render

router = APIRouter(include_in_schema=False)

StateFilter = Literal["open", "resolved", "all"]
SeverityFilter = Literal["critical", "warning", ""]
PAGE_SIZE = 200


@dataclass(frozen=True)
class Filters:
    state: StateFilter = "open"
    severity: SeverityFilter = ""
    check: str = ""
    toolbox: str = ""

    def query(self) -> str:
        values = {"state": self.state, "severity": self.severity, "check": self.check,
                  "toolbox": self.toolbox}  # fmt: skip
        return urlencode({k: v for k, v in values.items() if v})


@dataclass(frozen=True)
class AlertRow:
    alert: Alert
    toolbox_name: str
    recovery_runs: list[str]  # run ids, oldest first


def alert_rows(db: Session, user: User, filters: Filters) -> list[AlertRow]:
    found = reports.visible_alerts(
        db,
        user,
        state=None if filters.state == "all" else filters.state,
        toolbox_id=filters.toolbox or None,
        severity=filters.severity or None,
        check=filters.check or None,
        limit=PAGE_SIZE,
    )
    return _rows(db, found)


def _rows(db: Session, found: list[Alert]) -> list[AlertRow]:
    ids = [a.id for a in found]
    toolbox_ids = {a.toolbox_id for a in found}
    names: dict[str, str] = {
        toolbox_id: name
        for toolbox_id, name in db.execute(
            select(Toolbox.id, Toolbox.name).where(Toolbox.id.in_(toolbox_ids))
        )
    }
    runs: dict[str, list[str]] = {alert_id: [] for alert_id in ids}
    for alert_id, run_id in db.execute(
        select(RecoveryAttempt.alert_id, RecoveryAttempt.run_id)
        .where(RecoveryAttempt.alert_id.in_(ids), RecoveryAttempt.run_id.is_not(None))
        .order_by(RecoveryAttempt.started_at)
    ):
        runs[alert_id].append(str(run_id))
    return [AlertRow(a, names.get(a.toolbox_id, a.toolbox_id), runs[a.id]) for a in found]


def _choices(db: Session, user: User) -> tuple[list[Toolbox], list[str]]:
    """The toolboxes and the checks the filter offers (those the user may see)."""
    visible = toolboxes.list_toolboxes(db, user, include_removed=False)
    checks = db.scalars(
        select(Alert.check)
        .where(Alert.toolbox_id.in_([t.id for t in visible]))
        .distinct()
        .order_by(Alert.check)
    )
    return visible, list(checks)


@router.get("/alerts", response_class=HTMLResponse)
def alerts_page(
    request: Request,
    browser: BrowserDep,
    context: ContextDep,
    db: SessionDep,
    state: Annotated[StateFilter, Query()] = "open",
    severity: Annotated[SeverityFilter, Query()] = "",
    check: Annotated[str, Query(max_length=128)] = "",
    toolbox: Annotated[str, Query(max_length=64)] = "",
) -> HTMLResponse:
    filters = Filters(state, severity, check, toolbox)
    visible, checks = _choices(db, browser.user)
    return render(
        request,
        "alerts.html",
        {
            "browser": browser,
            "section": "alerts",
            "refresh_seconds": context.settings.web_refresh_seconds,
            "filters": filters,
            "toolboxes": visible,
            "checks": checks,
            "rows": alert_rows(db, browser.user, filters),
        },
    )


@router.get("/alerts/rows", response_class=HTMLResponse)
def alert_rows_fragment(
    request: Request,
    browser: BrowserDep,
    db: SessionDep,
    state: Annotated[StateFilter, Query()] = "open",
    severity: Annotated[SeverityFilter, Query()] = "",
    check: Annotated[str, Query(max_length=128)] = "",
    toolbox: Annotated[str, Query(max_length=64)] = "",
) -> HTMLResponse:
    filters = Filters(state, severity, check, toolbox)
    return render(
        request,
        "_alert_rows.html",
        {"browser": browser, "filters": filters, "rows": alert_rows(db, browser.user, filters)},
    )


@router.post("/alerts/{alert_id}/acknowledge", response_class=HTMLResponse)
def acknowledge_alert(
    request: Request,
    alert_id: Annotated[str, Path(max_length=64)],
    browser: PostingBrowserDep,
    db: SessionDep,
    comment: Annotated[str, Form(max_length=1000)] = "",
) -> HTMLResponse:
    """Acknowledge as POST /api/v1/alerts/{id}/acknowledge does; answers the row."""
    try:
        alert = reports.acknowledge(db, browser.user, alert_id, comment)
    except ApiError as error:
        return _refused(request, browser, error)
    return render(request, "_alert_row.html", {"browser": browser, "row": _rows(db, [alert])[0]})


def _refused(request: Request, browser: Browser, error: ApiError) -> HTMLResponse:
    return render(
        request,
        "_banner.html",
        {"kind": "bad", "title": "Not acknowledged.", "text": error.message},
        status_code=error.status,
        headers={"HX-Retarget": "#alerts-result", "HX-Reswap": "innerHTML"},
    )
