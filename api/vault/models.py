"""Key vault tables: per-toolbox SSH keys, pinned host keys, and the master-key check."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from api.models import Base, UTCDateTime, new_id, utcnow


class ToolboxSshKey(Base):
    """One SSH key pair the console made for a toolbox.

    `pending` while a rotation installs it, `active` once proven (at most one per toolbox),
    `retired` when a rotation replaced it and `revoked` when it was removed for
    decommissioning; the private half is erased when a key stops being active.
    """

    __tablename__ = "toolbox_ssh_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    toolbox_id: Mapped[str] = mapped_column(
        ForeignKey("toolboxes.id", ondelete="CASCADE"), index=True
    )
    state: Mapped[str] = mapped_column(String(16))
    public_key: Mapped[str] = mapped_column(Text)
    fingerprint: Mapped[str] = mapped_column(String(64))
    # vault-sealed OpenSSH private key (api/secret_box); NULL once the key is not active.
    private_key_sealed: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    activated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    retired_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class ToolboxHostKey(Base):
    """A host key the console trusts for a toolbox (`pinned`), or trusted before (`replaced`)."""

    __tablename__ = "toolbox_host_keys"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    toolbox_id: Mapped[str] = mapped_column(
        ForeignKey("toolboxes.id", ondelete="CASCADE"), index=True
    )
    state: Mapped[str] = mapped_column(String(16))
    key_type: Mapped[str] = mapped_column(String(64))
    public_key: Mapped[str] = mapped_column(Text)  # base64 blob, as in known_hosts
    fingerprint: Mapped[str] = mapped_column(String(64))
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # "trust-on-first-use", or the admin who accepted the key.
    recorded_by: Mapped[str] = mapped_column(String(128))
    replaced_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class VaultCheck(Base):
    """A known value sealed with the master key when the database was first opened: a
    wrong DTMA_MASTER_KEY is refused at start-up instead of failing on first use."""

    __tablename__ = "vault_check"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sealed: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class RegistryCredential(Base):
    """The login the console uses to pull from one private registry (`host[:port]`, as in
    an image reference). The password is sealed for its row (api/secret_box) and only ever
    leaves the vault as a deploy's extra variable (no_log in the role)."""

    __tablename__ = "registry_credentials"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    host: Mapped[str] = mapped_column(String(255), unique=True)  # the registry: host[:port]
    username: Mapped[str] = mapped_column(String(128))
    password_sealed: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_by: Mapped[str] = mapped_column(String(128))
