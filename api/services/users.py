"""Users and their API tokens."""

from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.auth import issue_api_token
from api.errors import InvalidInput
from api.models import User

USER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$")


def create_token(session: Session, name: str, *, admin: bool) -> tuple[User, str]:
    """A new API token for user `name` (created when missing; `admin` grants admin).

    Returns the token in clear: the only time it exists outside the caller's hands.
    """
    if not USER_NAME.match(name):
        raise InvalidInput("user", "user names are 1-128 letters, digits, '.', '_', '@' or '-'")
    user = session.scalar(select(User).where(User.name == name))
    if user is None:
        user = User(name=name, is_admin=admin)
        session.add(user)
        session.flush()
    elif admin:
        user.is_admin = True
    return user, issue_api_token(session, user)
