"""Browser sessions: sign in with an API token (or a JWT), resolve the cookie, sign out.

The cookie holds a random value; the database keeps only its SHA-256. The CSRF token of a
session is derived from the cookie value with HMAC, so a page can carry it while the
cookie itself stays HttpOnly and nothing else needs storing.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import UTC, datetime, timedelta

import jwt
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from api.auth import authenticate, hash_token, refusal
from api.models import ApiToken, utcnow
from api.settings import Settings
from api.web.models import WebSession

SESSION_COOKIE = "dtma_session"
# Before a session exists, the login form is protected by a double-submit cookie.
LOGIN_CSRF_COOKIE = "dtma_login_csrf"


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def csrf_token_for(cookie_value: str) -> str:
    return hmac.new(cookie_value.encode(), b"dtma-web-csrf", hashlib.sha256).hexdigest()


def same_secret(expected: str, given: str | None) -> bool:
    return bool(given) and hmac.compare_digest(expected.encode(), (given or "").encode())


def _jwt_expiry(token: str) -> datetime | None:
    # authenticate() has already verified the signature and `exp`; this only reads it.
    claims = jwt.decode(token, options={"verify_signature": False})
    return datetime.fromtimestamp(int(claims["exp"]), UTC)


def sign_in(db: Session, settings: Settings, token: str) -> tuple[WebSession, str]:
    """A new session for whoever `token` authenticates (raises Unauthorized otherwise).

    Returns the row and the cookie value; the caller commits."""
    token = token.strip()
    user = authenticate(db, settings, f"Bearer {token}")
    now = utcnow()
    expires_at = now + timedelta(hours=settings.web_session_hours)
    api_token_id = None
    if token.count(".") == 2:
        jwt_expiry = _jwt_expiry(token)
        if jwt_expiry is not None:
            expires_at = min(expires_at, jwt_expiry)
    else:
        api_token = db.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(token)))
        if api_token is not None:
            api_token_id = api_token.id
            if api_token.expires_at is not None:
                expires_at = min(expires_at, api_token.expires_at)
    cookie_value = new_secret()
    row = WebSession(
        token_hash=hash_token(cookie_value),
        user_id=user.id,
        api_token_id=api_token_id,
        created_at=now,
        expires_at=expires_at,
    )
    db.add(row)
    # Sign-ins are rare: a good moment to forget sessions that ran out.
    db.execute(delete(WebSession).where(WebSession.expires_at < now))
    return row, cookie_value


def resolve(db: Session, cookie_value: str | None) -> WebSession | None:
    """The live session behind a cookie value, or None (unknown, expired, its token revoked
    or expired)."""
    if not cookie_value or len(cookie_value) > 128:
        return None
    row = db.get(WebSession, hash_token(cookie_value))
    if row is None or row.expires_at <= utcnow():
        return None
    if row.api_token is not None and refusal(row.api_token, utcnow()) is not None:
        return None  # its token was revoked or ran out: so did the session
    return row


def sign_out(db: Session, cookie_value: str | None) -> None:
    if cookie_value:
        db.execute(delete(WebSession).where(WebSession.token_hash == hash_token(cookie_value)))
