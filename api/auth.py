"""Who is calling: bearer API tokens (stored as SHA-256) or HS256 JWTs (api/auth_jwt.py).

A bearer value with two dots is treated as a JWT, anything else as an API token. A revoked
or expired API token is told apart (`token_revoked`, `token_expired`) from an unknown one
(`unauthorized`), so a script's owner knows to make a new one rather than to look for a typo.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, joinedload

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


def refusal(row: ApiToken, now: datetime) -> Unauthorized | None:
    """Why a stored token no longer lets anyone in, or None while it is live."""
    if row.revoked_at is not None:
        return Unauthorized(
            f"API token revoked at {row.revoked_at.isoformat()}", code="token_revoked"
        )
    if row.expires_at is not None and row.expires_at <= now:
        return Unauthorized(
            f"API token expired at {row.expires_at.isoformat()}", code="token_expired"
        )
    return None


def _user_from_api_token(session: Session, token: str) -> User:
    digest = hash_token(token)
    # One indexed query for the token and its user (not a second one for `row.user`).
    row = session.scalar(
        select(ApiToken).options(joinedload(ApiToken.user)).where(ApiToken.token_hash == digest)
    )
    # The lookup is by hash; compare again in constant time so timing says nothing.
    if row is None or not hmac.compare_digest(row.token_hash, digest):
        raise Unauthorized("invalid API token")
    now = utcnow()
    refused = refusal(row, now)
    if refused is not None:
        raise refused
    # Recorded to the minute: a write per request would cost more than the request.
    if row.last_used_at is None or now - row.last_used_at > LAST_USED_RESOLUTION:
        row.last_used_at = now
    return row.user


def authenticate(session: Session, settings: Settings, authorization: str | None) -> User:
    if not authorization:
        raise Unauthorized("missing bearer token (Authorization: Bearer <token>)")
    scheme, _, value = authorization.partition(" ")
    value = value.strip()
    if scheme.lower() != "bearer" or not value:
        raise Unauthorized("expected 'Authorization: Bearer <token>'")
    if value.count(".") == 2:
        return user_from_jwt(session, settings, value)
    return _user_from_api_token(session, value)
