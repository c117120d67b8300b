"""HS256 JWTs (Supabase shape) and the external identities they name.

A JWT is accepted only with the configured `iss` and `aud` (both required, DTMA_JWT_ISSUER
and DTMA_JWT_AUDIENCE) and an `exp`. Its (issuer, subject) is an external identity, stored
apart (ExternalIdentity) and mapped to a console user of its own, made at the first call: a
regular user with a fresh id and a name no local user can have (`ext:` + e-mail or
subject; local names cannot hold ':'), so no `sub` can ever land on a local or admin user.
"""

from __future__ import annotations

import hashlib

import jwt
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from api.errors import Unauthorized
from api.models import ExternalIdentity, User
from api.settings import Settings

EXTERNAL_NAME_PREFIX = "ext:"
SUBJECT_MAX = 255


def _claims(settings: Settings, token: str) -> dict[str, object]:
    if settings.jwt_secret is None or not settings.jwt_issuer or not settings.jwt_audience:
        raise Unauthorized("JWT authentication is not configured (DTMA_JWT_SECRET)")
    try:
        claims: dict[str, object] = jwt.decode(
            token,
            settings.jwt_secret.get_secret_value(),
            algorithms=["HS256"],
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
            options={"require": ["exp", "sub", "iss", "aud"]},
        )
    except jwt.ExpiredSignatureError as error:
        raise Unauthorized("token expired", code="token_expired") from error
    except jwt.PyJWTError as error:
        raise Unauthorized(f"invalid token: {error}") from error
    return claims


def _external_name(session: Session, claims: dict[str, object], subject: str) -> str:
    email = claims.get("email")
    wanted = email if isinstance(email, str) and email else subject
    name = (EXTERNAL_NAME_PREFIX + wanted)[:128]
    if session.scalar(select(User.id).where(User.name == name)) is None:
        return name
    # Two issuers vouching for the same e-mail: the second is told apart by a digest.
    digest = hashlib.sha256(f"{claims['iss']}\n{subject}".encode()).hexdigest()[:12]
    return f"{name[:115]}#{digest}"


def user_from_jwt(session: Session, settings: Settings, token: str) -> User:
    claims = _claims(settings, token)
    subject = claims["sub"]
    if not isinstance(subject, str) or not subject or len(subject) > SUBJECT_MAX:
        raise Unauthorized("invalid token: bad 'sub' claim")
    issuer = str(claims["iss"])
    found = session.scalar(
        select(ExternalIdentity).where(
            ExternalIdentity.issuer == issuer, ExternalIdentity.subject == subject
        )
    )
    if found is not None:
        return found.user
    # First call: a regular user of its own (never an existing one, never an admin).
    user = User(name=_external_name(session, claims, subject), is_admin=False)
    try:
        with session.begin_nested():
            session.add(user)
            session.flush()
            session.add(ExternalIdentity(issuer=issuer, subject=subject, user_id=user.id))
            session.flush()
    except IntegrityError:
        # Another request made it first: use that one.
        found = session.scalar(
            select(ExternalIdentity).where(
                ExternalIdentity.issuer == issuer, ExternalIdentity.subject == subject
            )
        )
        if found is None:
            raise Unauthorized("could not record the identity; try again") from None
        return found.user
    return user
