"""/api/v1/tokens: API tokens' life cycle. Admins see every token; a user sees, creates
and revokes their own (anyone else's is not found)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from sqlalchemy import select

from api.deps import SessionDep, UserDep
from api.errors import Forbidden, InvalidInput
from api.models import User
from api.schemas.tokens import TokenCreate, TokenCreated, TokenView
from api.services import audit, tokens

router = APIRouter(prefix="/api/v1/tokens", tags=["tokens"])

TokenIdPath = Annotated[str, Path(max_length=32, description="Token id (as listed)")]


@router.get("", response_model=list[TokenView])
def list_tokens(user: UserDep, session: SessionDep) -> list[TokenView]:
    """Your tokens (every token for an admin), newest first; never the token itself."""
    return [tokens.view(row) for row in tokens.listed(session, user)]


@router.post(
    "",
    status_code=201,
    response_model=TokenCreated,
    responses={403: {"description": "Only admins create tokens for other users"}},
)
def create_token(body: TokenCreate, user: UserDep, session: SessionDep) -> TokenCreated:
    """A new token for yourself (or, for an admin, for any existing user): the answer holds
    the token once; only its hash is kept."""
    owner = user
    if body.user is not None and body.user != user.name:
        if not user.is_admin:
            raise Forbidden("only an admin creates tokens for other users")
        named = session.scalar(select(User).where(User.name == body.user))
        if named is None:
            raise InvalidInput("user", f"no user named '{body.user}'")
        owner = named
    lifetime = None
    if body.expires_in is not None:
        lifetime = tokens.parse_lifetime(body.expires_in, field="expires_in")
    parameters = {"user": owner.name, "label": body.label, "expires_in": body.expires_in}
    with audit.audited(session, user=user, action="tokens.create", parameters=parameters):
        row, secret = tokens.create(session, owner, label=body.label, lifetime=lifetime)
    session.commit()
    return TokenCreated(**tokens.view(row).model_dump(), token=secret)


@router.post("/{token_id}/revoke", response_model=TokenView)
def revoke_token(token_id: TokenIdPath, user: UserDep, session: SessionDep) -> TokenView:
    """Revoke at once: the token gets 401 `token_revoked` from now on and the web sessions
    signed in with it end. Revoking a revoked token changes nothing."""
    row = tokens.visible(session, user, token_id)
    with audit.audited(session, user=user, action="tokens.revoke", parameters={"id": row.id}):
        tokens.revoke(session, row)
    session.commit()
    return tokens.view(row)
