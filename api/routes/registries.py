"""/api/v1/registries: private registry credentials. Admins store and remove them; anyone
may list which registries have one (never the password, which is write-only)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path, Response
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from api.deps import AdminDep, ContextDep, SessionDep, UserDep
from api.schemas import role_rules as rules
from api.vault import registries
from api.vault.models import RegistryCredential

router = APIRouter(prefix="/api/v1/registries", tags=["registries"])

RegistryPath = Annotated[
    str, Path(max_length=255, description="host[:port], e.g. registry.example.com:5000")
]


class RegistryLogin(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str = Field(pattern=rules.REGISTRY_USERNAME)
    password: SecretStr = Field(
        min_length=1, max_length=registries.PASSWORD_MAX_LENGTH, description="Write-only"
    )


class RegistryOut(BaseModel):
    registry: str
    username: str
    created_at: datetime
    updated_at: datetime
    updated_by: str

    @classmethod
    def of(cls, row: RegistryCredential) -> RegistryOut:
        return cls(registry=row.host, username=row.username, created_at=row.created_at,
                   updated_at=row.updated_at, updated_by=row.updated_by)  # fmt: skip


@router.get("", response_model=list[RegistryOut])
def list_registries(_user: UserDep, session: SessionDep) -> list[RegistryOut]:
    """The registries the console can log in to (deploys of their images use the login)."""
    return [RegistryOut.of(row) for row in registries.list_all(session)]


@router.put("/{registry}", response_model=RegistryOut)
def put_registry(
    registry: RegistryPath,
    body: RegistryLogin,
    user: AdminDep,
    session: SessionDep,
    context: ContextDep,
) -> RegistryOut:
    """Store or replace the login for `registry`; the password is sealed in the vault and
    never returned."""
    registries.checked_registry(registry)
    password = body.password.get_secret_value()
    row = registries.put(session, context.secrets, user, registry, body.username, password)
    return RegistryOut.of(row)


@router.delete("/{registry}", status_code=204, responses={404: {"description": "No login"}})
def delete_registry(registry: RegistryPath, user: AdminDep, session: SessionDep) -> Response:
    registries.delete(session, user, registry)
    return Response(status_code=204)
