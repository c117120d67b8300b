"""What admins and owners may see of a toolbox's keys: metadata, never a private key."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.models import Toolbox
from api.vault import hostkeys, keystore
from api.vault.models import ToolboxHostKey
from api.vault.rotation import KeyOutcome
from api.vault.schemas import (
    HostKeyOut,
    HostKeysOut,
    KeyOperationOut,
    OfferedHostKey,
    RunStep,
    SshAccessOut,
    SshKeyOut,
)


def ssh_access(session: Session, toolbox: Toolbox) -> SshAccessOut:
    keys = keystore.history(session, toolbox.id)
    active = next((k for k in keys if k.state == "active"), None)
    replaced_one = any(k.state in ("retired", "revoked") for k in keys)
    return SshAccessOut(
        toolbox_id=toolbox.id,
        source="toolbox" if active else "bootstrap",
        fingerprint=active.fingerprint if active else None,
        created_at=active.created_at if active else None,
        rotated_at=active.activated_at if active and replaced_one else None,
        keys=[SshKeyOut.model_validate(k) for k in keys],
    )


def host_keys(
    session: Session, toolbox: Toolbox, offered: list[hostkeys.HostKey] | None
) -> HostKeysOut:
    rows = list(
        session.scalars(
            select(ToolboxHostKey)
            .where(ToolboxHostKey.toolbox_id == toolbox.id)
            .order_by(ToolboxHostKey.recorded_at.desc(), ToolboxHostKey.key_type)
        )
    )
    pinned = [HostKeyOut.model_validate(r) for r in rows if r.state == "pinned"]
    answer = HostKeysOut(
        toolbox_id=toolbox.id,
        pinned=pinned,
        history=[HostKeyOut.model_validate(r) for r in rows if r.state != "pinned"],
    )
    if offered is not None:
        pinned_prints = {k.fingerprint for k in pinned}
        answer.offered = [
            OfferedHostKey(
                key_type=k.key_type,
                fingerprint=k.fingerprint,
                pinned=k.fingerprint in pinned_prints,
            )
            for k in offered
        ]
        answer.matches = any(k.pinned for k in answer.offered)
    return answer


def key_operation(outcome: KeyOutcome) -> KeyOperationOut:
    return KeyOperationOut(
        toolbox_id=outcome.toolbox_id,
        operation=outcome.operation,
        success=outcome.success,
        message=outcome.message,
        error=outcome.error,
        fingerprint=outcome.fingerprint,
        previous_fingerprint=outcome.previous_fingerprint,
        active_fingerprint=outcome.active_fingerprint,
        runs=[
            RunStep(
                run_id=r.run_id,
                action=r.action,
                status=r.status,
                success=r.success,
                message=r.message,
                error=r.error,
                url=r.url,
            )
            for r in outcome.runs
        ],
    )
