"""Browser sessions of the web console (storage only)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from api.models import ApiToken, Base, User, UTCDateTime, utcnow


class WebSession(Base):
    """A signed-in browser. Only the SHA-256 of the cookie value is kept, so a database
    leak does not hand out sessions; logout deletes the row."""

    __tablename__ = "web_sessions"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    # The API token used to sign in: revoking it ends the session too. None for a JWT login.
    api_token_id: Mapped[str | None] = mapped_column(
        ForeignKey("api_tokens.id", ondelete="CASCADE")
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)

    user: Mapped[User] = relationship()
    api_token: Mapped[ApiToken | None] = relationship()
