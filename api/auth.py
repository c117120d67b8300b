"""Who is calling: bearer API tokens (stored as SHA-256) or HS256 JWTs (api/auth_jwt.py).

A bearer value with two dots is treated as a JWT, anything else as an API token. A revoked
or expired API token is told apart (`token_revoked`, `token_expired`) from an unknown one
(`unauthorized`), so a script's owner knows to make a new one rather than to look for a typo.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from api.auth_jwt import user_from_jwt
from api.errors import Unauthorized
from api.models import ApiToken, User, utcnow
from api.settings import Settings

TOKEN_PREFIX = "dtma_"
LAST_USED_RESOLUTION = timedelta(minutes=1)


def generate_api_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_api_token(
    session: Session,
    user: User,
    *,
    label: str | None = None,
    expires_at: datetime | None = None,
) -> tuple[ApiToken, str]:
    """Store a new token for `user`; returns its row and the token, of which only the hash
    is kept. The caller commits."""
    token = generate_api_token()
    row = ApiToken(
        user_id=user.id, token_hash=hash_token(token), label=label, expires_at=expires_at
    )
    session.add(row)
    session.flush()
    return row, token


@dataclass(frozen=True)
class Caller:
    """Who is calling, as a read needs it: no ORM object, no lazy load."""

    user_id: str
    is_admin: bool


class _Lifetime(Protocol):
    @property
    def revoked_at(self) -> datetime | None: ...
    @property
    def expires_at(self) -> datetime | None: ...


def refusal(row: _Lifetime, now: datetime) -> Unauthorized | None:
    """Why a stored token (a row, or the columns of one) no longer lets anyone in, or None
    while it is live."""
    if row.revoked_at is not None:
        return Unauthorized(
            f"API token revoked at {row.revoked_at.isoformat()}", code="token_revoked"
        )
    if row.expires_at is not None and row.expires_at <= now:
        return Unauthorized(
            f"API token expired at {row.expires_at.isoformat()}", code="token_expired"
        )
    return None


# The token and its user in one indexed lookup (unique token_hash), columns only: checked
# on every request, so no ORM objects are built for it.
# Built once (its cache key memoised) and run on the session's connection: the statement
# is not rebuilt and no ORM result machinery runs per request.
_TOKEN_HOLDER = (
    select(
        ApiToken.id,
        ApiToken.token_hash,
        ApiToken.revoked_at,
        ApiToken.expires_at,
        ApiToken.last_used_at,
        User.id.label("user_id"),
        User.is_admin,
    )
    .join(User, User.id == ApiToken.user_id)
    .where(ApiToken.token_hash == bindparam("digest"))
)
_TOKEN_USED = (
    update(ApiToken)
    .where(ApiToken.id == bindparam("token_id"))
    .values(last_used_at=bindparam("now"))
)


def _api_token_caller(session: Session, token: str) -> Caller:
    digest = hash_token(token)
    row = session.connection().execute(_TOKEN_HOLDER, {"digest": digest}).first()
    # The lookup is by hash; compare again in constant time so timing says nothing.
    if row is None or not hmac.compare_digest(row.token_hash, digest):
        raise Unauthorized("invalid API token")
    now = utcnow()
    refused = refusal(row, now)
    if refused is not None:
        raise refused
    # Recorded to the minute: a write per request would cost more than the request.
    if row.last_used_at is None or now - row.last_used_at > LAST_USED_RESOLUTION:
        session.connection().execute(_TOKEN_USED, {"token_id": row.id, "now": now})
    return Caller(row.user_id, row.is_admin)


def _bearer_value(authorization: str | None) -> str:
    if not authorization:
        raise Unauthorized("missing bearer token (Authorization: Bearer <token>)")
    scheme, _, value = authorization.partition(" ")
    value = value.strip()
    if scheme.lower() != "bearer" or not value:
        raise Unauthorized("expected 'Authorization: Bearer <token>'")
    return value


def _is_jwt(value: str) -> bool:
    return value.count(".") == 2


def caller(session: Session, settings: Settings, authorization: str | None) -> Caller:
    """Who `authorization` lets in, checked against the database now (a revoked or expired
    token is refused at once, in every process: nothing is cached). The caller commits."""
    value = _bearer_value(authorization)
    if _is_jwt(value):
        user = user_from_jwt(session, settings, value)
        return Caller(user.id, user.is_admin)
    return _api_token_caller(session, value)


def authenticate(session: Session, settings: Settings, authorization: str | None) -> User:
    """`caller`, as the user's row (for routes that act as the user)."""
    value = _bearer_value(authorization)
    if _is_jwt(value):
        return user_from_jwt(session, settings, value)
    found = _api_token_caller(session, value)
    user = session.get(User, found.user_id)
    if user is None:  # deleted between the two reads
        raise Unauthorized("invalid API token")
    return user
