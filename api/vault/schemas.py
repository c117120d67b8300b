"""Key vault shapes. Public halves and fingerprints only: no shape here can carry a
private key."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class SshKeyOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    fingerprint: str = Field(description="SHA256 fingerprint, as `ssh-keygen -l` prints it")
    public_key: str
    state: str = Field(description="pending | active | retired | revoked")
    created_at: datetime
    activated_at: datetime | None
    retired_at: datetime | None


class SshAccessOut(BaseModel):
    """How the console reaches a toolbox over SSH."""

    toolbox_id: str
    source: Literal["toolbox", "bootstrap"] = Field(
        description="`toolbox`: its own console-held key; `bootstrap`: not yet, the operator "
        "key the droplet was created with"
    )
    fingerprint: str | None = Field(description="The active key's fingerprint")
    created_at: datetime | None = Field(description="When the active key was made")
    rotated_at: datetime | None = Field(
        description="When the active key replaced a previous one (null if it is the first)"
    )
    keys: list[SshKeyOut] = Field(description="Every key of the toolbox, newest first")


class HostKeyOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    key_type: str
    fingerprint: str
    public_key: str
    state: str = Field(description="pinned | replaced")
    recorded_at: datetime
    recorded_by: str = Field(description="trust-on-first-use, or the admin who accepted it")
    replaced_at: datetime | None


class OfferedHostKey(BaseModel):
    key_type: str
    fingerprint: str
    pinned: bool = Field(description="This key is one of the pinned keys")


class HostKeysOut(BaseModel):
    toolbox_id: str
    pinned: list[HostKeyOut]
    history: list[HostKeyOut] = Field(description="Keys trusted before, newest first")
    offered: list[OfferedHostKey] | None = Field(
        default=None, description="What the droplet offers now (with `?scan=true`)"
    )
    matches: bool | None = Field(
        default=None, description="With `?scan=true`: the droplet offers a pinned key"
    )


class AcceptHostKey(BaseModel):
    model_config = ConfigDict(extra="forbid")

    fingerprint: str = Field(
        pattern=r"^SHA256:[A-Za-z0-9+/]{43}$",
        description="The fingerprint of the new host key, as verified out of band (for "
        "example on the droplet's console: `ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub`)",
    )


class RunStep(BaseModel):
    run_id: str
    action: str
    status: str
    success: bool
    message: str
    error: str | None
    url: str


class KeyOperationOut(BaseModel):
    """The outcome of a bootstrap, rotation or revocation, with the runs it took."""

    toolbox_id: str
    operation: str = Field(description="ssh_key.bootstrap | ssh_key.rotate | ssh_key.revoke")
    success: bool
    message: str
    error: str | None
    fingerprint: str | None = Field(description="The key the operation was about")
    previous_fingerprint: str | None
    active_fingerprint: str | None = Field(description="The active key afterwards")
    runs: list[RunStep]
