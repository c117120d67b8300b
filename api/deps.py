"""Shared request dependencies: context, DB session, the caller, and owned toolboxes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from api.auth import authenticate, caller
from api.context import Context
from api.errors import Forbidden, NotFound
from api.models import Toolbox, User
from api.services import observe

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
        raise _not_found(toolbox_id)
    return toolbox


def _not_found(toolbox_id: str) -> NotFound:
    return NotFound(f"toolbox '{toolbox_id}' not found", code="toolbox_not_found")


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


_READABLE = select(*observe.READABLE_COLUMNS).where(Toolbox.id == bindparam("toolbox_id"))


def _readable(
    context: Context, authorization: str | None, toolbox_id: str
) -> tuple[str, observe.Readable]:
    """The caller and the columns of the toolbox it may read: one session, two indexed
    lookups (token with user, toolbox), no ORM objects."""
    with context.sessions() as session:
        who = caller(session, context.settings, authorization)
        row = session.connection().execute(_READABLE, {"toolbox_id": toolbox_id}).first()
        if row is None or not (who.is_admin or row.owner_id == who.user_id):
            raise _not_found(toolbox_id)
        session.commit()  # the token's last use, when it is due (api/auth.py)
    readable = observe.Readable(
        id=row.id,
        last_state=dict(row.last_state or {}),
        active_run_id=row.active_run_id,
        run_ended_at=row.run_ended_at,
    )
    return who.user_id, readable


async def readable_toolbox(
    request: Request,
    toolbox_id: Annotated[str, Path(max_length=64, description="Toolbox id")],
    context: ContextDep,
    _credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> observe.Readable:
    """owned_toolbox for the read routes, the console's hottest path: authentication and
    ownership in one worker-thread hop and one short session (not a session, a caller and a
    toolbox each resolved in a thread of their own), columns only. The read then waits on
    the network holding no database connection."""
    user_id, readable = await run_in_threadpool(
        _readable, context, request.headers.get("authorization"), toolbox_id
    )
    request.state.user_id = user_id
    return readable


ReadableToolboxDep = Annotated[observe.Readable, Depends(readable_toolbox)]
