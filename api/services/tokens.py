"""API tokens' life cycle: create (labelled, optionally expiring), list, revoke.

The same rules for `dtma-console token ...` and /api/v1/tokens: an admin sees and revokes
every token, a user only their own (someone else's token is simply not found). Revoking
also ends the web sessions signed in with the token.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session, joinedload

from api.auth import issue_api_token, refusal
from api.errors import InvalidInput, NotFound
from api.models import ApiToken, User, utcnow
from api.schemas.tokens import TokenState, TokenView
from api.web.models import WebSession

# `30d`, `12h`, `90m`, `2w`: how long a new token lives.
DURATION = re.compile(r"^([1-9][0-9]{0,5})([mhdw])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
MAX_LIFETIME = timedelta(days=3660)
LABEL = re.compile(r"^[^\x00-\x1f\x7f]{1,128}$")


def parse_lifetime(text: str, *, field: str = "expires") -> timedelta:
    """A lifetime such as `30d` (minutes m, hours h, days d, weeks w)."""
    found = DURATION.match(text.strip())
    if found is None:
        raise InvalidInput(field, f"'{text}' is not a lifetime such as 30d, 12h, 90m or 2w")
    lifetime = timedelta(**{_UNITS[found.group(2)]: int(found.group(1))})
    if lifetime > MAX_LIFETIME:
        raise InvalidInput(field, "a token lives at most 3660 days")
    return lifetime


def check_label(label: str | None) -> str | None:
    if label is None:
        return None
    if not LABEL.match(label):
        raise InvalidInput("label", "a label is 1-128 characters without control characters")
    return label


def create(
    session: Session, user: User, *, label: str | None, lifetime: timedelta | None
) -> tuple[ApiToken, str]:
    """A new token for `user`; returns the row and the token in clear (shown once)."""
    expires_at = utcnow() + lifetime if lifetime is not None else None
    return issue_api_token(session, user, label=check_label(label), expires_at=expires_at)


def listed(session: Session, caller: User | None) -> list[ApiToken]:
    """Every token for an admin or the command line (caller None), else the caller's own;
    newest first."""
    query = select(ApiToken).options(joinedload(ApiToken.user))
    if caller is not None and not caller.is_admin:
        query = query.where(ApiToken.user_id == caller.id)
    return list(session.scalars(query.order_by(ApiToken.created_at.desc(), ApiToken.id)))


def visible(session: Session, caller: User | None, token_id: str) -> ApiToken:
    row = session.get(ApiToken, token_id) if len(token_id) <= 32 else None
    if row is None or (caller is not None and not caller.is_admin and row.user_id != caller.id):
        raise NotFound(f"API token '{token_id}' not found", code="token_not_found")
    return row


def revoke(session: Session, row: ApiToken) -> ApiToken:
    """Revoke at once (a second revoke keeps the first time) and end its web sessions.
    The caller commits."""
    if row.revoked_at is None:
        row.revoked_at = utcnow()
    session.execute(delete(WebSession).where(WebSession.api_token_id == row.id))
    return row


def state(row: ApiToken, now: datetime | None = None) -> TokenState:
    refused = refusal(row, now or utcnow())
    if refused is None:
        return "active"
    return "revoked" if refused.code == "token_revoked" else "expired"


def view(row: ApiToken) -> TokenView:
    return TokenView(
        id=row.id,
        user=row.user.name,
        user_id=row.user_id,
        label=row.label,
        admin=row.user.is_admin,
        created_at=row.created_at,
        last_used_at=row.last_used_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
        state=state(row),
    )
