"""Liveness, readiness and Prometheus metrics (no authentication)."""

from __future__ import annotations

from fastapi import APIRouter, Response

from api import __version__, metrics
from api.db import database_reachable
from api.deps import ContextDep
from api.errors import Unavailable

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process answers."""
    return {"status": "ok", "version": __version__}


@router.get("/readyz", responses={503: {"description": "The database is not reachable"}})
def readyz(context: ContextDep) -> dict[str, str]:
    """The service can do its work: the database answers."""
    if not database_reachable(context.engine):
        raise Unavailable("the database is not reachable", code="not_ready")
    return {"status": "ready", "database": "ok"}


@router.get("/metrics", response_class=Response)
def prometheus_metrics() -> Response:
    """Prometheus text format: HTTP requests, run durations and outcomes."""
    body, content_type = metrics.render()
    return Response(body, media_type=content_type)
