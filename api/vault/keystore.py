"""Per-toolbox SSH keys in the database: the active one, pending ones, and their history."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.models import utcnow
from api.secret_box import SecretBox
from api.vault.models import ToolboxSshKey
from api.vault.sshkeys import KeyPair


def active_key(session: Session, toolbox_id: str) -> ToolboxSshKey | None:
    return session.scalar(
        select(ToolboxSshKey).where(
            ToolboxSshKey.toolbox_id == toolbox_id, ToolboxSshKey.state == "active"
        )
    )


def pending(session: Session, toolbox_id: str) -> list[ToolboxSshKey]:
    """Keys of operations that never finished (the console stopped in the middle)."""
    return list(
        session.scalars(
            select(ToolboxSshKey).where(
                ToolboxSshKey.toolbox_id == toolbox_id, ToolboxSshKey.state == "pending"
            )
        )
    )


def history(session: Session, toolbox_id: str) -> list[ToolboxSshKey]:
    """Every key of the toolbox, newest first."""
    return list(
        session.scalars(
            select(ToolboxSshKey)
            .where(ToolboxSshKey.toolbox_id == toolbox_id)
            .order_by(ToolboxSshKey.created_at.desc())
        )
    )


def add_pending(
    session: Session, secrets: SecretBox, toolbox_id: str, pair: KeyPair
) -> ToolboxSshKey:
    key = ToolboxSshKey(
        toolbox_id=toolbox_id,
        state="pending",
        public_key=pair.public_openssh,
        fingerprint=pair.fingerprint,
        created_at=utcnow(),
    )
    secrets.seal_into(key, ToolboxSshKey.private_key_sealed, pair.private_openssh)
    session.add(key)
    session.flush()
    return key


def private_key(secrets: SecretBox, key: ToolboxSshKey) -> str:
    if key.private_key_sealed is None:
        raise ValueError(f"key {key.fingerprint} has no private key any more ({key.state})")
    return secrets.unseal_from(key, ToolboxSshKey.private_key_sealed)


def activate(session: Session, key: ToolboxSshKey) -> ToolboxSshKey | None:
    """Make `key` the toolbox's active key; the previous one is retired and its private
    half erased. Returns the retired key."""
    now = utcnow()
    previous = active_key(session, key.toolbox_id)
    if previous is not None:
        previous.state, previous.retired_at, previous.private_key_sealed = "retired", now, None
    key.state, key.activated_at = "active", now
    session.flush()
    return previous


def revoke(session: Session, key: ToolboxSshKey) -> None:
    key.state, key.retired_at, key.private_key_sealed = "revoked", utcnow(), None
    session.flush()
