"""The charts' data for the browser: a toolbox's metrics history as the JSON route answers
it (`api/monitoring/history.py`), behind the browser session instead of a bearer token."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from api.deps import ContextDep, SessionDep, visible_toolbox
from api.models import utcnow
from api.monitoring import history
from api.monitoring.schemas import MetricsOut
from api.web.auth import BrowserDep

router = APIRouter(include_in_schema=False)


@router.get("/toolboxes/{toolbox_id}/metrics")
def toolbox_metrics(
    toolbox_id: Annotated[str, Path(max_length=64)],
    browser: BrowserDep,
    context: ContextDep,
    db: SessionDep,
    range_: Annotated[history.Range, Query(alias="range")] = "24h",
) -> MetricsOut:
    toolbox = visible_toolbox(db, browser.user, toolbox_id)
    return history.read(db, context.settings, toolbox.id, range_, utcnow())
