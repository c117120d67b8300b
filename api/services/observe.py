"""The read path: a fresh answer when one is younger than DTMA_READ_FRESH_SECONDS, else ask
the agent, fall back to an SSH probe, fall back to the last stored answer (marked stale).
Every answer says its source and when it was observed, and what was learnt is written
through api/services/toolbox_state.py (status, version, last seen, last error)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any

import anyio
from starlette.concurrency import run_in_threadpool

from api.context import Context
from api.errors import NotFound, UpstreamError
from api.models import Toolbox, utcnow
from api.schemas.observations import Observation
from api.services import probe, toolbox_state, toolboxes
from api.services.agent import PIN_CHANGED_CODE, AgentError, AgentPin, AgentTarget, LogStream
from api.services.credentials import SshCredentials
from api.services.toolbox_state import Kind

# The agent answered, but not to the console's token: a state of its own, not "down".
REFUSED_STATUSES = (401, 403)
_AGENT_READS: dict[Kind, tuple[str, dict[str, Any] | None]] = {
    "status": ("/status", None),
    "system": ("/system", None),
    "tools": ("/containers", {"managed": "true"}),
}
_PROBES: dict[Kind, Callable[[probe.SshTarget, float], dict[str, Any]]] = {
    "status": probe.read_status,
    "system": probe.read_system,
    "tools": lambda target, timeout: probe.read_containers(target, timeout, managed=True),
}


@dataclass(frozen=True)
class Readable:
    """What a read needs of a toolbox row before it knows whether it must go live: its
    columns only (api/deps.py selects them), no ORM object."""

    id: str
    last_state: dict[str, Any]
    active_run_id: str | None
    run_ended_at: datetime | None


READABLE_COLUMNS = (
    Toolbox.id,
    Toolbox.owner_id,
    Toolbox.last_state,
    Toolbox.active_run_id,
    Toolbox.run_ended_at,
)


@dataclass(frozen=True)
class Reach:
    """Everything needed to read one toolbox, copied out of its row (no DB while waiting
    on the network)."""

    toolbox_id: str
    name: str
    address: str | None
    agent_token: str
    agent_pin: AgentPin | None
    last_state: dict[str, Any]
    # The SSH key and pinned host keys, read (from the vault: queries, unsealing) only when
    # a read falls back to SSH, not on every live read the agent answers.
    credentials: Callable[[], SshCredentials] = field(repr=False, compare=False)

    @classmethod
    def of(cls, context: Context, toolbox: Toolbox) -> Reach:
        return cls(
            toolbox_id=toolbox.id,
            name=toolbox.name,
            address=toolbox.address,
            agent_token=context.secrets.unseal_from(toolbox, Toolbox.agent_token_ciphertext),
            agent_pin=toolboxes.agent_pin(toolbox),
            last_state=dict(toolbox.last_state or {}),
            credentials=partial(context.credentials.for_toolbox, toolbox),
        )

    def agent(self) -> AgentTarget:
        assert self.address is not None
        return AgentTarget(self.name, self.address, self.agent_pin)

    def ssh_target(self) -> probe.SshTarget:
        """Blocking (it reads the credentials): call it in a worker thread."""
        assert self.address is not None
        ssh = self.credentials()
        return probe.SshTarget(
            name=self.name,
            address=self.address,
            private_key=ssh.private_key,
            known_hosts=ssh.known_hosts,
        )


@dataclass
class _Attempts:
    """Why the live sources did not answer, by source; whether the agent refused the token."""

    errors: dict[str, str] = field(default_factory=dict)
    agent_refused: bool = False


async def _live(
    context: Context, reach: Reach, kind: Kind, attempts: _Attempts
) -> Observation | None:
    errors = attempts.errors
    if reach.address is None:
        errors["agent"] = errors["ssh"] = "the droplet has no public IPv4 address"
        return None
    path, params = _AGENT_READS[kind]
    try:
        data = await _agent_read(context, reach, path, params)
        return Observation(
            toolbox_id=reach.toolbox_id,
            kind=kind,
            source="agent",
            observed_at=utcnow(),
            stale=False,
            data=data,
        )
    except AgentError as error:
        errors["agent"] = error.reason
        # Refused: the token (401/403), or the port's certificate (not the pinned one).
        attempts.agent_refused = error.status in REFUSED_STATUSES or error.code == PIN_CHANGED_CODE
    timeout = context.settings.ssh_probe_timeout
    try:
        with anyio.fail_after(timeout + 5):
            data = await context.probes.run(
                _probe, kind, reach, timeout, limit=context.settings.ssh_probe_concurrency
            )
        return Observation(
            toolbox_id=reach.toolbox_id,
            kind=kind,
            source="ssh",
            observed_at=utcnow(),
            stale=False,
            data=data,
            errors=dict(errors),
        )
    except probe.ProbeError as error:
        errors["ssh"] = str(error)
    except TimeoutError:
        errors["ssh"] = f"SSH probe of {reach.address} timed out after {timeout:g}s"
    return None


def _probe(kind: Kind, reach: Reach, timeout: float) -> dict[str, Any]:
    """The SSH probe of `kind`, in a probe thread (credentials read there too)."""
    return _PROBES[kind](reach.ssh_target(), timeout)


async def _agent_read(
    context: Context, reach: Reach, path: str, params: dict[str, Any] | None
) -> dict[str, Any]:
    """The agent's answer; the droplet's token and certificate are learnt over SSH when the
    read needs them (toolboxes.needs_relearning) and the read made once more."""

    async def get(target: AgentTarget, token: str) -> dict[str, Any]:
        return await context.agent.get_json(target, token, path, params)

    return await toolboxes.read_with_relearning(
        context, reach.toolbox_id, reach.agent(), reach.agent_token, get
    )


async def open_logs(
    context: Context, reach: Reach, ref: str, params: dict[str, Any], stack: AsyncExitStack
) -> LogStream:
    """The agent's log stream of `ref`, kept open by `stack`; learnt again over SSH (token,
    certificate) and asked once more when the agent needs it, as every read is."""
    target = reach.agent()
    try:
        return await stack.enter_async_context(
            context.agent.open_logs(target, reach.agent_token, ref, params)
        )
    except AgentError as error:
        if not toolboxes.needs_relearning(error):
            raise
        learnt = await toolboxes.relearn_agent_access(context, reach.toolbox_id)
        if learnt is None or (error.code == PIN_CHANGED_CODE and learnt.pin == target.pin):
            raise
    return await stack.enter_async_context(
        context.agent.open_logs(
            AgentTarget(target.name, target.address, learnt.pin), learnt.token, ref, params
        )
    )


def _cached(reach: Reach, kind: Kind, errors: dict[str, str]) -> Observation | None:
    cached = reach.last_state.get(kind)
    if not cached:
        return None
    return Observation(
        toolbox_id=reach.toolbox_id,
        kind=kind,
        source="cache",
        observed_at=cached["observed_at"],
        stale=True,
        cached_from=cached["source"],
        errors=errors,
        data=cached["data"],
    )


def remember(
    context: Context,
    toolbox_id: str,
    observation: Observation | None,
    kind: Kind,
    errors: dict[str, str],
    agent_refused: bool = False,
) -> None:
    """Write what the read learnt about the toolbox (api/services/toolbox_state.py)."""
    with context.sessions.begin() as session:
        toolbox = session.get(Toolbox, toolbox_id)
        if toolbox is None:
            return
        if observation is None or observation.source == "cache":
            toolbox_state.record(
                session, toolbox, {}, source="none", observed_at=utcnow(), errors=errors,
                refused=agent_refused,
            )  # fmt: skip
            return
        toolbox_state.record(
            session,
            toolbox,
            {kind: observation.data},
            source="agent" if observation.source == "agent" else "ssh",
            observed_at=observation.observed_at,
            errors=errors,
            refused=agent_refused,
        )


def fresh(context: Context, toolbox: Toolbox | Readable, kind: Kind) -> Observation | None:
    """The last live answer of `kind`, reused as it is when younger than
    DTMA_READ_FRESH_SECONDS (its source kept, `cached: true`, `age_ms`); never while a run
    holds the toolbox, nor when it was made during a run or before one that ended since (the
    run may have changed what it says: the row's `run_ended_at`, stamped by run_store when a
    run frees the lock). Reads the loaded toolbox row only: no query, no agent, no unsealing."""
    window = context.settings.read_fresh_seconds
    stored = (toolbox.last_state or {}).get(kind)
    if window <= 0 or toolbox.active_run_id is not None or not stored:
        return None
    if stored.get("source") not in ("agent", "ssh") or stored.get("during_run"):
        return None
    observed_at = datetime.fromisoformat(stored["observed_at"])
    age = utcnow() - observed_at
    if not timedelta(0) <= age <= timedelta(seconds=window):
        return None
    if toolbox.run_ended_at is not None and toolbox.run_ended_at >= observed_at:
        return None
    return Observation(
        toolbox_id=toolbox.id,
        kind=kind,
        source=stored["source"],
        observed_at=observed_at,
        stale=False,
        cached=True,
        age_ms=int(age.total_seconds() * 1000),
        errors=dict(stored.get("errors") or {}),
        data=stored["data"],
    )


def _reach(context: Context, toolbox: Toolbox | Readable) -> Reach:
    if isinstance(toolbox, Toolbox):
        return Reach.of(context, toolbox)
    with context.sessions() as session:
        row = session.get(Toolbox, toolbox.id)
        if row is None:
            raise NotFound(f"toolbox '{toolbox.id}' not found", code="toolbox_not_found")
        return Reach.of(context, row)


async def read_toolbox(context: Context, toolbox: Toolbox | Readable, kind: Kind) -> Observation:
    """What a toolbox says about `kind`: a fresh answer when there is one (see `fresh`),
    else a live read, shared by every concurrent reader of the same toolbox and kind in this
    process (one agent call, one write). Given only the row's columns (Readable), a live
    read loads the row for what reaching the toolbox takes."""
    reused = fresh(context, toolbox, kind)
    if reused is not None:
        return reused

    async def live() -> Observation:
        reach = await run_in_threadpool(_reach, context, toolbox)
        return await read(context, reach, kind)

    return await context.shared_reads.run((toolbox.id, kind), live)


async def read(context: Context, reach: Reach, kind: Kind) -> Observation:
    attempts = _Attempts()
    errors = attempts.errors
    observation = await _live(context, reach, kind, attempts)
    if observation is None:
        observation = _cached(reach, kind, errors)
    await run_in_threadpool(
        remember, context, reach.toolbox_id, observation, kind, errors, attempts.agent_refused
    )
    if observation is None:
        reasons = "; ".join(f"{source}: {reason}" for source, reason in errors.items())
        raise UpstreamError(
            f"toolbox '{reach.name}' did not answer and nothing is stored yet ({reasons})",
            code="toolbox_unreachable",
        )
    return observation
