"""Who is at the browser: the session cookie resolved to a user, and CSRF checks on posts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from api.deps import SessionDep
from api.errors import Forbidden
from api.models import User
from api.web.sessions import SESSION_COOKIE, csrf_token_for, resolve, same_secret

CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"


class LoginRequired(Exception):
    """No live session: pages redirect to the login form, htmx requests are told to."""


@dataclass(frozen=True)
class Browser:
    user: User
    csrf_token: str


def signed_in(request: Request, db: SessionDep) -> Browser:
    cookie_value = request.cookies.get(SESSION_COOKIE)
    row = resolve(db, cookie_value)
    if row is None or cookie_value is None:
        raise LoginRequired
    request.state.user_id = row.user_id
    return Browser(user=row.user, csrf_token=csrf_token_for(cookie_value))


BrowserDep = Annotated[Browser, Depends(signed_in)]


async def submitted_token(request: Request) -> str | None:
    """The CSRF token a post carries: the htmx header, or the hidden field of a form."""
    given = request.headers.get(CSRF_HEADER)
    if given is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        value = (await request.form()).get(CSRF_FIELD)
        given = value if isinstance(value, str) else None
    return given


async def csrf_checked(request: Request, browser: BrowserDep) -> Browser:
    if not same_secret(browser.csrf_token, await submitted_token(request)):
        raise Forbidden(
            "missing or wrong CSRF token: reload the page and try again", code="csrf_failed"
        )
    return browser


# For every state-changing route: a signed-in browser whose post carries its CSRF token.
PostingBrowserDep = Annotated[Browser, Depends(csrf_checked)]
