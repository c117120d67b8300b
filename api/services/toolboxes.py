"""Toolboxes in the database: imported from the DigitalOcean API, listed per owner; the
agent token each one shares with its droplet and the agent certificate the console pins.

The droplet is the source of truth for its agent's token (/etc/dtma/dtma.env) and TLS
certificate (/etc/dtma/tls/agent.crt): operators' playbooks keep them, and the console
learns them over its pinned SSH channel (playbooks/dtma_token_read.yml) before its first
read, whenever the agent refuses the token it holds, and when the agent's port presents
another certificate; and from what an install or redeploy run published. Never from what
the agent's port offers.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

import runner
from api.context import Context
from api.errors import InvalidInput
from api.models import Toolbox, User, utcnow
from api.secret_box import SecretBox
from api.services import audit
from api.services.agent import (
    PLAIN_HTTP,
    AgentError,
    AgentNotPinned,
    AgentPin,
    AgentPinMismatch,
    AgentTarget,
    certificate_sha256,
)
from api.services.digitalocean import DropletInfo, list_tagged_droplets

log = logging.getLogger("api.toolboxes")
T = TypeVar("T")

TOKEN_PLAYBOOK = "dtma_token_read.yml"
TOKEN_OUTPUT = "dtma_agent_token"
TLS_OUTPUT = "dtma_agent_tls"
# A refused token (or a presented certificate that is not the pinned one) is looked up on
# the droplet at most this often per toolbox.
RELEARN_INTERVAL_SECONDS = 15.0
TOKEN_READ_TIMEOUT = 120

# A droplet tagged `dtma-owner:<user id>` belongs to that user when it is imported. Ids,
# not names: a name is chosen by whoever signs up (a JWT's e-mail), an id never is.
OWNER_TAG_PREFIX = "dtma-owner:"


@dataclass
class ImportReport:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"{len(self.created)} created, {len(self.updated)} updated, {len(self.removed)} removed"
        )


def new_agent_token() -> str:
    """The token a new toolbox starts with: what the console's own first install configures
    when the droplet has none yet (an installed agent keeps its own, learnt on first 401)."""
    return secrets.token_urlsafe(32)


def _owner_from_tags(session: Session, tags: tuple[str, ...]) -> User | None:
    for tag in tags:
        if tag.startswith(OWNER_TAG_PREFIX):
            user_id = tag.removeprefix(OWNER_TAG_PREFIX)
            return session.get(User, user_id) if 0 < len(user_id) <= 64 else None
    return None


def import_tagged(user: User, context: Context, session: Session) -> ImportReport:
    """Import the droplets tagged DTMA_DO_TAG from the DigitalOcean API (audited)."""
    with audit.audited(session, user=user, action="toolboxes.sync") as entry:
        report = import_droplets(session, context.secrets, list_tagged_droplets(context.settings))
        entry.detail = report.summary()
    session.commit()
    refresh_run_inventory(context)
    return report


def import_droplets(
    session: Session, secrets: SecretBox, droplets: list[DropletInfo]
) -> ImportReport:
    """Upsert every listed droplet; toolboxes whose droplet vanished are marked removed.

    The caller commits. A new toolbox gets its own agent token, sealed at rest.
    """
    report = ImportReport()
    existing = {t.droplet_id: t for t in session.scalars(select(Toolbox))}
    listed = set()
    now = utcnow()
    for droplet in droplets:
        listed.add(droplet.id)
        toolbox = existing.get(droplet.id)
        if toolbox is None:
            toolbox = Toolbox(droplet_id=droplet.id)
            secrets.seal_into(toolbox, Toolbox.agent_token_ciphertext, new_agent_token())
            session.add(toolbox)
            report.created.append(droplet.name)
        else:
            report.updated.append(droplet.name)
        toolbox.name = droplet.name
        toolbox.address = droplet.public_ipv4
        toolbox.region = droplet.region
        toolbox.droplet_status = droplet.status
        toolbox.tags = list(droplet.tags)
        toolbox.removed_at = None
        owner = _owner_from_tags(session, droplet.tags)
        if owner is not None:
            toolbox.owner_id = owner.id
    for droplet_id, toolbox in existing.items():
        if droplet_id not in listed and toolbox.removed_at is None:
            toolbox.removed_at = now
            toolbox.droplet_status = "removed"
            report.removed.append(toolbox.name)
    session.flush()
    return report


def list_toolboxes(session: Session, user: User, *, include_removed: bool) -> list[Toolbox]:
    query = select(Toolbox).order_by(Toolbox.name, Toolbox.droplet_id)
    if not user.is_admin:
        query = query.where(Toolbox.owner_id == user.id)
    if not include_removed:
        query = query.where(Toolbox.removed_at.is_(None))
    return list(session.scalars(query))


def assign_owner(session: Session, toolbox: Toolbox, owner_name: str | None) -> None:
    if owner_name is None:
        toolbox.owner_id = None
        return
    owner = session.scalar(select(User).where(User.name == owner_name))
    if owner is None:
        raise InvalidInput("owner", f"no user named '{owner_name}'")
    toolbox.owner_id = owner.id


# -- the agent token, learnt from the droplet ----------------------------------------------
def run_env(context: Context) -> dict[str, str]:
    """The environment a run's inventory needs (DigitalOcean tag and token)."""
    settings = context.settings
    env = {"DTMA_DO_TAG": settings.do_tag}
    if settings.do_api_token is not None:
        env["DO_API_TOKEN"] = settings.do_api_token.get_secret_value()
    return env


def refresh_run_inventory(context: Context) -> None:
    """After a droplet sync, the runs' cached DigitalOcean inventory follows it (blocking: one
    `ansible-inventory` call; a no-op unless DTMA_INVENTORY_CACHE_DIR is set). A failure is
    kept by the cache, and the runs say it."""
    runner.refresh_inventory(context.settings.inventory, run_env(context))


def agent_pin(toolbox: Toolbox) -> AgentPin | None:
    """The toolbox's pinned agent certificate (or plain HTTP); None while not learnt."""
    if toolbox.agent_tls is None:
        return None
    if not toolbox.agent_tls:
        return PLAIN_HTTP
    return AgentPin(toolbox.agent_certificate) if toolbox.agent_certificate else None


def published_pin(result: runner.ConsoleResult, name: str) -> AgentPin | None:
    """The agent certificate a run published for host `name` (dtma_agent_tls), when it is
    a well-formed one whose SHA-256 matches the one published beside it."""
    published = (result.data.get("per_host") or {}).get(name, {}).get(TLS_OUTPUT)
    if not isinstance(published, dict):
        return None
    if published.get("tls") is False:
        return PLAIN_HTTP
    pem = published.get("certificate")
    if not isinstance(pem, str):
        return None
    try:
        sha256 = certificate_sha256(pem)
    except ValueError:
        return None
    if published.get("sha256") not in (None, sha256):
        return None
    return AgentPin(pem)


def pin_agent(session: Session, toolbox: Toolbox, pin: AgentPin) -> bool:
    """Store `pin` as the toolbox's agent pin; whether it changed (audited)."""
    if agent_pin(toolbox) == pin:
        return False
    before = agent_pin(toolbox)
    toolbox.agent_tls = pin.tls
    toolbox.agent_certificate = pin.certificate
    audit.record(
        session,
        user=None,
        action="dtma.pin",
        outcome="successful",
        toolbox_id=toolbox.id,
        detail=f"agent certificate pinned: {_describe(before)} -> {_describe(pin)}",
    )
    return True


def _describe(pin: AgentPin | None) -> str:
    if pin is None:
        return "none"
    return f"sha256 {pin.sha256}" if pin.tls else "plain HTTP"


def learn_agent_access(context: Context, toolbox_id: str) -> AgentAccess | None:
    """Read the droplet's agent token and certificate (blocking: one short playbook run
    over pinned SSH), seal the token and pin the certificate. None when they could not be
    read (not installed, unreachable); why is logged and audited, never the token."""
    with context.sessions() as session:
        toolbox = session.get(Toolbox, toolbox_id)
        if toolbox is None or toolbox.removed_at is not None or not toolbox.address:
            return None
        name, credentials = toolbox.name, context.credentials.for_toolbox(toolbox)
    result = runner.run_playbook(
        runner.RunRequest(
            playbook=TOKEN_PLAYBOOK,
            hosts=[name],
            inventory=context.settings.inventory,
            ssh_private_key=credentials.private_key,
            known_hosts=credentials.known_hosts,
            timeout=min(context.settings.run_timeout, TOKEN_READ_TIMEOUT),
            action="dtma.token_read",
            toolbox_id=toolbox_id,
            env=run_env(context),
            secret_outputs=[TOKEN_OUTPUT],
        )
    )
    published: Any = result.secret_output(TOKEN_OUTPUT)
    token = published.get(name) if isinstance(published, dict) else None
    pin = published_pin(result, name)
    learnt = result.success and isinstance(token, str) and len(token) >= 16 and pin is not None
    with context.sessions.begin() as session:
        toolbox = session.get(Toolbox, toolbox_id)
        if toolbox is None:
            return None
        secrets = context.secrets
        if learnt:
            assert pin is not None
            changed = secrets.unseal_from(toolbox, Toolbox.agent_token_ciphertext) != token
            if changed:
                secrets.seal_into(toolbox, Toolbox.agent_token_ciphertext, str(token))
            repinned = pin_agent(session, toolbox, pin)
            detail = (
                f"{'learnt the agent token' if changed else 'token unchanged'}, "
                f"{'certificate pinned' if repinned else 'certificate unchanged'} from the droplet"
            )
        else:
            detail = (
                f"could not read the agent token and certificate from the droplet: {result.error}"
            )
        audit.record(
            session,
            user=None,
            action="dtma.token_read",
            outcome="successful" if learnt else "failed",
            toolbox_id=toolbox_id,
            detail=detail,
        )
    log.info("agent_access_read", extra={"toolbox": name, "learnt": learnt})
    if not learnt:
        return None
    assert pin is not None
    return AgentAccess(str(token), pin)


@dataclass(frozen=True)
class AgentAccess:
    """What reading a toolbox's agent takes: its token and its pin."""

    token: str
    pin: AgentPin


# What makes the console learn the droplet's token and certificate again (over SSH).
RELEARN_ERRORS = (AgentPinMismatch, AgentNotPinned)


def needs_relearning(error: AgentError) -> bool:
    """The agent refused the token (an operator may have reinstalled it), the port
    presented another certificate (an operator's rotation, or an impostor), or nothing is
    pinned yet."""
    return error.status in (401, 403) or isinstance(error, RELEARN_ERRORS)


@dataclass
class _Learning:
    attempted: dict[str, float] = field(default_factory=dict)
    pending: dict[str, asyncio.Future[AgentAccess | None]] = field(default_factory=dict)


_LEARNING = _Learning()


async def relearn_agent_access(
    context: Context, toolbox_id: str, *, force: bool = False
) -> AgentAccess | None:
    """Learn the droplet's agent token and certificate after a read that needs them (see
    needs_relearning). One read per toolbox at a time (concurrent callers share it), and at
    most one per RELEARN_INTERVAL_SECONDS unless `force` (a run that just changed the agent)."""
    future = _LEARNING.pending.get(toolbox_id)
    if future is None:
        now = time.monotonic()
        last = _LEARNING.attempted.get(toolbox_id)
        if not force and last is not None and now - last < RELEARN_INTERVAL_SECONDS:
            return None
        _LEARNING.attempted[toolbox_id] = now
        future = asyncio.ensure_future(run_in_threadpool(learn_agent_access, context, toolbox_id))
        _LEARNING.pending[toolbox_id] = future
        future.add_done_callback(lambda _: _LEARNING.pending.pop(toolbox_id, None))
    try:
        return await asyncio.shield(future)
    except Exception:  # a read must still answer (with its error) whatever went wrong here
        log.exception("agent_access_read_failed", extra={"toolbox_id": toolbox_id})
        return None


async def read_with_relearning(
    context: Context,
    toolbox_id: str,
    target: AgentTarget,
    token: str,
    read: Callable[[AgentTarget, str], Awaitable[T]],
    *,
    force: bool = False,
) -> T:
    """`read(target, token)`; when it needs the droplet's token or certificate
    (needs_relearning), they are learnt over SSH and the read made once more with them.
    A certificate that the droplet itself does not hold stays refused."""
    try:
        return await read(target, token)
    except AgentError as error:
        if not needs_relearning(error):
            raise
        learnt = await relearn_agent_access(context, toolbox_id, force=force)
        if learnt is None:
            raise AgentError(
                f"{error.reason}; the droplet's token and certificate could not be read over SSH",
                status=error.status,
                code=error.code,
            ) from error
        if isinstance(error, AgentPinMismatch) and learnt.pin == target.pin:
            raise  # the droplet holds the pinned certificate: something else answers
    return await read(AgentTarget(target.name, target.address, learnt.pin), learnt.token)


# -- the console's own check of an agent after a run that changed it ------------------------
def _agent_reach(
    context: Context, toolbox_id: str, result: runner.ConsoleResult
) -> tuple[str, str | None, str, AgentPin | None]:
    """The toolbox's agent as its reads see it; a certificate the run published (learnt
    over the run's pinned SSH channel) is pinned first."""
    with context.sessions.begin() as session:
        toolbox = session.get(Toolbox, toolbox_id)
        if toolbox is None:
            return "", None, "", None
        published = published_pin(result, toolbox.name)
        if published is not None:
            pin_agent(session, toolbox, published)
        return (
            toolbox.name,
            toolbox.address,
            context.secrets.unseal_from(toolbox, Toolbox.agent_token_ciphertext),
            agent_pin(toolbox),
        )


async def read_agent(
    context: Context, toolbox_id: str, target: AgentTarget, token: str, path: str
) -> dict[str, Any]:
    """One authenticated agent read; when it needs the droplet's token or certificate they
    are learnt (forced: the caller knows the agent just changed) and the read made again."""

    async def get(where: AgentTarget, with_token: str) -> dict[str, Any]:
        return await context.agent.get_json(where, with_token, path)

    return await read_with_relearning(context, toolbox_id, target, token, get, force=True)


@dataclass(frozen=True)
class AgentCheck:
    """The console's own read of one toolbox's agent after a run that changed it."""

    name: str
    url: str
    version: str | None
    error: str | None  # None: it answered, with the version the run published

    @property
    def ok(self) -> bool:
        return self.error is None

    def public(self) -> dict[str, Any]:
        return {"url": self.url, "ok": self.ok, "version": self.version, "error": self.error}


async def check_agent(
    context: Context, toolbox_id: str, result: runner.ConsoleResult
) -> AgentCheck:
    """Read the toolbox's agent from the console's side, at the address and port (with the
    token and pin) its reads use, relearning the token and pin over SSH when the run changed
    them; it must answer with the version the role published for its host."""
    name, address, token, pin = await run_in_threadpool(_agent_reach, context, toolbox_id, result)
    target = AgentTarget(name, address or "<no address>", pin)
    url = context.agent.url(target, "/status")
    published = (result.data.get("per_host") or {}).get(name, {}).get("dtma_result") or {}
    expected = published.get("version_after")
    reason: str | None = None
    answer: dict[str, Any] = {}
    if address is None:
        reason = "the droplet has no public IPv4 address"
    else:
        try:
            answer = await read_agent(context, toolbox_id, target, token, "/status")
        except AgentError as refused:
            reason = refused.reason
    if reason is None and expected is not None and answer.get("version") != expected:
        reason = f"it answered version {answer.get('version')}, not {expected}"
    return AgentCheck(name, url, answer.get("version"), reason)


async def confirm_agent(
    context: Context, toolbox_id: str, result: runner.ConsoleResult
) -> runner.ConsoleResult:
    """A dtma run verified the agent on the droplet itself; the console then reads it from
    its own side (check_agent). The run succeeds only if that read answers with the version
    the role published."""
    if not result.success:
        await run_in_threadpool(_agent_reach, context, toolbox_id, result)  # pins what it saw
        return result
    check = await check_agent(context, toolbox_id, result)
    data = {**result.data, "console_check": check.public()}
    if check.ok:
        return result.model_copy(update={"data": data})
    error = (
        f"the DTMA agent on {check.name} did not verify from the console ({check.url}): "
        f"{check.error}"
    )
    return result.model_copy(
        update={
            "status": "failed",
            "success": False,
            "error": error,
            "error_code": "verify_failed",
            "message": f"{result.action} failed on {check.name}: {error}",
            "data": data,
        }
    )
