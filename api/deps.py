"""Shared request dependencies: context, DB session, the caller, and owned toolboxes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from api.auth import authenticate
from api.context import Context
from api.errors import Forbidden, NotFound
from api.models import Toolbox, User

_bearer = HTTPBearer(
    auto_error=False,
    description="An API token (`dtma-console token create`) or an HS256 JWT whose `sub` is "
    "the user id.",
)


def get_context(request: Request) -> Context:
    context: Context = request.app.state.context
    return context


ContextDep = Annotated[Context, Depends(get_context)]


def get_session(context: ContextDep) -> Iterator[Session]:
    session = context.sessions()
    try:
        yield session
    finally:
        session.close()  # anything not committed by a service is rolled back


SessionDep = Annotated[Session, Depends(get_session)]


def current_user(
    request: Request,
    context: ContextDep,
    session: SessionDep,
    _credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> User:
    user = authenticate(session, context.settings, request.headers.get("authorization"))
    session.commit()
    request.state.user_id = user.id
    return user


UserDep = Annotated[User, Depends(current_user)]


def admin_user(user: UserDep) -> User:
    if not user.is_admin:
        raise Forbidden("this operation needs an admin token")
    return user


AdminDep = Annotated[User, Depends(admin_user)]


def visible_toolbox(session: Session, user: User, toolbox_id: str) -> Toolbox:
    """The toolbox if the user may see it; someone else's toolbox is simply not found."""
    toolbox = session.get(Toolbox, toolbox_id)
    if toolbox is None or not (user.is_admin or toolbox.owner_id == user.id):
        raise NotFound(f"toolbox '{toolbox_id}' not found", code="toolbox_not_found")
    return toolbox


def owned_toolbox(
    toolbox_id: Annotated[str, Path(max_length=64, description="Toolbox id")],
    user: UserDep,
    session: SessionDep,
) -> Toolbox:
    toolbox = visible_toolbox(session, user, toolbox_id)
    # The request may now wait on the network for long (agent, SSH probe, a shared read):
    # it holds no database connection meanwhile (objects stay loaded: expire_on_commit off).
    session.commit()
    return toolbox


ToolboxDep = Annotated[Toolbox, Depends(owned_toolbox)]


def _readable(context: Context, authorization: str | None, toolbox_id: str) -> tuple[str, Toolbox]:
    """The caller and the toolbox it may read, in one session closed before returning."""
    with context.sessions() as session:
        user = authenticate(session, context.settings, authorization)
        toolbox = visible_toolbox(session, user, toolbox_id)
        session.commit()  # the token's last use, when it is due (api/auth.py)
        return user.id, toolbox


async def readable_toolbox(
    request: Request,
    toolbox_id: Annotated[str, Path(max_length=64, description="Toolbox id")],
    context: ContextDep,
    _credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Toolbox:
    """owned_toolbox for the read routes, the console's hottest path: authentication and
    ownership in one worker-thread hop and one short session (not a session, a caller and a
    toolbox each resolved in a thread of their own). The toolbox comes detached, its columns
    loaded: the read waits on the network holding no database connection."""
    user_id, toolbox = await run_in_threadpool(
        _readable, context, request.headers.get("authorization"), toolbox_id
    )
    request.state.user_id = user_id
    return toolbox


ReadableToolboxDep = Annotated[Toolbox, Depends(readable_toolbox)]
