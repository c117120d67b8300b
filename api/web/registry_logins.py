"""The Registries page (admins): the private registry logins the console pulls with
(registry, username, when and by whom set; never the password, which is write-only), a form
to add or replace one, and Remove. It calls api/vault/registries as /api/v1/registries does;
a refused form shows the API's error code and message and stores nothing."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse
from sqlalchemy.orm import Session

from api.context import Context
from api.deps import ContextDep, SessionDep
from api.errors import ApiError
from api.vault import registries
from api.web.auth import Browser, BrowserDep, PostingBrowserDep
from api.web.templating import render

router = APIRouter(include_in_schema=False)

NOT_ADMIN = "Only admins can see and change registry logins."


def _page(
    request: Request, context: Context, db: Session, browser: Browser, *,
    refused: ApiError | None = None, done: str | None = None, values: dict[str, str] | None = None,
    status_code: int = 200,
) -> HTMLResponse:  # fmt: skip
    shown: dict[str, Any] = {
        "browser": browser,
        "section": "registries",
        "refresh_seconds": context.settings.web_refresh_seconds,
    }
    if not browser.user.is_admin:
        shown["forbidden"] = NOT_ADMIN
        return render(request, "registries.html", shown, status_code=403)
    shown.update(
        logins=registries.list_all(db),
        refused=refused,
        done=done,
        values=values or {},
    )
    return render(request, "registries.html", shown, status_code=status_code)


@router.get("/registries", response_class=HTMLResponse)
def registries_page(
    request: Request, browser: BrowserDep, context: ContextDep, db: SessionDep
) -> HTMLResponse:
    return _page(request, context, db, browser)


# Bounded by the service (api/vault/registries), which answers what the API answers.
FormText = Annotated[str, Form()]


@router.post("/registries", response_class=HTMLResponse)
def put_login(
    request: Request, browser: PostingBrowserDep, context: ContextDep, db: SessionDep,
    registry: FormText = "", username: FormText = "", password: FormText = "",
) -> HTMLResponse:  # fmt: skip
    """Add or replace a registry's login (PUT /api/v1/registries/{registry}'s service)."""
    if not browser.user.is_admin:
        return _page(request, context, db, browser)
    registry, username = registry.strip(), username.strip()
    shown = {"registry": registry, "username": username}  # the password is never shown back
    try:
        registries.put(db, context.secrets, browser.user, registry, username, password)
    except ApiError as error:
        return _page(request, context, db, browser, refused=error, values=shown,
                     status_code=error.status)  # fmt: skip
    done = f"The login for {registry} is stored (as {username}); deploys of its images use it."
    return _page(request, context, db, browser, done=done)


@router.post("/registries/remove", response_class=HTMLResponse)
def remove_login(
    request: Request, browser: PostingBrowserDep, context: ContextDep, db: SessionDep,
    registry: FormText = "",
) -> HTMLResponse:  # fmt: skip
    """Remove a registry's login (DELETE /api/v1/registries/{registry}'s service)."""
    if not browser.user.is_admin:
        return _page(request, context, db, browser)
    try:
        registries.delete(db, browser.user, registry.strip())
    except ApiError as error:
        return _page(request, context, db, browser, refused=error, status_code=error.status)
    return _page(request, context, db, browser, done=f"The login for {registry} is removed.")
