"""Users and their API tokens."""

from __future__ import annotations

import re
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.errors import InvalidInput
from api.models import User
from api.services import tokens

USER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$")


def named_user(session: Session, name: str, *, admin: bool) -> User:
    """The local user `name`, created when missing; `admin` grants admin."""
    if not USER_NAME.match(name):
        raise InvalidInput("user", "user names are 1-128 letters, digits, '.', '_', '@' or '-'")
    user = session.scalar(select(User).where(User.name == name))
    if user is None:
        user = User(name=name, is_admin=admin)
        session.add(user)
        session.flush()
    elif admin:
        user.is_admin = True
    return user


def create_token(
    session: Session,
    name: str,
    *,
    admin: bool,
    label: str | None = None,
    lifetime: timedelta | None = None,
) -> tuple[User, str]:
    """A new API token for user `name` (created when missing; `admin` grants admin).

    Returns the token in clear: the only time it exists outside the caller's hands.
    """
    user = named_user(session, name, admin=admin)
    _, token = tokens.create(session, user, label=label, lifetime=lifetime)
    return user, token
