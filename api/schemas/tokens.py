"""API token shapes: never the secret, except once in TokenCreated."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

TokenState = Literal["active", "expired", "revoked"]


class TokenView(BaseModel):
    """What `token list --json` prints and /api/v1/tokens answers (no secret, no hash)."""

    id: str
    user: str = Field(description="The owner's user name")
    user_id: str = Field(description="The owner's user id (what `dtma-owner:` tags name)")
    label: str | None
    admin: bool = Field(description="Whether the owner is an admin")
    created_at: datetime
    last_used_at: datetime | None = Field(description="To the minute")
    expires_at: datetime | None
    revoked_at: datetime | None
    state: TokenState


class TokenCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user: str | None = Field(
        default=None,
        max_length=128,
        description="Whose token (admins only; an existing user's name). Default: yourself",
    )
    label: str | None = Field(default=None, max_length=128)
    expires_in: str | None = Field(
        default=None, max_length=16, description="Lifetime such as 30d, 12h, 90m, 2w; default never"
    )


class TokenCreated(TokenView):
    token: str = Field(description="The token itself: shown this once, only its hash is kept")
