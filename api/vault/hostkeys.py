"""Pinned host keys: trust on first use, strict afterwards, replaced only by an admin.

The first contact with a droplet records every host key it offers (ssh-keyscan). Runs then
get exactly those keys as known_hosts content, with strict checking (runner/connection.py),
so a substituted machine is refused. An admin replaces the pins by accepting one specific
fingerprint the droplet offers now; only that key is pinned, so a second, forged key of
another type offered next to it is never trusted.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.errors import Conflict, InvalidInput, UpstreamError
from api.models import Toolbox, User, utcnow
from api.services import audit
from api.vault.models import ToolboxHostKey
from api.vault.sshkeys import PUBLIC_KEY, fingerprint

SCAN_TYPES = "ed25519,ecdsa,rsa"
FIRST_USE = "trust-on-first-use"


@dataclass(frozen=True)
class HostKey:
    key_type: str
    public_key: str  # base64 blob

    @property
    def fingerprint(self) -> str:
        return fingerprint(f"{self.key_type} {self.public_key}")


class HostKeyScanError(UpstreamError):
    code = "host_key_scan_failed"


def scan(address: str, timeout: int) -> list[HostKey]:
    """The host keys `address` offers on port 22 now; HostKeyScanError when none."""
    try:
        done = subprocess.run(
            ["ssh-keyscan", "-T", str(timeout), "-t", SCAN_TYPES, "--", address],
            capture_output=True,
            text=True,
            timeout=timeout * 3 + 5,
            check=False,
        )
    except subprocess.TimeoutExpired as error:
        raise HostKeyScanError(f"ssh-keyscan of {address} did not finish") from error
    keys: list[HostKey] = []
    for line in done.stdout.splitlines():
        host, _, key = line.partition(" ")
        match = PUBLIC_KEY.match(key.strip())
        if host == address and match is not None:
            keys.append(HostKey(match["type"], match["blob"]))
    if not keys:
        detail = " ".join(
            line for line in done.stderr.splitlines() if line and not line.startswith("#")
        )
        raise HostKeyScanError(
            f"{address} offered no SSH host key within {timeout}s"
            + (f": {detail}" if detail else " (is the droplet up and sshd listening?)")
        )
    return sorted(set(keys), key=lambda k: k.key_type)


def pinned(session: Session, toolbox_id: str) -> list[ToolboxHostKey]:
    query = (
        select(ToolboxHostKey)
        .where(ToolboxHostKey.toolbox_id == toolbox_id, ToolboxHostKey.state == "pinned")
        .order_by(ToolboxHostKey.key_type)
    )
    return list(session.scalars(query))


def known_hosts(address: str, keys: list[ToolboxHostKey]) -> str | None:
    """known_hosts content pinning `keys` for `address`, or None when nothing is pinned."""
    if not keys:
        return None
    return "".join(f"{address} {k.key_type} {k.public_key}\n" for k in keys)


def _store(session: Session, toolbox: Toolbox, keys: list[HostKey], by: str) -> None:
    now = utcnow()
    for old in pinned(session, toolbox.id):
        old.state, old.replaced_at = "replaced", now
    for key in keys:
        session.add(
            ToolboxHostKey(
                toolbox_id=toolbox.id,
                state="pinned",
                key_type=key.key_type,
                public_key=key.public_key,
                fingerprint=key.fingerprint,
                recorded_at=now,
                recorded_by=by,
            )
        )
    session.flush()


def _address(toolbox: Toolbox) -> str:
    if not toolbox.address:
        raise InvalidInput("toolbox", f"{toolbox.name} has no public IPv4 address to reach")
    return toolbox.address


def pin_on_first_contact(session: Session, toolbox: Toolbox, timeout: int) -> bool:
    """Record the host keys of a toolbox that has none pinned yet. True if it pinned now.
    The caller commits."""
    if pinned(session, toolbox.id):
        return False
    keys = scan(_address(toolbox), timeout)
    _store(session, toolbox, keys, FIRST_USE)
    audit.record(
        session,
        user=None,
        action="toolbox.host_key.pin",
        outcome="successful",
        toolbox_id=toolbox.id,
        parameters={"fingerprints": [k.fingerprint for k in keys]},
        detail=f"host keys of {toolbox.name} recorded on first contact",
    )
    return True


def accept(
    session: Session, toolbox: Toolbox, accepted_fingerprint: str, user: User, timeout: int
) -> ToolboxHostKey:
    """Pin the key with `accepted_fingerprint` if the droplet offers it now, replacing the
    pins. Conflict (nothing changed) when the droplet does not offer that key. Audited by
    the caller."""
    offered = scan(_address(toolbox), timeout)
    chosen = next((k for k in offered if k.fingerprint == accepted_fingerprint), None)
    if chosen is None:
        raise Conflict(
            f"{toolbox.name} does not offer a host key with fingerprint {accepted_fingerprint}; "
            f"it offers {', '.join(k.fingerprint for k in offered)}. Nothing was changed.",
            code="host_key_not_offered",
        )
    _store(session, toolbox, [chosen], user.name)
    return pinned(session, toolbox.id)[0]
