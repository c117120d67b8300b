"""Private registry credentials: stored per registry with the password sealed for its row,
listed without it, and handed to a deploy whose image comes from that registry (as the
role's `tool_instance_registry_auth`, which the role uses with no_log)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.errors import InvalidInput, NotFound
from api.models import User, utcnow
from api.schemas import role_rules as rules
from api.secret_box import SecretBox
from api.services import audit
from api.vault.models import RegistryCredential

_REGISTRY = re.compile(rules.REGISTRY)
_USERNAME = re.compile(rules.REGISTRY_USERNAME)
PASSWORD_MAX_LENGTH = 4096


def registry_of(image: str) -> str | None:
    """The registry an image reference names (Docker's rule: a first path component with a
    '.' or ':', or `localhost`); None for Docker Hub images."""
    first, slash, _ = image.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        return first
    return None


def checked_registry(registry: str) -> str:
    if _REGISTRY.fullmatch(registry) is None:
        raise InvalidInput("registry", "registry must be host[:port], e.g. registry.example.com")
    return registry


@dataclass(frozen=True)
class Credentials:
    registry: str
    username: str

    @classmethod
    def checked(cls, registry: str, username: str, password: str) -> Credentials:
        checked_registry(registry)
        if _USERNAME.fullmatch(username) is None:
            raise InvalidInput("username", f"username must match {rules.REGISTRY_USERNAME}")
        if not password or len(password) > PASSWORD_MAX_LENGTH:
            raise InvalidInput("password", f"password must be 1-{PASSWORD_MAX_LENGTH} characters")
        return cls(registry, username)


def list_all(session: Session) -> list[RegistryCredential]:
    return list(session.scalars(select(RegistryCredential).order_by(RegistryCredential.host)))


def put(
    session: Session, secrets: SecretBox, user: User, registry: str, username: str, password: str
) -> RegistryCredential:
    """Store (or replace) the registry's login; audited without the password; committed."""
    Credentials.checked(registry, username, password)
    params = {"registry": registry, "username": username}
    with audit.audited(session, user=user, action="registry.put", parameters=params):
        row = session.scalar(select(RegistryCredential).where(RegistryCredential.host == registry))
        if row is None:
            row = RegistryCredential(host=registry)
            session.add(row)
        row.username = username
        row.updated_at = utcnow()
        row.updated_by = user.name
        secrets.seal_into(row, RegistryCredential.password_sealed, password)
    session.commit()
    return row


def delete(session: Session, user: User, registry: str) -> None:
    with audit.audited(
        session, user=user, action="registry.delete", parameters={"registry": registry}
    ):
        row = session.scalar(select(RegistryCredential).where(RegistryCredential.host == registry))
        if row is None:
            raise NotFound(f"no credentials for registry '{registry}'", code="registry_not_found")
        session.delete(row)
    session.commit()


def login_for(session: Session, secrets: SecretBox, image: str) -> dict[str, Any] | None:
    """The role's `tool_instance_registry_auth` for pulling `image`: the stored login of its
    registry, unsealed; None when the image's registry has none."""
    registry = registry_of(image)
    if registry is None:
        return None
    row = session.scalar(select(RegistryCredential).where(RegistryCredential.host == registry))
    if row is None:
        return None
    password = secrets.unseal_from(row, RegistryCredential.password_sealed)
    return {"registry": row.host, "username": row.username, "password": password}
