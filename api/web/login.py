"""Signing in and out of the web console."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from api.deps import ContextDep, SessionDep
from api.errors import Unauthorized
from api.settings import Settings
from api.web.auth import CSRF_FIELD, PostingBrowserDep
from api.web.sessions import (
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    new_secret,
    resolve,
    same_secret,
    sign_in,
    sign_out,
)
from api.web.templating import render

router = APIRouter(include_in_schema=False)

HOME = "/toolboxes"


def safe_next(target: str | None) -> str:
    """Only a path on this site: never an open redirect to another origin."""
    if target and target.startswith("/") and not target.startswith(("//", "/\\")):
        return target
    return HOME


def _set_cookie(response: Response, settings: Settings, name: str, value: str, **kw: int) -> None:
    response.set_cookie(
        name,
        value,
        httponly=True,
        samesite="strict",
        secure=settings.web_cookie_secure,
        path="/",
        **kw,  # type: ignore[arg-type]
    )


def _login_form(
    request: Request, settings: Settings, *, next_url: str, error: str | None, status: int
) -> HTMLResponse:
    login_csrf = new_secret()
    response = render(
        request,
        "login.html",
        {"csrf_token": login_csrf, "next_url": next_url, "error": error},
        status_code=status,
    )
    _set_cookie(response, settings, LOGIN_CSRF_COOKIE, login_csrf, max_age=3600)
    return response


@router.get("/", response_class=RedirectResponse)
def home() -> RedirectResponse:
    return RedirectResponse(HOME, status_code=303)


@router.get("/login", response_class=HTMLResponse)
def login_page(
    request: Request, context: ContextDep, db: SessionDep, next: str | None = None
) -> Response:
    if resolve(db, request.cookies.get(SESSION_COOKIE)) is not None:
        return RedirectResponse(safe_next(next), status_code=303)  # signed in already
    return _login_form(request, context.settings, next_url=safe_next(next), error=None, status=200)


@router.post("/login", response_class=HTMLResponse)
def login(
    request: Request,
    context: ContextDep,
    db: SessionDep,
    token: Annotated[str, Form(max_length=4096)] = "",
    csrf_token: Annotated[str, Form(alias=CSRF_FIELD, max_length=256)] = "",
    next: Annotated[str, Form(max_length=2048)] = HOME,
) -> Response:
    settings = context.settings
    next_url = safe_next(next)
    if not same_secret(request.cookies.get(LOGIN_CSRF_COOKIE, ""), csrf_token):
        return _login_form(
            request,
            settings,
            next_url=next_url,
            error="The form expired or did not come from this page. Please try again.",
            status=403,
        )
    if not token.strip():
        return _login_form(
            request, settings, next_url=next_url, error="Paste your API token.", status=422
        )
    try:
        web_session, cookie_value = sign_in(db, settings, token)
    except Unauthorized as error:
        db.rollback()
        return _login_form(
            request, settings, next_url=next_url, error=f"Sign-in refused: {error.message}.",
            status=401,
        )  # fmt: skip
    db.commit()
    response = RedirectResponse(next_url, status_code=303)
    max_age = int((web_session.expires_at - web_session.created_at).total_seconds())
    _set_cookie(response, settings, SESSION_COOKIE, cookie_value, max_age=max_age)
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/")
    return response


@router.post("/logout")
def logout(
    request: Request, context: ContextDep, db: SessionDep, _browser: PostingBrowserDep
) -> RedirectResponse:
    sign_out(db, request.cookies.get(SESSION_COOKIE))
    db.commit()
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(
        SESSION_COOKIE, path="/", httponly=True, samesite="strict",
        secure=context.settings.web_cookie_secure,
    )  # fmt: skip
    return response
