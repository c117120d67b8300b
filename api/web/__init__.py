"""The web console: HTML pages served by the API itself (templates + htmx + SSE).

`install(app)` is the whole public face: it adds the page routes, the static assets and
the redirect to the login form for pages visited without a session. It imports the pages
itself: a command that needs only a model of this package (api/web/models.py, for
`token revoke`) does not load the pages' templates, forms and services.
"""

from __future__ import annotations

from urllib.parse import quote

from fastapi import FastAPI, Request, Response
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles

__all__ = ["install"]


async def _to_login(request: Request, _error: Exception) -> Response:
    if request.headers.get("hx-request"):
        # htmx follows HX-Redirect with a full page load.
        return Response(status_code=401, headers={"HX-Redirect": "/login"})
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)


def install(app: FastAPI) -> None:
    from api.web import (
        actions,
        alerts,
        charts,
        history,
        login,
        logs,
        maintenance,
        provisioning,
        registry_logins,
        rollouts,
        toolbox_list,
        toolbox_page,
    )
    from api.web.auth import LoginRequired
    from api.web.templating import STATIC_DIR

    app.add_exception_handler(LoginRequired, _to_login)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="web-static")
    for module in (
        login,
        toolbox_list,
        provisioning,
        toolbox_page,
        actions,
        logs,
        history,
        alerts,
        maintenance,
        charts,
        rollouts,
        registry_logins,
    ):
        app.include_router(module.router)
