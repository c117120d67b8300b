"""Who is calling: bearer API tokens (stored as SHA-256) or HS256 JWTs (Supabase shape).

A bearer value with two dots is treated as a JWT, anything else as an API token.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import timedelta

import jwt
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.errors import Unauthorized
from api.models import ApiToken, User, utcnow
from api.settings import Settings

TOKEN_PREFIX = "dtma_"
LAST_USED_RESOLUTION = timedelta(minutes=1)


def generate_api_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_api_token(session: Session, user: User) -> str:
    """Store a new token for `user` and return it; only its hash is kept."""
    token = generate_api_token()
    session.add(ApiToken(user_id=user.id, token_hash=hash_token(token)))
    return token


def _user_from_api_token(session: Session, token: str) -> User:
    digest = hash_token(token)
    row = session.scalar(select(ApiToken).where(ApiToken.token_hash == digest))
    # The lookup is by hash; compare again in constant time so timing says nothing.
    if row is None or not hmac.compare_digest(row.token_hash, digest) or row.revoked_at:
        raise Unauthorized("invalid API token")
    now = utcnow()
    # Recorded to the minute: a write per request would cost more than the request.
    if row.last_used_at is None or now - row.last_used_at > LAST_USED_RESOLUTION:
        row.last_used_at = now
    return row.user


def _user_from_jwt(session: Session, settings: Settings, token: str) -> User:
    if settings.jwt_secret is None:
        raise Unauthorized("JWT authentication is not configured (DTMA_JWT_SECRET)")
    try:
        claims = jwt.decode(
            token,
            settings.jwt_secret.get_secret_value(),
            algorithms=["HS256"],
            audience=settings.jwt_audience,
            options={"require": ["exp", "sub"], "verify_aud": settings.jwt_audience is not None},
        )
    except jwt.ExpiredSignatureError as error:
        raise Unauthorized("token expired") from error
    except jwt.PyJWTError as error:
        raise Unauthorized(f"invalid token: {error}") from error
    subject = claims["sub"]
    if not isinstance(subject, str) or not subject or len(subject) > 64:
        raise Unauthorized("invalid token: bad 'sub' claim")
    user = session.get(User, subject)
    if user is None:
        # The identity provider vouches for the subject: the first call provisions a
        # regular (non-admin) user with the same id.
        email = claims.get("email")
        name = email if isinstance(email, str) and email else subject
        if session.scalar(select(User).where(User.name == name)) is not None:
            name = subject
        user = User(id=subject, name=name[:128], is_admin=False)
        session.add(user)
        session.flush()
    return user


def authenticate(session: Session, settings: Settings, authorization: str | None) -> User:
    if not authorization:
        raise Unauthorized("missing bearer token (Authorization: Bearer <token>)")
    scheme, _, value = authorization.partition(" ")
    value = value.strip()
    if scheme.lower() != "bearer" or not value:
        raise Unauthorized("expected 'Authorization: Bearer <token>'")
    if value.count(".") == 2:
        return _user_from_jwt(session, settings, value)
    return _user_from_api_token(session, value)
