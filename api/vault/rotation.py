"""Giving a toolbox its own SSH key (bootstrap), rotating it, and revoking it.

A rotation is two console runs, each with one key in its ssh-agent:

1. `ssh_key_authorize.yml` with the current key (for a bootstrap: the operator key the
   droplet was created with) adds the new public key.
2. `ssh_key_rotate.yml` with the new key: the role proves that a fresh login with the new
   key alone works, and only then removes the old public key and reads the file back.

Only after step 2 does the new key become the active one in the database. Until the
proof passes, any failure leaves the old key authorized and the database as it was (the
pending key row is deleted, and a best-effort run removes the unproven public key again).
Once the proof has passed, the new key is activated even if a later step failed, because
the old key may already be gone; the answer then says what is left to do.

The new key is stored (sealed) as `pending` before any run, so a console that dies in
the middle never loses a private key that might be the only one left on the droplet. The
next rotation of that toolbox falls back to such leftover keys if the active key no
longer gets in, and removes their public halves from the droplet when it succeeds.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

import runner
from api.context import Context
from api.db import session_scope
from api.errors import Conflict, NotFound, ToolboxBusy
from api.models import Toolbox, User
from api.services import audit
from api.services.actions import Action
from api.services.credentials import SshCredentials
from api.services.runs import Target, run_url
from api.vault import hostkeys, keystore, sshkeys
from api.vault.models import ToolboxSshKey

log = logging.getLogger("api.vault")

Kind = Literal["bootstrap", "rotate"]


@dataclass(frozen=True)
class StepRun:
    """One run of a multi-run key operation."""

    run_id: str
    action: str
    status: str
    success: bool
    message: str
    error: str | None

    @property
    def url(self) -> str:
        return run_url(self.run_id)


@dataclass
class KeyOutcome:
    toolbox_id: str
    operation: str  # ssh_key.bootstrap | ssh_key.rotate | ssh_key.revoke
    success: bool
    message: str
    error: str | None = None
    fingerprint: str | None = None  # the key the operation was about
    previous_fingerprint: str | None = None
    active_fingerprint: str | None = None  # the active key when the operation ended
    runs: list[StepRun] = field(default_factory=list)


@dataclass(frozen=True, repr=False)
class _Leftover:
    """A pending key left by an operation that never finished."""

    id: str
    public: str
    private: str


@dataclass(frozen=True, repr=False)
class _Plan:
    toolbox_id: str
    host: str
    kind: Kind
    current: SshCredentials  # key in use now (the operator key for a bootstrap)
    current_public: str
    current_fingerprint: str
    new: sshkeys.KeyPair
    pending_id: str
    known_hosts: str
    remove: list[str]
    leftovers: tuple[_Leftover, ...]

    @property
    def operation(self) -> str:
        return f"ssh_key.{self.kind}"


# Key operations in flight in this process, by toolbox: one at a time per toolbox (the run
# lock alone is released between the runs of an operation).
_in_flight: set[str] = set()


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


def _load_toolbox(session: Session, toolbox_id: str) -> Toolbox:
    toolbox = session.get(Toolbox, toolbox_id)
    if toolbox is None:
        raise NotFound(f"toolbox '{toolbox_id}' not found", code="toolbox_not_found")
    if toolbox.removed_at is not None:
        raise Conflict(
            f"toolbox '{toolbox.name}' no longer exists in DigitalOcean", code="toolbox_removed"
        )
    return toolbox


def _current_key(session: Session, toolbox: Toolbox, context: Context) -> tuple[Kind, str, str]:
    """(kind, private key, public key) of the key that gets in now: the toolbox's own, or
    for a bootstrap the operator key it was created with."""
    settings = context.settings
    current = keystore.active_key(session, toolbox.id)
    if current is not None:
        return "rotate", keystore.private_key(context.secrets, current), current.public_key
    if settings.ssh_key_file is None:
        raise Conflict(
            f"{toolbox.name} has no SSH key of its own yet and DTMA_SSH_KEY_FILE (the key "
            "droplets are created with) is not set: the console cannot reach it to install one",
            code="no_bootstrap_key",
        )
    try:
        private = settings.ssh_key_file.read_text()
        return "bootstrap", private, sshkeys.public_from_private(private)
    except (OSError, ValueError) as error:
        raise Conflict(
            f"DTMA_SSH_KEY_FILE ({settings.ssh_key_file}) is not a readable, unencrypted "
            f"OpenSSH private key ({type(error).__name__})",
            code="no_bootstrap_key",
        ) from None


def _prepare(context: Context, toolbox_id: str) -> _Plan:
    """Read the current key, pin the host keys if this is the first contact, make the new
    key and store it as pending. Commits."""
    settings = context.settings
    with session_scope(context.sessions) as session:
        toolbox = _load_toolbox(session, toolbox_id)
        kind, current_private, current_public = _current_key(session, toolbox, context)
        hostkeys.pin_on_first_contact(session, toolbox, settings.ssh_keyscan_timeout)
        known_hosts = hostkeys.known_hosts(
            toolbox.address or "", hostkeys.pinned(session, toolbox.id)
        )
        assert known_hosts is not None  # pinned just above
        leftovers = tuple(
            _Leftover(k.id, k.public_key, keystore.private_key(context.secrets, k))
            for k in keystore.pending(session, toolbox.id)
        )
        new = sshkeys.generate(f"dtma-console:{toolbox.name}:{_stamp()}")
        pending = keystore.add_pending(session, context.secrets, toolbox.id, new)
        remove = [current_public] if kind == "rotate" or settings.ssh_revoke_bootstrap_key else []
        remove += [k.public for k in leftovers]
        return _Plan(
            toolbox_id=toolbox.id,
            host=toolbox.name,
            kind=kind,
            current=SshCredentials(current_private, known_hosts),
            current_public=current_public,
            current_fingerprint=sshkeys.fingerprint(current_public),
            new=new,
            pending_id=pending.id,
            known_hosts=known_hosts,
            remove=remove,
            leftovers=leftovers,
        )


def _authorize_action(plan: _Plan) -> Action:
    return Action(
        "ssh_key.authorize",
        "ssh_key_authorize.yml",
        {"ssh_access_public_key": plan.new.public_openssh},
        {"fingerprint": plan.new.fingerprint},
    )


def _rotate_action(plan: _Plan) -> Action:
    return Action(
        "ssh_key.rotate",
        "ssh_key_rotate.yml",
        {
            "ssh_access_public_key": plan.new.public_openssh,
            "ssh_access_remove_keys": plan.remove,
            "ssh_access_known_hosts": plan.known_hosts,
        },
        {
            "fingerprint": plan.new.fingerprint,
            "replaces": [sshkeys.fingerprint(k) for k in plan.remove],
        },
    )


def _revoke_action(keys: list[str]) -> Action:
    return Action(
        "ssh_key.revoke",
        "ssh_key_revoke.yml",
        {"ssh_access_remove_keys": keys},
        {"fingerprints": [sshkeys.fingerprint(k) for k in keys]},
    )


async def _step(
    context: Context, target: Target, action: Action, user: User | None, runs: list[StepRun]
) -> runner.ConsoleResult:
    run_id = await context.runs.start(target, action, user)
    result = await context.runs.wait(run_id)
    runs.append(
        StepRun(run_id, action.name, result.status, result.success, result.message, result.error)
    )
    return result


def _login_proven(result: runner.ConsoleResult, host: str) -> bool:
    published = result.data.get("per_host", {}).get(host, {}).get("ssh_access_result")
    return isinstance(published, dict) and published.get("login_proven") is True


def _discard(context: Context, plan: _Plan) -> None:
    with session_scope(context.sessions) as session:
        pending = session.get(ToolboxSshKey, plan.pending_id)
        if pending is not None and pending.state == "pending":
            session.delete(pending)


def _activate(context: Context, plan: _Plan, *, leftovers_removed: bool) -> None:
    with session_scope(context.sessions) as session:
        pending = session.get(ToolboxSshKey, plan.pending_id)
        if pending is None:
            raise RuntimeError(f"pending key {plan.new.fingerprint} vanished")
        keystore.activate(session, pending)
        if leftovers_removed:
            for leftover in plan.leftovers:
                row = session.get(ToolboxSshKey, leftover.id)
                if row is not None and row.state == "pending":
                    session.delete(row)


def _audit(context: Context, user: User | None, outcome: KeyOutcome) -> None:
    with session_scope(context.sessions) as session:
        audit.record(
            session,
            user=user,
            action=outcome.operation,
            outcome="successful" if outcome.success else "failed",
            toolbox_id=outcome.toolbox_id,
            run_id=outcome.runs[-1].run_id if outcome.runs else None,
            parameters={
                "fingerprint": outcome.fingerprint,
                "previous_fingerprint": outcome.previous_fingerprint,
                "runs": [r.run_id for r in outcome.runs],
            },
            detail=outcome.error or outcome.message,
        )


async def _undo_authorization(
    context: Context, plan: _Plan, user: User | None, runs: list[StepRun]
) -> str:
    """Best effort: take the unproven public key off the droplet again (its private half
    is being deleted, so a leftover line lets nobody in)."""
    target = Target(plan.toolbox_id, plan.host, plan.current)
    try:
        result = await _step(context, target, _revoke_action([plan.new.public_openssh]), user, runs)
    except ToolboxBusy as busy:
        return f"the unproven public key is still authorized ({busy.message})"
    if result.success:
        return "the unproven public key was removed again"
    return f"the unproven public key is still authorized ({result.error})"


async def _run_rotation(context: Context, plan: _Plan, user: User | None) -> KeyOutcome:
    runs: list[StepRun] = []
    outcome = KeyOutcome(
        toolbox_id=plan.toolbox_id,
        operation=plan.operation,
        success=False,
        message="",
        fingerprint=plan.new.fingerprint,
        previous_fingerprint=plan.current_fingerprint,
        active_fingerprint=plan.current_fingerprint if plan.kind == "rotate" else None,
        runs=runs,
    )
    old = "the operator key" if plan.kind == "bootstrap" else "the old key"
    try:
        current = Target(plan.toolbox_id, plan.host, plan.current)
        added = await _step(context, current, _authorize_action(plan), user, runs)
        for leftover in plan.leftovers if added.status == "unreachable" else ():
            # The console may have stopped after a rotation removed the old key and before
            # it activated the new one: that new key is now a leftover pending key.
            with_leftover = SshCredentials(leftover.private, plan.known_hosts)
            retry = Target(plan.toolbox_id, plan.host, with_leftover)
            added = await _step(context, retry, _authorize_action(plan), user, runs)
            if added.success:
                break
        if not added.success:
            await run_in_threadpool(_discard, context, plan)
            outcome.message = f"the new key could not be added to {plan.host}; {old} is unchanged"
            outcome.error = added.error
            return outcome
        with_new_key = SshCredentials(plan.new.private_openssh, plan.known_hosts)
        proof = await _step(
            context,
            Target(plan.toolbox_id, plan.host, with_new_key),
            _rotate_action(plan),
            user,
            runs,
        )
    except ToolboxBusy as busy:
        await run_in_threadpool(_discard, context, plan)
        if not runs:
            raise  # nothing was done: the caller gets toolbox_busy
        undone = await _undo_authorization(context, plan, user, runs)
        outcome.message = f"{plan.host} became busy during the key {plan.kind}; {undone}"
        outcome.error = busy.message
        return outcome
    if proof.success or _login_proven(proof, plan.host):
        await run_in_threadpool(_activate, context, plan, leftovers_removed=proof.success)
        outcome.active_fingerprint = plan.new.fingerprint
        if proof.success:
            outcome.success = True
            outcome.message = f"{plan.host} now uses its own key {plan.new.fingerprint}" + (
                f"; {old} {plan.current_fingerprint} was removed" if plan.remove else ""
            )
        else:
            outcome.message = (
                f"the new key {plan.new.fingerprint} logged in to {plan.host} and is now active, "
                f"but the rest of the {plan.kind} failed: {old} may still be authorized"
            )
            outcome.error = proof.error
        return outcome
    await run_in_threadpool(_discard, context, plan)
    undone = await _undo_authorization(context, plan, user, runs)
    outcome.message = (
        f"a login with the new key could not be proven, so {old} was kept and is still "
        f"the active key; {undone}"
    )
    outcome.error = proof.error
    return outcome


async def _exclusively(
    context: Context,
    toolbox_id: str,
    user: User | None,
    operation: Callable[[], Awaitable[KeyOutcome]],
) -> KeyOutcome:
    """Run a key operation alone on its toolbox, to the end even if the caller goes away;
    audit and log its outcome."""
    if toolbox_id in _in_flight:
        raise ToolboxBusy(f"a key operation on toolbox '{toolbox_id}' is already running")
    _in_flight.add(toolbox_id)

    async def whole() -> KeyOutcome:
        try:
            outcome = await operation()
        finally:
            _in_flight.discard(toolbox_id)
        await run_in_threadpool(_audit, context, user, outcome)
        log.info(
            "ssh_key_operation",
            extra={
                "operation": outcome.operation,
                "toolbox_id": toolbox_id,
                "success": outcome.success,
                "fingerprint": outcome.fingerprint,
                "runs": [r.run_id for r in outcome.runs],
            },
        )
        return outcome

    return await asyncio.shield(asyncio.ensure_future(whole()))


async def rotate(context: Context, toolbox_id: str, user: User | None) -> KeyOutcome:
    """Bootstrap (no own key yet) or rotate the toolbox's key; see the module docstring."""

    async def operation() -> KeyOutcome:
        plan = await run_in_threadpool(_prepare, context, toolbox_id)
        return await _run_rotation(context, plan, user)

    return await _exclusively(context, toolbox_id, user, operation)


def _prepare_revoke(context: Context, toolbox_id: str) -> tuple[Target, ToolboxSshKey]:
    with session_scope(context.sessions) as session:
        toolbox = _load_toolbox(session, toolbox_id)
        key = keystore.active_key(session, toolbox.id)
        if key is None:
            raise Conflict(f"{toolbox.name} has no SSH key of its own to revoke", code="no_key")
        credentials = context.credentials.for_toolbox(toolbox)
        return Target(toolbox.id, toolbox.name, credentials), key


def _mark_revoked(context: Context, key_id: str) -> None:
    with session_scope(context.sessions) as session:
        key = session.get(ToolboxSshKey, key_id)
        if key is not None:
            keystore.revoke(session, key)


async def revoke(context: Context, toolbox_id: str, user: User | None) -> KeyOutcome:
    """Remove the toolbox's own key from the droplet (decommissioning) and erase it. The
    console cannot reach the toolbox with it afterwards."""

    async def operation() -> KeyOutcome:
        target, key = await run_in_threadpool(_prepare_revoke, context, toolbox_id)
        runs: list[StepRun] = []
        result = await _step(context, target, _revoke_action([key.public_key]), user, runs)
        outcome = KeyOutcome(
            toolbox_id=toolbox_id,
            operation="ssh_key.revoke",
            success=result.success,
            message="",
            fingerprint=key.fingerprint,
            runs=runs,
        )
        if result.success:
            await run_in_threadpool(_mark_revoked, context, key.id)
            outcome.message = f"key {key.fingerprint} was removed from {target.host} and erased"
        else:
            outcome.active_fingerprint = key.fingerprint
            outcome.message = f"key {key.fingerprint} could not be removed from {target.host}"
            outcome.error = result.error
        return outcome

    return await _exclusively(context, toolbox_id, user, operation)
